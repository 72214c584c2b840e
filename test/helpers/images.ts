import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { header, httpRequest, type Credentials, type HttpResponse } from "./http.js";
import { makeLargeLayer, makeLayer, sha256Digest, type Layer } from "./layers.js";

export { makeLargeLayer, makeLayer, sha256Digest, type Layer } from "./layers.js";

export const MediaTypes = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar+gzip",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

/** Every manifest type we push; send it as Accept, or the registry may down-convert lists. */
export const MANIFEST_ACCEPT = [
  MediaTypes.ociIndex,
  MediaTypes.ociManifest,
  MediaTypes.dockerList,
  MediaTypes.dockerManifest,
].join(", ");

/**
 * A layer by seed. By default the seed is combined with the platform, so amd64 and arm64 get
 * different bytes (as real images do) while two images naming the same seed share the blob.
 * `samePerPlatform` makes one blob for all platforms; `sizeBytes` makes a large file-backed layer.
 */
export type LayerSpec = string | { seed: string; sizeBytes?: number; samePerPlatform?: boolean };

export interface ImageSpec {
  kind: "oci-index" | "docker-list" | "single";
  /** Manifest flavour for kind "single"; default "oci". */
  format?: "oci" | "docker";
  /** Default linux/amd64 + linux/arm64, or linux/amd64 alone for "single". */
  platforms?: string[];
  layers: LayerSpec[];
  /** Goes into the config's labels, to make otherwise identical images differ. */
  label?: string;
}

export interface PushedPlatform {
  platform: string;
  digest: string;
  mediaType: string;
  size: number;
}

export interface PushedImage {
  /** "HOST:PORT/repo:tag" */
  ref: string;
  repo: string;
  tag: string;
  /** Digest of the top manifest (the index, or the single manifest). */
  digest: string;
  mediaType: string;
  /** The exact bytes stored under the tag. */
  manifestBytes: Buffer;
  platforms: PushedPlatform[];
  /** Every distinct config and layer blob, in first-use order. */
  blobs: { digest: string; size: number }[];
}

/** A registry URL, or anything with one (a TestRegistry), with its credentials if any. */
export type RegistryTarget = string | { url: string; auth?: Credentials };

export interface PushOptions {
  /** Where large layers are written before upload; default a temp dir removed afterwards. */
  workDir?: string;
}

interface Target {
  url: string;
  auth?: Credentials;
}

interface Blob {
  digest: string;
  size: number;
  content: Buffer | { file: string };
}

interface Manifest {
  mediaType: string;
  bytes: Buffer;
  digest: string;
}

const FIXED_CREATED = "2024-01-01T00:00:00Z";

export async function pushImage(
  registry: RegistryTarget,
  repo: string,
  tag: string,
  spec: ImageSpec,
  opts: PushOptions = {},
): Promise<PushedImage> {
  const target = toTarget(registry);
  const workDir = opts.workDir ?? (await mkdtemp(path.join(tmpdir(), "testbed-layers-")));
  try {
    return await pushWithWorkDir(target, repo, tag, spec, workDir);
  } finally {
    if (!opts.workDir) await rm(workDir, { recursive: true, force: true });
  }
}

interface Child {
  platform: string;
  manifest: Manifest;
}

async function pushWithWorkDir(
  target: Target,
  repo: string,
  tag: string,
  spec: ImageSpec,
  workDir: string,
): Promise<PushedImage> {
  const format =
    spec.kind === "docker-list" ? "docker" : spec.kind === "oci-index" ? "oci" : (spec.format ?? "oci");
  const platforms =
    spec.platforms ?? (spec.kind === "single" ? ["linux/amd64"] : ["linux/amd64", "linux/arm64"]);
  if (spec.kind === "single" && platforms.length !== 1) throw new Error("a single image has one platform");
  const blobs = new Map<string, { digest: string; size: number }>();
  const children: Child[] = [];
  const layers = new LayerCache(workDir);
  for (const platform of platforms) {
    const { manifest, platformBlobs } = await buildPlatform(spec, format, platform, layers);
    for (const blob of platformBlobs) {
      await uploadBlob(target, repo, blob);
      blobs.set(blob.digest, { digest: blob.digest, size: blob.size });
    }
    // A lone manifest goes under the tag; children of an index are addressed by digest.
    await putManifest(target, repo, spec.kind === "single" ? tag : manifest.digest, manifest);
    children.push({ platform, manifest });
  }
  const top = spec.kind === "single" ? children[0]!.manifest : buildIndex(format, children);
  if (spec.kind !== "single") await putManifest(target, repo, tag, top);
  const ref = `${new URL(target.url).host}/${repo}:${tag}`;
  return describe(ref, repo, tag, top, children, [...blobs.values()]);
}

function describe(
  ref: string,
  repo: string,
  tag: string,
  top: Manifest,
  children: Child[],
  blobs: PushedImage["blobs"],
): PushedImage {
  const platforms = children.map(({ platform, manifest }) => ({
    platform,
    digest: manifest.digest,
    mediaType: manifest.mediaType,
    size: manifest.bytes.length,
  }));
  return {
    ref,
    repo,
    tag,
    digest: top.digest,
    mediaType: top.mediaType,
    manifestBytes: top.bytes,
    platforms,
    blobs,
  };
}

async function buildPlatform(
  spec: ImageSpec,
  format: "oci" | "docker",
  platform: string,
  cache: LayerCache,
): Promise<{ manifest: Manifest; platformBlobs: Blob[] }> {
  const layers: Layer[] = [];
  for (const layerSpec of spec.layers) layers.push(await cache.get(layerSpec, platform));
  const config = toBlob(Buffer.from(JSON.stringify(imageConfig(platform, layers, spec.label), null, 2)));
  const types = format === "oci" ? OCI_TYPES : DOCKER_TYPES;
  const manifest = toManifest(types.manifest, {
    schemaVersion: 2,
    mediaType: types.manifest,
    config: { mediaType: types.config, digest: config.digest, size: config.size },
    layers: layers.map((layer) => ({ mediaType: types.layer, digest: layer.digest, size: layer.size })),
  });
  return { manifest, platformBlobs: [config, ...layers.map(layerBlob)] };
}

const OCI_TYPES = {
  manifest: MediaTypes.ociManifest,
  config: MediaTypes.ociConfig,
  layer: MediaTypes.ociLayer,
};
const DOCKER_TYPES = {
  manifest: MediaTypes.dockerManifest,
  config: MediaTypes.dockerConfig,
  layer: MediaTypes.dockerLayer,
};

/** Builds each distinct layer once per push: a large layer shared by platforms is costly. */
class LayerCache {
  private readonly layers = new Map<string, Promise<Layer>>();
  constructor(private readonly workDir: string) {}

  get(spec: LayerSpec, platform: string): Promise<Layer> {
    const { seed, sizeBytes, samePerPlatform } = typeof spec === "string" ? { seed: spec } : spec;
    const effectiveSeed = samePerPlatform ? seed : `${seed}@${platform}`;
    const key = `${effectiveSeed}\u0000${sizeBytes ?? "small"}`;
    let layer = this.layers.get(key);
    if (!layer) {
      layer =
        sizeBytes === undefined
          ? Promise.resolve(makeLayer(effectiveSeed))
          : makeLargeLayer(effectiveSeed, sizeBytes, this.workDir);
      this.layers.set(key, layer);
    }
    return layer;
  }
}

function layerBlob(layer: Layer): Blob {
  return {
    digest: layer.digest,
    size: layer.size,
    content: "bytes" in layer ? layer.bytes : { file: layer.file },
  };
}

function toBlob(bytes: Buffer): Blob {
  return { digest: sha256Digest(bytes), size: bytes.length, content: bytes };
}

function toManifest(mediaType: string, body: object): Manifest {
  const bytes = Buffer.from(JSON.stringify(body, null, 2));
  return { mediaType, bytes, digest: sha256Digest(bytes) };
}

export function parsePlatform(platform: string): { os: string; architecture: string; variant?: string } {
  const [os, architecture, variant] = platform.split("/");
  if (!os || !architecture) throw new Error(`platform must be os/arch[/variant]: ${platform}`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

function imageConfig(platform: string, layers: Layer[], label = ""): object {
  return {
    ...parsePlatform(platform),
    created: FIXED_CREATED,
    config: { Env: ["PATH=/usr/bin:/bin"], Cmd: ["/bin/sh"], Labels: { "org.example.testbed": label } },
    rootfs: { type: "layers", diff_ids: layers.map((layer) => layer.diffId) },
    history: layers.map((_, i) => ({ created: FIXED_CREATED, created_by: `testbed layer ${i}` })),
  };
}

function buildIndex(format: "oci" | "docker", children: Child[]): Manifest {
  const mediaType = format === "oci" ? MediaTypes.ociIndex : MediaTypes.dockerList;
  return toManifest(mediaType, {
    schemaVersion: 2,
    mediaType,
    manifests: children.map(({ platform, manifest }) => ({
      mediaType: manifest.mediaType,
      digest: manifest.digest,
      size: manifest.bytes.length,
      platform: parsePlatform(platform),
    })),
  });
}

// --- registry protocol ------------------------------------------------------------------

/** Pushes one blob held in memory (a hand-made artifact's); returns its descriptor's digest and size. */
export async function pushBlob(
  registry: RegistryTarget,
  repo: string,
  bytes: Buffer,
): Promise<{ digest: string; size: number }> {
  const blob = toBlob(bytes);
  await uploadBlob(toTarget(registry), repo, blob);
  return { digest: blob.digest, size: blob.size };
}

/** Puts a hand-made manifest under a tag or its digest; returns its digest. */
export async function pushManifest(
  registry: RegistryTarget,
  repo: string,
  reference: string,
  mediaType: string,
  bytes: Buffer,
): Promise<string> {
  const manifest = { mediaType, bytes, digest: sha256Digest(bytes) };
  await putManifest(toTarget(registry), repo, reference, manifest);
  return manifest.digest;
}

function toTarget(registry: RegistryTarget): Target {
  const { url, auth } = typeof registry === "string" ? { url: registry, auth: undefined } : registry;
  return { url: url.replace(/\/+$/, ""), auth };
}

/** Monolithic upload: POST for an upload URL, then one PUT with the digest. */
async function uploadBlob(target: Target, repo: string, blob: Blob): Promise<void> {
  const blobUrl = `${target.url}/v2/${repo}/blobs/${blob.digest}`;
  const head = await httpRequest(blobUrl, { method: "HEAD", auth: target.auth });
  if (head.status === 200) return;
  const started = await httpRequest(`${target.url}/v2/${repo}/blobs/uploads/`, {
    method: "POST",
    auth: target.auth,
  });
  expectStatus(started, 202, `start upload of ${blob.digest} to ${repo}`);
  // Location may be relative and already carries a query string (_state=...).
  const location = new URL(header(started, "location") ?? "", target.url + "/");
  location.searchParams.set("digest", blob.digest);
  const body = Buffer.isBuffer(blob.content) ? blob.content : createReadStream(blob.content.file);
  const put = await httpRequest(location, {
    method: "PUT",
    auth: target.auth,
    headers: { "content-type": "application/octet-stream", "content-length": String(blob.size) },
    body,
  });
  expectStatus(put, 201, `upload ${blob.digest} to ${repo}`);
}

async function putManifest(
  target: Target,
  repo: string,
  reference: string,
  manifest: Manifest,
): Promise<void> {
  const res = await httpRequest(`${target.url}/v2/${repo}/manifests/${reference}`, {
    method: "PUT",
    auth: target.auth,
    headers: { "content-type": manifest.mediaType },
    body: manifest.bytes,
  });
  expectStatus(res, 201, `put manifest ${repo}:${reference}`);
  const stored = header(res, "docker-content-digest");
  if (stored !== manifest.digest) {
    throw new Error(`registry stored ${repo}:${reference} as ${stored}, expected ${manifest.digest}`);
  }
}

function expectStatus(res: HttpResponse, status: number, what: string): void {
  if (res.status !== status) {
    throw new Error(`${what}: HTTP ${res.status} (expected ${status}): ${res.body.toString("utf8", 0, 500)}`);
  }
}

// --- the standard set -------------------------------------------------------------------

export interface StandardImages {
  /** testbed/multi-oci:v1, an OCI index for linux/amd64 + linux/arm64. */
  ociIndex: PushedImage;
  /** testbed/multi-docker:v1, a Docker manifest list for linux/amd64 + linux/arm64. */
  dockerList: PushedImage;
  /** testbed/single-oci:v1, one OCI manifest for linux/amd64. */
  singleOci: PushedImage;
  /** testbed/single-docker:v1, one Docker schema 2 manifest for linux/amd64. */
  singleDocker: PushedImage;
  /** Digests of the blobs used by more than one of the images above (the "base" layers). */
  sharedBlobs: string[];
}

/**
 * The images most tests need. All four use the "testbed-base" layer, so its linux/amd64 blob
 * is shared by all of them and its linux/arm64 blob by the two multi-arch images.
 */
export async function seedStandardImages(registry: RegistryTarget): Promise<StandardImages> {
  const base = "testbed-base";
  const images: StandardImages = {
    ociIndex: await pushImage(registry, "testbed/multi-oci", "v1", {
      kind: "oci-index",
      layers: [base, "multi-oci-app"],
      label: "multi-oci",
    }),
    dockerList: await pushImage(registry, "testbed/multi-docker", "v1", {
      kind: "docker-list",
      layers: [base, "multi-docker-app"],
      label: "multi-docker",
    }),
    singleOci: await pushImage(registry, "testbed/single-oci", "v1", {
      kind: "single",
      format: "oci",
      layers: [base, "single-oci-app"],
      label: "single-oci",
    }),
    singleDocker: await pushImage(registry, "testbed/single-docker", "v1", {
      kind: "single",
      format: "docker",
      layers: [base, "single-docker-app"],
      label: "single-docker",
    }),
    sharedBlobs: [],
  };
  images.sharedBlobs = sharedDigests([
    images.ociIndex,
    images.dockerList,
    images.singleOci,
    images.singleDocker,
  ]);
  return images;
}

function sharedDigests(images: PushedImage[]): string[] {
  const uses = new Map<string, number>();
  for (const image of images) {
    for (const blob of image.blobs) uses.set(blob.digest, (uses.get(blob.digest) ?? 0) + 1);
  }
  return [...uses].filter(([, count]) => count > 1).map(([digest]) => digest);
}
