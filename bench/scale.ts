/**
 * The scale case: many small multi-arch images (BENCH_MANY, default 1,000 × linux/amd64 +
 * linux/arm64), where per-image costs — requests, manifests, lock entries, progress lines — show
 * instead of bytes. prepare, no-op prepare and upload run on a quarter of the set and on all of
 * it; the growth factor says whether each grows linearly with the number of images (1.0 = exactly
 * linear; above means per-image costs grow with the set). Lock size and peak memory likewise.
 */
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import pLimit from "p-limit";
import { pushImage } from "../test/helpers/images.js";
import type { TestRegistry } from "../test/helpers/registry.js";
import type { BenchConfig } from "./config.js";
import { errorLine, run } from "./exec.js";
import { fmt, type Target } from "./report.js";
import { checkRegistry, fullPathMirrorName, type Check, type Expected } from "./verify.js";

export interface ScaleStep {
  images: number;
  prepareSeconds: number;
  preparePeakMb: number | null;
  noopSeconds: number;
  uploadSeconds: number;
  uploadPeakMb: number | null;
  lockBytes: number;
  /** skopeo's digests of a sample of the uploaded images against the source's. */
  sample: Check;
}

export interface ScaleResult {
  steps: ScaleStep[];
  /** Per-image time at the full set over per-image time at the quarter: 1.0 is linear. */
  growth: { prepare: number; noop: number; upload: number; lockBytes: number };
}

interface ScaleDeps {
  config: BenchConfig;
  source: TestRegistry;
  registry: () => Promise<TestRegistry>;
  stop: (r: TestRegistry) => Promise<void>;
  dir: string;
  log: (line?: string) => void;
}

/** Pushes `count` small images, 8 at a time, each a different kind every other one. */
async function pushMany(source: TestRegistry, count: number, workDir: string): Promise<Expected[]> {
  const limit = pLimit(8);
  await mkdir(workDir, { recursive: true });
  const pushed = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      limit(() =>
        pushImage(
          source,
          `many/m${String(i).padStart(4, "0")}`,
          "v1",
          { kind: i % 2 ? "docker-list" : "oci-index", layers: ["bench-many-base", `bench-many-${i}`] },
          { workDir },
        ),
      ),
    ),
  );
  await rm(workDir, { recursive: true, force: true });
  return pushed.map((image) => ({ ref: image.ref, digest: image.digest, mediaType: image.mediaType }));
}

async function timedBundle(deps: ScaleDeps, args: string[]) {
  await run("sync", []);
  const result = await run(process.execPath, [deps.config.bundleCli, ...args], { echo: deps.config.verbose });
  if (result.code !== 0) throw new Error(`bundle ${args[0]} (scale case): ${errorLine(result)}`);
  return result;
}

async function step(deps: ScaleDeps, images: Expected[]): Promise<ScaleStep> {
  const dir = path.join(deps.dir, `n${images.length}`);
  const def = path.join(dir, "def", "bundle.yml");
  const out = path.join(dir, "out");
  await mkdir(path.dirname(def), { recursive: true });
  const lines = ["name: many", "platforms: [linux/amd64, linux/arm64]", "mirror:", "  prefix: teleinfra"];
  lines.push("  naming: full-path", "images:", ...images.map((image) => `  - ${image.ref}`), "");
  await writeFile(def, lines.join("\n"));
  const prepare = await timedBundle(deps, ["prepare", "-f", def, "-o", out]);
  const noop = await timedBundle(deps, ["prepare", "-f", def, "-o", out]);
  const dest = await deps.registry();
  const upload = await timedBundle(deps, ["upload", out, "--registry", dest.host]);
  const sample = await checkRegistry(dest.host, images.slice(0, 5), (image) => fullPathMirrorName(image.ref));
  await deps.stop(dest);
  const lockBytes = (await stat(path.join(out, "bundle.lock.json"))).size;
  await rm(dir, { recursive: true, force: true });
  const s: ScaleStep = {
    images: images.length,
    prepareSeconds: prepare.seconds,
    preparePeakMb: prepare.peakMb,
    noopSeconds: noop.seconds,
    uploadSeconds: upload.seconds,
    uploadPeakMb: upload.peakMb,
    lockBytes,
    sample,
  };
  deps.log(
    `  ${s.images} images: prepare ${fmt(s.prepareSeconds, 2)} s (peak ${fmt(s.preparePeakMb ?? 0, 0)} MB), ` +
      `no-op ${fmt(s.noopSeconds, 2)} s, upload ${fmt(s.uploadSeconds, 2)} s (peak ${fmt(s.uploadPeakMb ?? 0, 0)} MB), ` +
      `lock ${fmt(lockBytes / 1024, 0)} KiB; sample of ${sample.checked}: ${sample.mismatches.length ? sample.mismatches.join("; ") : "digests equal the source's"}`,
  );
  return s;
}

export async function scaleCase(deps: ScaleDeps): Promise<ScaleResult> {
  const count = deps.config.many;
  deps.log();
  deps.log(`Scale case: generating ${count} small multi-arch images…`);
  const images = await pushMany(deps.source, count, path.join(deps.dir, "layers"));
  const quarter = await step(deps, images.slice(0, Math.max(1, Math.floor(count / 4))));
  const all = await step(deps, images);
  const per = (s: ScaleStep, v: number) => v / s.images;
  const growth = {
    prepare: per(all, all.prepareSeconds) / per(quarter, quarter.prepareSeconds),
    noop: per(all, all.noopSeconds) / per(quarter, quarter.noopSeconds),
    upload: per(all, all.uploadSeconds) / per(quarter, quarter.uploadSeconds),
    lockBytes: per(all, all.lockBytes) / per(quarter, quarter.lockBytes),
  };
  return { steps: [quarter, all], growth };
}

/** The scale table: one line per set size, then the per-image growth factors. */
export function printScale(result: ScaleResult, log: (line: string) => void): void {
  log("Scale case (small layers, 2 platforms each):");
  log("  images  prepare s  peak MB  no-op s  upload s  peak MB  lock KiB");
  for (const s of result.steps) {
    const cells = [
      String(s.images).padStart(6),
      fmt(s.prepareSeconds, 2).padStart(9),
      fmt(s.preparePeakMb ?? 0, 0).padStart(7),
      fmt(s.noopSeconds, 2).padStart(7),
      fmt(s.uploadSeconds, 2).padStart(8),
      fmt(s.uploadPeakMb ?? 0, 0).padStart(7),
      fmt(s.lockBytes / 1024, 0).padStart(8),
    ];
    log(`  ${cells.join("  ")}`);
  }
  const g = result.growth;
  log(
    `  per-image growth from ${result.steps[0]?.images} to ${result.steps[1]?.images} images (1.00 = linear): ` +
      `prepare ${fmt(g.prepare, 2)}, no-op ${fmt(g.noop, 2)}, upload ${fmt(g.upload, 2)}, lock ${fmt(g.lockBytes, 2)}`,
  );
}

/** Growth above this per image (a quarter of the set against all of it) is worse than linear. */
const GROWTH_LIMIT = 1.25;

export function scaleTargets(result: ScaleResult): Target[] {
  const [quarter, all] = result.steps;
  const span = `${quarter?.images} → ${all?.images} images`;
  const list: Target[] = Object.entries(result.growth).map(([what, g]) => ({
    name: `scale ${what}: per-image growth ${span}`,
    goal: `≤ ${GROWTH_LIMIT}`,
    value: fmt(g, 2),
    mark: g <= GROWTH_LIMIT ? "pass" : "FAIL",
  }));
  const bad = result.steps.reduce((n, s) => n + s.sample.mismatches.length, 0);
  list.push({
    name: "scale: sampled digests = source",
    goal: "0 differ",
    value: `${bad} differ`,
    mark: bad === 0 ? "pass" : "FAIL",
  });
  return list;
}
