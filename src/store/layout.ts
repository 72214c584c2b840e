/**
 * The bundle's `images/` folder: a standard OCI image layout kept as a content-addressed store,
 * the way npm's cacache keeps its cache. A blob is written to a partial file while it is hashed,
 * checked against its digest and size, then renamed to `blobs/sha256/<hex>`: a reader never
 * sees a partial blob, and a blob under its final name is whole. A killed run leaves only
 * partial files, which the next run resumes. `index.json` is replaced atomically.
 */
import { createReadStream } from "node:fs";
import { mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { WorkError } from "../util/errors.js";
import { isTransient } from "../util/retry.js";
import { resolveInside } from "../util/paths.js";
import { digestHex, sha256Digest, type Descriptor, type Origin, type RawManifest } from "../oci/types.js";
import { DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST } from "../oci/mediaTypes.js";
import { parseIndexFile } from "../oci/parse.js";
import type {
  BlobOpener,
  ImageLocation,
  ImageSource,
  ImageTarget,
  ManifestHead,
  ManifestRole,
} from "./types.js";
import { BLOBS_DIR, blobRel, writeAtomic, writeResumable, type ResumableWrite } from "../util/cas.js";

export const REF_NAME = "org.opencontainers.image.ref.name";
/**
 * The source's media type, when index.json has to name it otherwise: containers/image (skopeo)
 * skips index.json entries that are not OCI types, so a Docker manifest list is listed as an
 * OCI index there. Its bytes and digest are the source's all the same; this says what they are.
 */
export const SOURCE_MEDIA_TYPE = "vnd.bundle.source.media-type";

/** The OCI type of the same kind, for index.json: Docker list → OCI index, Docker manifest → OCI manifest. */
function ociKind(mediaType: string): string {
  if (mediaType === DOCKER_LIST) return OCI_INDEX;
  if (mediaType === DOCKER_MANIFEST) return OCI_MANIFEST;
  return mediaType;
}
const LAYOUT_FILE = JSON.stringify({ imageLayoutVersion: "1.0.0" });
/**
 * Blob reads through a stream (load, a copy to another layout) in 64 KiB pieces: 1 MiB pieces
 * left an upload of 20 images (315 MB) at the same CPU but a peak of 144 MB instead of 123 MB
 * (medians of 3), the pieces outliving V8's young generation. An upload reads `blobFile` itself.
 */
const READ_BUFFER = 64 << 10;

export interface IndexFile {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

export class OciLayout implements ImageSource, ImageTarget {
  readonly acceptsPartialIndex = true;
  readonly description: string;
  /** One writer per digest, even when several images share a blob. */
  private readonly writing = new Map<string, Promise<void>>();
  /** index.json updates run one after another. */
  private indexQueue: Promise<unknown> = Promise.resolve();
  private index: Promise<IndexFile> | undefined;
  /** The write of index.json under way; `stale` says a change came after it read the index. */
  private saving: Promise<void> | undefined;
  private stale = false;

  private constructor(readonly dir: string) {
    this.description = `OCI layout ${dir}`;
  }

  /** Opens a layout, creating the folder, `oci-layout` and an empty `index.json` when `create`. */
  static async open(dir: string, opts: { create: boolean }): Promise<OciLayout> {
    const layout = new OciLayout(dir);
    if (opts.create) {
      await mkdir(path.join(dir, BLOBS_DIR), { recursive: true });
      await writeFile(path.join(dir, "oci-layout"), LAYOUT_FILE);
      if (!(await exists(path.join(dir, "index.json"))))
        await layout.writeIndex({ schemaVersion: 2, manifests: [] });
    } else if (!(await exists(path.join(dir, "oci-layout")))) {
      throw new WorkError(`${dir} is not an OCI image layout (no oci-layout file)`);
    }
    return layout;
  }

  blobPath(digest: string): string {
    return path.join(this.dir, blobRel(digest));
  }

  /** The blob's file for reading: a link that leads outside the layout is refused, not read through. */
  private blobInside(digest: string): Promise<string> {
    return resolveInside(this.dir, blobRel(digest), `a blob of ${this.dir}`);
  }

  private partialPath(digest: string): string {
    return path.join(this.dir, ".partial", digestHex(digest));
  }

  async hasBlob(_loc: ImageLocation, desc: Descriptor): Promise<boolean> {
    const s = await stat(this.blobPath(desc.digest)).catch(() => undefined);
    return s?.size === desc.size;
  }

  /**
   * Looks for the blob on disk even when the caller just did (`PutBlobOptions.checkedAbsent` is
   * not used): a stat costs nothing, and another image may have stored the blob since.
   */
  putBlob(
    loc: ImageLocation,
    desc: Descriptor,
    open: BlobOpener,
    onBytes?: (n: number) => void,
  ): Promise<void> {
    const running = this.writing.get(desc.digest);
    if (running) return running;
    const job = this.writeBlob(loc, desc, open, onBytes).finally(() => this.writing.delete(desc.digest));
    this.writing.set(desc.digest, job);
    return job;
  }

  private async writeBlob(
    loc: ImageLocation,
    desc: Descriptor,
    open: BlobOpener,
    onBytes?: (n: number) => void,
  ) {
    if (await this.hasBlob(loc, desc)) return;
    const partial = this.partialPath(desc.digest);
    await mkdir(path.dirname(partial), { recursive: true });
    let resumed = false;
    const write: ResumableWrite = {
      partial,
      open: async (offset) => {
        resumed = offset > 0;
        return { stream: await open(offset), from: offset };
      },
      want: { size: desc.size, sha256: digestHex(desc.digest) },
      fail: {
        over: () => corrupt(loc, desc, `more than ${desc.size} bytes`),
        differ: (size, sha256) => corrupt(loc, desc, `${size} bytes with digest sha256:${sha256}`),
      },
      // A partial is kept to resume after a fault; after a refusal (a blob past its size) it is junk.
      keep: isTransient,
      ...(onBytes ? { onBytes } : {}),
    };
    const blob = this.blobPath(desc.digest);
    await writeResumable(blob, write).catch((err: unknown) => {
      // A resumed blob that fails the check may have been spoilt before the kill: once more from 0.
      if (!(err instanceof CorruptBlob) || !resumed) throw err;
      return writeResumable(blob, write);
    });
  }

  async openBlob(loc: ImageLocation, desc: Descriptor, offset = 0): Promise<Readable> {
    return createReadStream(await this.blobFile(loc, desc), { start: offset, highWaterMark: READ_BUFFER });
  }

  async blobFile(loc: ImageLocation, desc: Descriptor): Promise<string> {
    const file = await this.blobInside(desc.digest);
    if (!(await exists(file)))
      throw new WorkError(`blob ${desc.digest} of ${loc.name} is missing from ${this.dir}`);
    return file;
  }

  async hasManifest(loc: ImageLocation, digest: string): Promise<boolean> {
    if (!(await exists(this.blobPath(digest)))) return false;
    if (loc.reference.startsWith("sha256:")) return true;
    return (await this.headManifest(loc))?.digest === digest;
  }

  headManifest(loc: ImageLocation): Promise<ManifestHead | undefined> {
    return headLayoutManifest(loc, this.reader());
  }

  getManifest(loc: ImageLocation): Promise<RawManifest> {
    return readLayoutManifest(loc, this.reader());
  }

  blobOrigin(digest: string): Origin {
    return { where: this.blobPath(digest), bundleFile: true };
  }

  private reader(): LayoutReader {
    return {
      where: this.dir,
      blobOrigin: (digest) => this.blobOrigin(digest),
      readIndex: () => this.readIndex(),
      blobSize: async (digest) => (await stat(this.blobPath(digest)).catch(() => undefined))?.size,
      readBlob: async (digest) => readFile(await this.blobInside(digest)),
    };
  }

  /**
   * Stores a manifest blob; an image's top manifest is also named in index.json with the image's
   * full reference, replacing an earlier entry of that name.
   */
  async putManifest(loc: ImageLocation, m: RawManifest, role: ManifestRole): Promise<void> {
    if (sha256Digest(m.bytes) !== m.digest)
      throw new WorkError(`manifest of ${loc.name}: bytes do not match ${m.digest}`);
    const file = this.blobPath(m.digest);
    if (!(await exists(file))) await writeAtomic(file, m.bytes);
    if (role === "child") return;
    await this.updateIndex((index) => {
      const listed = ociKind(m.mediaType);
      const entry: Descriptor = {
        mediaType: listed,
        digest: m.digest,
        size: m.bytes.length,
        annotations: {
          [REF_NAME]: loc.name,
          ...(listed !== m.mediaType ? { [SOURCE_MEDIA_TYPE]: m.mediaType } : {}),
        },
      };
      const named = index.manifests.filter((d) => d.annotations?.[REF_NAME] === loc.name);
      if (named.length === 1 && JSON.stringify(named[0]) === JSON.stringify(entry)) return index;
      const others = index.manifests.filter((d) => d.annotations?.[REF_NAME] !== loc.name);
      return { ...index, manifests: [...others, entry] };
    });
  }

  /**
   * Drops what the bundle no longer holds: index entries not named in `names`, blobs not in
   * `digests`, and partial files. Run only after a whole successful prepare.
   */
  async prune(names: Set<string>, digests: Set<string>): Promise<{ removedBlobs: number }> {
    await this.updateIndex((index) => {
      const kept = index.manifests.filter((d) => names.has(d.annotations?.[REF_NAME] ?? ""));
      return kept.length === index.manifests.length ? index : { ...index, manifests: kept };
    });
    const keep = new Set([...digests].map(digestHex));
    const dir = path.join(this.dir, BLOBS_DIR);
    let removedBlobs = 0;
    for (const file of await readdir(dir)) {
      if (keep.has(file)) continue;
      await rm(path.join(dir, file), { force: true });
      removedBlobs++;
    }
    await rm(path.join(this.dir, ".partial"), { recursive: true, force: true });
    return { removedBlobs };
  }

  /**
   * The layout's `index.json`, read and parsed once, then kept current by this layout's own
   * updates: every image of a prepare looks itself up in it, and parsing it each time made a
   * prepare of n images cost n² (nothing else writes the index while this process holds it).
   */
  readIndex(): Promise<IndexFile> {
    this.index ??= this.loadIndex().catch((err: unknown) => {
      this.index = undefined;
      throw err;
    });
    return this.index;
  }

  private async loadIndex(): Promise<IndexFile> {
    const file = path.join(this.dir, "index.json");
    return parseIndexFile(await readFile(file), { where: file, bundleFile: true });
  }

  /**
   * Changes the index in memory, one change after another, and resolves once index.json holds
   * the change. A change that returns the index as it was writes nothing (a rerun's images);
   * changes made while a write is under way go out together in the next one: index.json is
   * rewritten whole, so writing it once per image made a prepare of n images write n² entries.
   */
  private async updateIndex(change: (index: IndexFile) => IndexFile): Promise<void> {
    const next = this.indexQueue.then(async () => {
      const before = await this.readIndex();
      const index = change(before);
      this.index = Promise.resolve(index);
      return index !== before;
    });
    this.indexQueue = next.catch(() => undefined);
    if (await next) await this.saveIndex();
  }

  private saveIndex(): Promise<void> {
    this.stale = true;
    this.saving ??= (async () => {
      try {
        while (this.stale) {
          this.stale = false;
          await this.writeIndex(await this.readIndex());
        }
      } finally {
        this.saving = undefined;
      }
    })();
    return this.saving;
  }

  private writeIndex(index: IndexFile): Promise<void> {
    return writeAtomic(path.join(this.dir, "index.json"), `${JSON.stringify(index, null, 2)}\n`);
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/**
 * How a layout's index and blobs are read: from a folder (OciLayout) or from inside a bundle
 * archive (ArchiveLayout). Both look images up the same way, through the functions below.
 */
export interface LayoutReader {
  /** For messages: the folder or archive. */
  where: string;
  /** For messages about what a blob says: its file. */
  blobOrigin(digest: string): Origin;
  readIndex(): Promise<IndexFile>;
  /** undefined when the blob is absent. */
  blobSize(digest: string): Promise<number | undefined>;
  readBlob(digest: string): Promise<Buffer>;
}

/** The digest a name (or digest) points at in the layout, without reading the manifest. */
export async function headLayoutManifest(
  loc: ImageLocation,
  r: LayoutReader,
): Promise<ManifestHead | undefined> {
  if (loc.reference.startsWith("sha256:")) {
    const size = await r.blobSize(loc.reference);
    return size === undefined ? undefined : { digest: loc.reference, mediaType: "", size };
  }
  const entry = (await r.readIndex()).manifests.find((m) => m.annotations?.[REF_NAME] === loc.name);
  return entry && { digest: entry.digest, mediaType: sourceMediaType(entry), size: entry.size };
}

/** A manifest by the image's name (index.json) or by digest, its bytes checked against the digest. */
export async function readLayoutManifest(loc: ImageLocation, r: LayoutReader): Promise<RawManifest> {
  const isDigest = loc.reference.startsWith("sha256:");
  const entry = isDigest
    ? undefined
    : (await r.readIndex()).manifests.find((m) => m.annotations?.[REF_NAME] === loc.name);
  const digest = isDigest ? loc.reference : entry?.digest;
  if (!digest) throw new WorkError(`${loc.name} is not in ${r.where}`);
  if ((await r.blobSize(digest)) === undefined) {
    throw new WorkError(`manifest ${digest} of ${loc.name} is missing from ${r.where}`);
  }
  const bytes = await r.readBlob(digest).catch((err: unknown) => {
    throw new WorkError(
      `manifest ${digest} of ${loc.name} in ${r.where}: ${(err as Error)?.message ?? String(err)}`,
    );
  });
  if (sha256Digest(bytes) !== digest)
    throw new WorkError(`manifest ${digest} of ${loc.name} in ${r.where} is corrupt`);
  return {
    bytes,
    digest,
    mediaType: entry ? sourceMediaType(entry) : mediaTypeOf(bytes),
    origin: r.blobOrigin(digest),
  };
}

/** A blob whose bytes are not what its descriptor says: never stored. */
class CorruptBlob extends WorkError {
  override name = "CorruptBlob";
}

function corrupt(loc: ImageLocation, desc: Descriptor, got: string): CorruptBlob {
  return new CorruptBlob(
    `blob ${desc.digest} of ${loc.name} is corrupt: expected ${desc.size} bytes, got ${got}; nothing was stored`,
  );
}

function sourceMediaType(entry: Descriptor): string {
  return entry.annotations?.[SOURCE_MEDIA_TYPE] ?? entry.mediaType;
}

/** The body's own media type, if it names one; the manifest's parser judges the rest. */
function mediaTypeOf(bytes: Buffer): string {
  try {
    const type = (JSON.parse(bytes.toString("utf8")) as { mediaType?: unknown } | null)?.mediaType;
    return typeof type === "string" ? type : "";
  } catch {
    return "";
  }
}
