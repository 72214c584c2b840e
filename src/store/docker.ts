/**
 * A Docker daemon as a store. As a source (`docker-daemon:` images at prepare) it exports an
 * image with `docker save` and presents it as a single-platform OCI image; as a target
 * (`bundle load DIR --docker`, single hosts without a registry) it builds a `docker load`
 * archive from blob files and hands it to the daemon.
 *
 * Docker 20.10 speaks the legacy archive format only: `manifest.json` naming a config file and
 * layer tars. Its image id is the sha256 of the config bytes, so a config digest in a bundle is
 * the id the image gets in the daemon, and the other way round.
 */
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type Dockerode from "dockerode";
import * as tar from "tar";
import { WorkError } from "../util/errors.js";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, isIndex } from "../oci/mediaTypes.js";
import { sha256Digest, type Descriptor, type ImageManifest, type RawManifest } from "../oci/types.js";
import { parseConfig, parseDockerArchive, parseManifest, type DockerArchiveEntry } from "../oci/parse.js";
import { OciLayout } from "./layout.js";
import type {
  BlobOpener,
  ImageLocation,
  ImageSource,
  ImageTarget,
  ManifestHead,
  ManifestRole,
} from "./types.js";

// --- the daemon as a source -------------------------------------------------------------

/** An image exported from the daemon: its synthesized manifest and its blob files by digest. */
interface ExportedImage {
  manifest: RawManifest;
  files: Map<string, string>;
}

export class DockerDaemonSource implements ImageSource {
  readonly description = "the local Docker daemon";
  private dir: Promise<string> | undefined;
  private readonly exports = new Map<string, Promise<ExportedImage | undefined>>();

  /** `tmpDir`: where exported images are unpacked (default the system's temp dir). */
  constructor(
    private readonly docker: Dockerode,
    private readonly opts: { tmpDir?: string } = {},
  ) {}

  async headManifest(loc: ImageLocation): Promise<ManifestHead | undefined> {
    const image = await this.exported(loc);
    return (
      image && { digest: image.manifest.digest, mediaType: OCI_MANIFEST, size: image.manifest.bytes.length }
    );
  }

  /** The image's manifest, whatever tag or digest `loc.reference` holds: it has only one. */
  async getManifest(loc: ImageLocation): Promise<RawManifest> {
    const image = await this.exported(loc);
    if (!image) throw notInDaemon(loc.name);
    return image.manifest;
  }

  async openBlob(loc: ImageLocation, desc: Descriptor, offset = 0): Promise<Readable> {
    const file = (await this.exported(loc))?.files.get(desc.digest);
    if (!file)
      throw new WorkError(
        `blob ${desc.digest} is not part of ${loc.name} as exported from the Docker daemon`,
      );
    return createReadStream(file, { start: offset });
  }

  /** Removes the exported images' files. */
  async dispose(): Promise<void> {
    const dir = await this.dir?.catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  }

  /** Each image is exported once, however often the engine asks about it; undefined when absent. */
  private exported(loc: ImageLocation): Promise<ExportedImage | undefined> {
    const name = daemonName(loc);
    let job = this.exports.get(name);
    if (!job) {
      job = this.export(name);
      this.exports.set(name, job);
    }
    return job;
  }

  private async export(name: string): Promise<ExportedImage | undefined> {
    const imageId = await inspectId(this.docker, name);
    if (!imageId) return undefined;
    this.dir ??= makeTempDir(this.opts.tmpDir, "bundle-docker-save-");
    const dir = await mkdtemp(path.join(await this.dir, "image-"));
    await saveInto(this.docker, name, dir);
    return readSavedImage(name, imageId, dir);
  }
}

/**
 * What to ask the daemon for. The engine passes a child's digest as `reference` while keeping
 * the image's `name`; the daemon knows the image by its name (a `@sha256:` in it is a repo digest).
 */
function daemonName(loc: ImageLocation): string {
  return loc.name.replace(/^docker-daemon:/, "");
}

function notInDaemon(name: string): WorkError {
  return new WorkError(
    `image ${name} is not in the local Docker daemon (docker image inspect finds no such image)`,
  );
}

/** The image's id, or undefined when the daemon has no image of that name. */
async function inspectId(docker: Dockerode, name: string): Promise<string | undefined> {
  try {
    const info = (await docker.getImage(name).inspect()) as { Id: string };
    return info.Id;
  } catch (err) {
    if (statusOf(err) === 404) return undefined;
    throw daemonError(`docker image inspect ${name}`, err);
  }
}

/** `docker save`, unpacked as it streams in: the archive is never held in memory. */
async function saveInto(docker: Dockerode, name: string, dir: string): Promise<void> {
  try {
    const archive = (await docker.getImage(name).get()) as Readable;
    await pipeline(archive, tar.x({ cwd: dir, strict: true }));
  } catch (err) {
    throw daemonError(`docker save ${name}`, err);
  }
}

/**
 * Checks the saved files against what they must be (the config against the image id, each
 * layer tar against its diff_id) and describes them as an OCI manifest. The manifest is a pure
 * function of the image, so exporting it again gives the same manifest digest.
 */
async function readSavedImage(name: string, imageId: string, dir: string): Promise<ExportedImage> {
  const saved = (file: string) => ({ where: `${file} of docker save ${name}`, bundleFile: false });
  const entries = await parseDockerArchive(
    await readFile(path.join(dir, "manifest.json")),
    saved("manifest.json"),
  );
  const entry = entries[0];
  if (entries.length !== 1 || !entry)
    throw new WorkError(`docker save ${name} wrote ${entries.length} images, expected 1`);
  const files = new Map<string, string>();
  const config = await describeFile(path.join(dir, entry.Config), OCI_CONFIG, files);
  if (config.digest !== imageId) {
    throw new WorkError(
      `docker save ${name}: config ${config.digest} is not image ${imageId} (was the tag moved meanwhile?)`,
    );
  }
  const configBytes = await readFile(path.join(dir, entry.Config));
  const diffIds = (await parseConfig(configBytes, saved(entry.Config))).rootfs?.diff_ids ?? [];
  if (diffIds.length !== entry.Layers.length) {
    throw new WorkError(
      `docker save ${name}: ${entry.Layers.length} layer files for ${diffIds.length} diff_ids in its config`,
    );
  }
  const layers: Descriptor[] = [];
  for (const [i, layer] of entry.Layers.entries()) {
    const desc = await describeFile(path.join(dir, layer), OCI_LAYER, files);
    if (desc.digest !== diffIds[i]) {
      throw new WorkError(
        `docker save ${name}: layer ${i} (${layer}) has digest ${desc.digest}, its config says ${diffIds[i]}`,
      );
    }
    layers.push(desc);
  }
  const body: ImageManifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers };
  const bytes = Buffer.from(JSON.stringify(body));
  return { manifest: { bytes, digest: sha256Digest(bytes), mediaType: OCI_MANIFEST }, files };
}

/** A descriptor for a file (hashed as it is read), recorded in `files` under its digest. */
async function describeFile(
  file: string,
  mediaType: string,
  files: Map<string, string>,
): Promise<Descriptor> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  const digest = `sha256:${hash.digest("hex")}`;
  files.set(digest, file);
  return { mediaType, digest, size };
}

// --- the daemon as a target -------------------------------------------------------------

/** What loading an image did: `present` when the daemon already had it under its tag. */
export type LoadAction = "loaded" | "tagged" | "present";

export interface LoadOutcome {
  /** The daemon's image id: the config digest. */
  imageId: string;
  /** Undefined for an image named by digest only: it is loaded without a tag. */
  tag: string | undefined;
  action: LoadAction;
}

export interface DockerDaemonTargetOptions {
  /**
   * A layout whose blob files the daemon may read as they are (the bundle's): blobs it holds
   * count as present and are never copied. Blobs from elsewhere are staged in a temp dir.
   */
  local?: OciLayout;
  tmpDir?: string;
}

/**
 * Loads images into a daemon. The image is tagged with `loc.name` (without any `@digest`), so
 * the caller picks the tag by the name it gives the target location.
 *
 * A daemon holds one platform's image, not an index: the engine copies the chosen platform's
 * manifest first (as a "child"), which is when the image is loaded; the index that follows is
 * accepted and dropped.
 */
export class DockerDaemonTarget implements ImageTarget {
  readonly description = "the local Docker daemon";
  readonly acceptsPartialIndex = true;
  private dir: Promise<string> | undefined;
  private staging: Promise<OciLayout> | undefined;
  /** Manifests seen in putManifest, for hasManifest when no local layout holds them. */
  private readonly manifests = new Map<string, Buffer>();
  private readonly outcomes = new Map<string, LoadOutcome>();

  constructor(
    private readonly docker: Dockerode,
    private readonly opts: DockerDaemonTargetOptions = {},
  ) {}

  /** What the last copy to `name` did, or undefined when it loaded nothing yet. */
  outcome(name: string): LoadOutcome | undefined {
    return this.outcomes.get(name);
  }

  async hasBlob(loc: ImageLocation, desc: Descriptor): Promise<boolean> {
    if (await this.opts.local?.hasBlob(loc, desc)) return true;
    return this.staging ? (await this.staging).hasBlob(loc, desc) : false;
  }

  async putBlob(
    loc: ImageLocation,
    desc: Descriptor,
    open: BlobOpener,
    onBytes?: (n: number) => void,
  ): Promise<void> {
    if (await this.opts.local?.hasBlob(loc, desc)) return;
    this.staging ??= this.workDir().then((dir) => OciLayout.open(path.join(dir, "staged"), { create: true }));
    await (await this.staging).putBlob(loc, desc, open, onBytes);
  }

  /** Whether the daemon has the manifest's config as an image, under the location's tag. */
  async hasManifest(loc: ImageLocation, digest: string): Promise<boolean> {
    const manifest = await this.knownManifest(digest);
    if (!manifest) return false;
    const tag = tagOf(loc.name);
    const imageId = manifest.config.digest;
    const present = (await inspectId(this.docker, tag ?? imageId)) === imageId;
    if (present) this.outcomes.set(loc.name, { imageId, tag, action: "present" });
    return present;
  }

  async putManifest(loc: ImageLocation, raw: RawManifest, role: ManifestRole): Promise<void> {
    if (isIndex(raw.mediaType)) return;
    const manifest = await parseManifest(loc.name, raw);
    if ("manifests" in manifest) return;
    this.manifests.set(raw.digest, raw.bytes);
    const tag = tagOf(loc.name);
    const imageId = manifest.config.digest;
    // The image may be there under another name (the other tagAs, or another image's tag).
    const action = (await inspectId(this.docker, imageId)) ? "tagged" : "loaded";
    if (action === "tagged") await this.tag(imageId, tag);
    else await this.load(loc.name, manifest, tag);
    const got = await inspectId(this.docker, tag ?? imageId);
    if (got !== imageId) {
      throw new WorkError(
        `${loc.name}: after docker load the daemon has image ${got ?? "none"}, expected ${imageId} (${role})`,
      );
    }
    this.outcomes.set(loc.name, { imageId, tag, action });
  }

  /** Removes staged blobs and load archives' folders. */
  async dispose(): Promise<void> {
    const dir = await this.dir?.catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  }

  private workDir(): Promise<string> {
    this.dir ??= makeTempDir(this.opts.tmpDir, "bundle-docker-load-");
    return this.dir;
  }

  private async knownManifest(digest: string): Promise<ImageManifest | undefined> {
    const known = this.manifests.get(digest);
    const file = known ? undefined : this.opts.local?.blobPath(digest);
    const bytes = known ?? (file ? await readFile(file).catch(() => undefined) : undefined);
    if (!bytes) return undefined;
    const origin = file
      ? { where: file, bundleFile: true }
      : { where: `manifest ${digest}`, bundleFile: false };
    const parsed = await parseManifest(digest, { bytes, digest, mediaType: "", origin });
    return "manifests" in parsed ? undefined : parsed;
  }

  private async tag(imageId: string, tag: string | undefined): Promise<void> {
    if (!tag) return;
    const colon = tag.lastIndexOf(":");
    try {
      await this.docker.getImage(imageId).tag({ repo: tag.slice(0, colon), tag: tag.slice(colon + 1) });
    } catch (err) {
      throw daemonError(`docker tag ${imageId} ${tag}`, err);
    }
  }

  /** `docker load` of an archive built on the fly from the blob files, never written whole. */
  private async load(name: string, manifest: ImageManifest, tag: string | undefined): Promise<void> {
    const dir = await mkdtemp(path.join(await this.workDir(), "archive-"));
    try {
      await this.linkArchive(dir, manifest, tag);
      const archive = tar.c({ cwd: dir, follow: true, portable: true }, ["manifest.json", "blobs"]);
      try {
        const body = Readable.from(archive, { objectMode: false });
        await readLoadProgress(name, await this.docker.loadImage(body, { quiet: true }));
      } catch (err) {
        throw daemonError(`docker load of ${name}`, err);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * The archive's folder: manifest.json, and symlinks to the blob files wherever they are (tar
   * follows them), so a blob of the bundle is read once, straight into the daemon. Layers keep
   * their compression: docker load decompresses gzip layers itself and checks each diff_id.
   */
  private async linkArchive(dir: string, manifest: ImageManifest, tag: string | undefined): Promise<void> {
    const blobs = [manifest.config, ...manifest.layers];
    await mkdir(path.join(dir, "blobs", "sha256"), { recursive: true });
    for (const blob of new Map(blobs.map((b) => [b.digest, b])).values()) {
      // An absolute target: a relative one would be read from the archive folder, not from here.
      await symlink(path.resolve(await this.blobFile(blob)), path.join(dir, archivePath(blob.digest)));
    }
    const entry: DockerArchiveEntry = {
      Config: archivePath(manifest.config.digest),
      RepoTags: tag ? [tag] : [],
      Layers: manifest.layers.map((l) => archivePath(l.digest)),
    };
    await writeFile(path.join(dir, "manifest.json"), JSON.stringify([entry]));
  }

  private async blobFile(blob: Descriptor): Promise<string> {
    const loc = { repository: "", reference: "", name: "" };
    if (this.opts.local && (await this.opts.local.hasBlob(loc, blob)))
      return this.opts.local.blobPath(blob.digest);
    const staged = this.staging && (await this.staging);
    if (staged && (await staged.hasBlob(loc, blob))) return staged.blobPath(blob.digest);
    throw new WorkError(`blob ${blob.digest} was never stored for docker load`);
  }
}

function archivePath(digest: string): string {
  return `blobs/sha256/${digest.slice("sha256:".length)}`;
}

/**
 * The tag an image is loaded under: the name without `@digest`, or undefined when no tag is
 * left (an image named by digest only loads untagged; docker cannot tag with a digest).
 */
export function tagOf(name: string): string | undefined {
  const bare = name.replace(/^docker-daemon:/, "").replace(/@sha256:[a-f0-9]+$/, "");
  return bare.lastIndexOf(":") > bare.lastIndexOf("/") ? bare : undefined;
}

/**
 * Reads `docker load`'s JSON message stream to its end. The daemon answers 200 before it has
 * read the archive, so a failure (a diff_id that does not match, a broken layer) arrives as an
 * `error` message in the stream, not as a status.
 */
async function readLoadProgress(name: string, response: NodeJS.ReadableStream): Promise<void> {
  let text = "";
  for await (const chunk of response) text += chunk.toString();
  for (const line of text.split(/\r?\n/)) {
    if (!line.trim()) continue;
    const msg = JSON.parse(line) as { error?: unknown; errorDetail?: { message?: unknown } } | null;
    const error = msg?.errorDetail?.message ?? msg?.error;
    if (error) throw new WorkError(`docker load of ${name} failed: ${String(error)}`);
  }
}

// --- the daemon itself ------------------------------------------------------------------

/** Docker reports `uname -m`; images name platforms the Go way. */
const ARCHITECTURES: Record<string, string> = {
  x86_64: "amd64",
  amd64: "amd64",
  aarch64: "arm64",
  arm64: "arm64",
  armv7l: "arm/v7",
  armv6l: "arm/v6",
  i386: "386",
  i686: "386",
  ppc64le: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
};

/** The platform the daemon runs images for, e.g. `linux/amd64`. */
export async function daemonPlatform(docker: Dockerode): Promise<string> {
  let info: { OSType?: string; Architecture?: string };
  try {
    info = (await docker.info()) as typeof info;
  } catch (err) {
    throw daemonError("docker info", err);
  }
  const arch = ARCHITECTURES[info.Architecture ?? ""];
  if (!info.OSType || !arch) {
    throw new WorkError(`the Docker daemon reports an unknown platform: ${info.OSType}/${info.Architecture}`);
  }
  return `${info.OSType}/${arch}`;
}

function statusOf(err: unknown): number | undefined {
  return (err as { statusCode?: number }).statusCode;
}

/** A dockerode failure as a WorkError that says what was asked and what the daemon answered. */
function daemonError(what: string, err: unknown): WorkError {
  if (err instanceof WorkError) return err;
  const e = err as { json?: { message?: string }; message?: string; code?: string };
  const why = e.json?.message ?? e.message ?? String(err);
  return new WorkError(
    `${what} failed: ${why}${e.code === "ENOENT" ? " (is the Docker daemon running?)" : ""}`,
  );
}

/** A fresh folder under `parent` (made if missing), or under the system's temp folder. */
async function makeTempDir(parent: string | undefined, prefix: string): Promise<string> {
  const base = parent ?? os.tmpdir();
  await mkdir(base, { recursive: true });
  return mkdtemp(path.join(base, prefix));
}
