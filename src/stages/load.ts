/**
 * `bundle load DIR --docker`: a single host without a registry gets the bundle's images straight
 * into its Docker daemon, for the daemon's own platform only. The same copy engine as prepare
 * and upload, from the bundle's OCI layout to the daemon. DIR may be a bundle folder, a bare OCI
 * layout's parent (no lock), or a one-file archive, read in place: only the blobs of the chosen
 * platform are copied out of it, to a staging folder the daemon reads.
 */
import { access } from "node:fs/promises";
import path from "node:path";
import pLimit from "p-limit";
import type Dockerode from "dockerode";
import { InputError } from "../util/errors.js";
import { OciLayout, REF_NAME } from "../store/layout.js";
import { DockerDaemonTarget, daemonPlatform, tagOf, type LoadAction } from "../store/docker.js";
import { CopyEngine, type CopyEvents } from "../copy/engine.js";
import { parseConfig, parseManifest } from "../oci/parse.js";
import { offered } from "../copy/platforms.js";
import { formatPlatform, platformMatches } from "../oci/types.js";
import { formatImageRef, parseImageRef } from "../config/imageRef.js";
import { LOCK_FILE, readLock, type Lock } from "../bundle/lock.js";
import { readAll } from "../util/streams.js";
import type { ImageLocation } from "../store/types.js";
import { isArchive, openArchive } from "../bundle/archive.js";
import { ArchiveLayout } from "../bundle/archiveLayout.js";
import type { LayoutSource } from "../bundle/contents.js";

export interface LoadOptions {
  docker: Dockerode;
  /** Source references of the images to load (`redis:4.0` matches `docker.io/library/redis:4.0`); default all. */
  images?: string[];
  /**
   * `source`: tag each image with its source reference (`docker.io/library/redis:4.0` → `redis:4.0`).
   * `mirror`: with its mirror name from bundle.lock.json, as the charts will pull it.
   */
  tagAs: "source" | "mirror";
  /**
   * With `tagAs: "mirror"`: the registry host the charts name (`${IMG_REPO}`), put in front of
   * the mirror name. Without it the tag is the bare mirror name (`teleinfra/redis:4.0`).
   */
  registry?: string;
  events?: CopyEvents;
}

export interface LoadedImage {
  /** The source reference, as the bundle names the image. */
  ref: string;
  /** The tag in the daemon; undefined for an image named by digest only (loaded untagged). */
  tag: string | undefined;
  /** The daemon's image id, which is the platform's config digest. */
  imageId: string;
  platform: string;
  action: LoadAction;
}

export interface LoadResult {
  /** The daemon's platform: what was loaded of each image. */
  platform: string;
  images: LoadedImage[];
}

/** An image of the bundle, named as its entry in the layout's index.json names it. */
interface BundleImage {
  ref: string;
}

export async function loadIntoDocker(bundleDir: string, opts: LoadOptions): Promise<LoadResult> {
  const { layout, lock, local } = await openLoadSource(bundleDir);
  const images = selectImages(await bundleImages(layout), opts.images);
  const platform = await daemonPlatform(opts.docker);
  const target = new DockerDaemonTarget(opts.docker, local ? { local } : {});
  const engine = new CopyEngine({ blobLimit: pLimit(4), ...(opts.events ? { events: opts.events } : {}) });
  try {
    const loaded: LoadedImage[] = [];
    // One after another: the daemon unpacks each archive itself, more at once only competes.
    for (const image of images) {
      await requirePlatform(layout, image, platform);
      const tag = tagName(image.ref, lock, opts);
      const from = location(image.ref);
      const to: ImageLocation = { ...from, name: tag ?? image.ref };
      const copied = await engine.copy({
        source: layout,
        target,
        from,
        to,
        platforms: [platform],
        allowMissingPlatforms: false,
      });
      const outcome = target.outcome(to.name);
      if (!outcome) throw new Error(`${image.ref}: the engine copied nothing to the daemon`);
      loaded.push({ ref: image.ref, ...outcome, platform: copied.platforms[0]?.platform ?? platform });
    }
    return { platform, images: loaded };
  } finally {
    await target.dispose();
  }
}

/** A folder's layout is also the daemon's `local` store: its blob files are read in place. */
async function openLoadSource(
  bundleDir: string,
): Promise<{ layout: LayoutSource; lock: Lock | undefined; local?: OciLayout }> {
  if (await isArchive(bundleDir)) {
    const archive = await openArchive(bundleDir);
    return { layout: new ArchiveLayout(archive), lock: archive.lock };
  }
  const local = await OciLayout.open(path.join(bundleDir, "images"), { create: false });
  return { layout: local, lock: await readLockIfAny(bundleDir), local };
}

async function readLockIfAny(bundleDir: string): Promise<Lock | undefined> {
  const present = await access(path.join(bundleDir, LOCK_FILE)).then(
    () => true,
    () => false,
  );
  return present ? readLock(bundleDir) : undefined;
}

/**
 * The images the layout's index.json names. Each name becomes a tag in the daemon and a path
 * of its API, so it must be an image reference, not `../x` (exit 2 naming the entry).
 */
async function bundleImages(layout: LayoutSource): Promise<BundleImage[]> {
  const index = await layout.readIndex();
  return index.manifests.flatMap((top, i) => {
    const ref = top.annotations?.[REF_NAME];
    if (!ref) return [];
    try {
      parseImageRef(ref);
    } catch (err) {
      throw new InputError(
        `index.json of ${layout.description}: manifests[${i}].annotations["${REF_NAME}"]: ${(err as Error).message}`,
      );
    }
    return [{ ref }];
  });
}

/** The wanted images, each matched by its normalised reference; unknown ones are an input error. */
function selectImages(all: BundleImage[], wanted: string[] | undefined): BundleImage[] {
  if (!wanted) return all;
  const byRef = new Map(all.map((i) => [i.ref, i]));
  const chosen = wanted.map((w) => byRef.get(w) ?? byRef.get(formatImageRef(parseImageRef(w))));
  const unknown = wanted.filter((_, i) => !chosen[i]);
  if (unknown.length > 0) {
    throw new InputError(
      `the bundle has no image ${unknown.join(", ")}; it has ${all.map((i) => i.ref).join(", ") || "no images"}`,
    );
  }
  return [...new Set(chosen as BundleImage[])];
}

function tagName(ref: string, lock: Lock | undefined, opts: LoadOptions): string | undefined {
  if (opts.tagAs === "source") return tagOf(ref);
  if (!lock) throw new InputError(`--tag-as mirror needs the bundle's ${LOCK_FILE}, which this bundle lacks`);
  const entry = lock.images.find((i) => i.ref === ref);
  if (!entry) throw new InputError(`${ref} is in the bundle's images but not in its ${LOCK_FILE}`);
  return tagOf(opts.registry ? `${opts.registry}/${entry.mirror}` : entry.mirror);
}

function location(ref: string): ImageLocation {
  const parsed = parseImageRef(ref);
  return { repository: parsed.repository, reference: parsed.digest ?? parsed.tag ?? "latest", name: ref };
}

/**
 * The daemon's platform must be one the bundle holds. An index in the bundle lists every
 * platform of the source, but holds only those prepare was asked for: the rest are named
 * in the message as not held, rather than failing later on a missing manifest.
 */
async function requirePlatform(layout: LayoutSource, image: BundleImage, platform: string): Promise<void> {
  const held = await heldPlatforms(layout, image);
  if (held.some((p) => platformMatches(platform, parsePlatform(p)))) return;
  throw new InputError(
    `${image.ref} has no ${platform} image in this bundle; it holds ${held.join(", ") || "no platform"}. ` +
      `Prepare the bundle with --platform including ${platform} to load it into this Docker daemon`,
  );
}

async function heldPlatforms(layout: LayoutSource, image: BundleImage): Promise<string[]> {
  const loc = location(image.ref);
  const top = await parseManifest(image.ref, await layout.getManifest(loc));
  if ("manifests" in top) {
    const held = await Promise.all(top.manifests.map((d) => layout.hasBlob(loc, d)));
    const kept = top.manifests.filter((_, i) => held[i]);
    return offered({ ...top, manifests: kept })
      .split(", ")
      .filter(Boolean);
  }
  const bytes = await readAll(await layout.openBlob(loc, top.config), 8 << 20);
  const config = await parseConfig(bytes, layout.blobOrigin(top.config.digest));
  if (!config.os || !config.architecture) return [];
  return [
    formatPlatform({
      os: config.os,
      architecture: config.architecture,
      ...(config.variant ? { variant: config.variant } : {}),
    }),
  ];
}

function parsePlatform(p: string) {
  const [os = "", architecture = "", variant] = p.split("/");
  return { os, architecture, ...(variant ? { variant } : {}) };
}
