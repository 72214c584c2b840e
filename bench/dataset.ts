/**
 * The benchmark's images: multi-arch (linux/amd64 + linux/arm64), OCI indexes and Docker
 * manifest lists, built the way real images are, on a few shared base and runtime layers with a
 * per-image application layer on top. Layer bytes are incompressible, so sizes are real sizes.
 */
import { mkdir, rm } from "node:fs/promises";
import { pushImage, type ImageSpec, type LayerSpec, type PushedImage } from "../test/helpers/images.js";
import type { TestRegistry } from "../test/helpers/registry.js";

export interface ImagePlan {
  repo: string;
  tag: string;
  spec: ImageSpec;
}

export interface Dataset {
  images: PushedImage[];
  /** Config and layer blobs, each counted once however many images use it. */
  distinctBlobs: number;
  distinctBytes: number;
  /** What the images would weigh if nothing were shared. */
  unsharedBytes: number;
  seconds: number;
}

type Base = "debian" | "ubuntu" | "alpine";
type Runtime = "python" | "node" | "jdk";

/** Relative sizes, roughly those of the real images (MB per platform at the default scale). */
const BASE_WEIGHT: Record<Base, number> = { debian: 30, ubuntu: 28, alpine: 3.5 };
const RUNTIME_WEIGHT: Record<Runtime, number> = { python: 22, node: 20, jdk: 45 };
const FAMILIES: { base: Base; runtime?: Runtime }[] = [
  { base: "debian", runtime: "python" },
  { base: "debian", runtime: "node" },
  { base: "ubuntu", runtime: "jdk" },
  { base: "alpine" },
];
/** A layer smaller than this would not be "large"; it also keeps every size positive. */
const MIN_LAYER_BYTES = 4096;

interface PlannedLayer {
  seed: string;
  weight: number;
}

/**
 * `count` images whose distinct blobs weigh about `totalBytes`: every large layer exists once
 * per platform, so each weight unit is worth totalBytes / (2 × the sum of distinct weights).
 */
export function planImages(count: number, totalBytes: number): ImagePlan[] {
  const drafts = Array.from({ length: count }, (_, i) => {
    const family = FAMILIES[i % FAMILIES.length]!;
    const large: PlannedLayer[] = [{ seed: `bench-base-${family.base}`, weight: BASE_WEIGHT[family.base] }];
    if (family.runtime) {
      large.push({ seed: `bench-runtime-${family.runtime}`, weight: RUNTIME_WEIGHT[family.runtime] });
    }
    // Application layers of 2 to 14 units, spread so neighbours differ.
    const name = `img${String(i + 1).padStart(2, "0")}`;
    large.push({ seed: `bench-app-${name}`, weight: 2 + ((i * 7) % 13) });
    // Alternate OCI indexes and Docker lists, shifted per round so every family gets both.
    const kind: ImageSpec["kind"] =
      (i + Math.floor(i / FAMILIES.length)) % 2 === 0 ? "oci-index" : "docker-list";
    return { name, kind, large };
  });
  const distinctWeight = new Map<string, number>();
  for (const draft of drafts) for (const layer of draft.large) distinctWeight.set(layer.seed, layer.weight);
  const totalWeight = [...distinctWeight.values()].reduce((a, b) => a + b, 0);
  const bytesPerUnit = totalBytes / (2 * totalWeight);
  return drafts.map(({ name, kind, large }) => {
    const layers: LayerSpec[] = large.map((layer) => ({
      seed: layer.seed,
      sizeBytes: Math.max(MIN_LAYER_BYTES, Math.round(layer.weight * bytesPerUnit)),
    }));
    // Small layers as real images have them: one shared by all (CA certificates), one per image.
    layers.splice(1, 0, "bench-ca-certificates");
    layers.push(`bench-etc-${name}`);
    return { repo: `bench/${name}`, tag: "v1", spec: { kind, layers, label: name } };
  });
}

/**
 * The next release of a set: the first `changed` images get a new tag whose application and
 * per-image layers are new, on the same shared base and runtime layers; the rest stay as they
 * were. What an update bundle (`prepare --since`) has to carry is exactly those new layers.
 */
export function planNextRelease(plans: ImagePlan[], changed: number): ImagePlan[] {
  return plans.map((plan, i) => {
    if (i >= changed) return plan;
    const layers = plan.spec.layers.map((layer): LayerSpec => {
      const seed = typeof layer === "string" ? layer : layer.seed;
      const own = seed.startsWith("bench-app-") || seed.startsWith("bench-etc-");
      if (!own) return layer;
      return typeof layer === "string" ? `${layer}-v2` : { ...layer, seed: `${seed}-v2` };
    });
    return {
      ...plan,
      tag: "v2",
      spec: { ...plan.spec, layers, label: `${plan.spec.label ?? plan.repo}-v2` },
    };
  });
}

/** One OCI index whose platforms share a single large layer: one big blob moving through. */
export function planBigImage(sizeBytes: number): ImagePlan {
  return {
    repo: "bench/big",
    tag: "v1",
    spec: {
      kind: "oci-index",
      layers: [{ seed: "bench-big", sizeBytes, samePerPlatform: true }, "bench-big-etc"],
      label: "big",
    },
  };
}

/**
 * Pushes the images one after another. Layer files are written below `workDir` (removed at the
 * end), so that an interrupted bench leaves nothing behind once its working folder is gone.
 */
export async function pushAll(
  registry: TestRegistry,
  plans: ImagePlan[],
  workDir: string,
  onImage?: (image: PushedImage, index: number) => void,
): Promise<Dataset> {
  const started = performance.now();
  const images: PushedImage[] = [];
  await mkdir(workDir, { recursive: true });
  try {
    for (const [i, plan] of plans.entries()) {
      const image = await pushImage(registry, plan.repo, plan.tag, plan.spec, { workDir });
      images.push(image);
      onImage?.(image, i);
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
  const seconds = (performance.now() - started) / 1000;
  const distinct = new Map<string, number>();
  let unsharedBytes = 0;
  for (const image of images) {
    for (const blob of image.blobs) {
      distinct.set(blob.digest, blob.size);
      unsharedBytes += blob.size;
    }
  }
  const distinctBytes = [...distinct.values()].reduce((a, b) => a + b, 0);
  return { images, distinctBlobs: distinct.size, distinctBytes, unsharedBytes, seconds };
}
