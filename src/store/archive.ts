/**
 * The `images/` OCI layout inside a bundle archive (src/bundle/archive.ts), read in place: upload
 * pushes images straight out of the archive, each blob read from its offset, with no unpacking.
 * Same semantics as OciLayout as a source, `SOURCE_MEDIA_TYPE` annotation included.
 */
import type { Readable } from "node:stream";
import { readMember, type BundleArchive } from "../bundle/archive.js";
import { WorkError } from "../util/errors.js";
import { digestHex, sha256Digest, type Descriptor, type RawManifest } from "../oci/types.js";
import { REF_NAME, SOURCE_MEDIA_TYPE } from "./layout.js";
import type { ImageLocation, ImageSource, ManifestHead } from "./types.js";

interface IndexFile {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

export class ArchiveLayout implements ImageSource {
  readonly description: string;
  private index: Promise<IndexFile> | undefined;

  /** `prefix` is the layout's folder inside the archive. */
  constructor(
    readonly archive: BundleArchive,
    private readonly prefix = "images",
  ) {
    this.description = `OCI layout ${prefix}/ in ${archive.file}`;
    if (!archive.has(`${prefix}/oci-layout`))
      throw new WorkError(`${archive.file} holds no OCI image layout (no ${prefix}/oci-layout)`);
  }

  blobPath(digest: string): string {
    return `${this.prefix}/blobs/sha256/${digestHex(digest)}`;
  }

  readIndex(): Promise<IndexFile> {
    this.index ??= readMember(this.archive, `${this.prefix}/index.json`).then(
      (b) => JSON.parse(b.toString("utf8")) as IndexFile,
    );
    return this.index;
  }

  async openBlob(loc: ImageLocation, desc: Descriptor, offset = 0): Promise<Readable> {
    const p = this.blobPath(desc.digest);
    if (!this.archive.has(p))
      throw new WorkError(`blob ${desc.digest} of ${loc.name} is missing from ${this.archive.file}`);
    return Promise.resolve(this.archive.read(p, { start: offset }));
  }

  async headManifest(loc: ImageLocation): Promise<ManifestHead | undefined> {
    if (loc.reference.startsWith("sha256:")) {
      const m = this.archive.member(this.blobPath(loc.reference));
      return m ? { digest: loc.reference, mediaType: "", size: m.size } : undefined;
    }
    const entry = (await this.readIndex()).manifests.find((m) => m.annotations?.[REF_NAME] === loc.name);
    return entry && { digest: entry.digest, mediaType: sourceMediaType(entry), size: entry.size };
  }

  async getManifest(loc: ImageLocation): Promise<RawManifest> {
    const isDigest = loc.reference.startsWith("sha256:");
    const entry = isDigest
      ? undefined
      : (await this.readIndex()).manifests.find((m) => m.annotations?.[REF_NAME] === loc.name);
    const digest = isDigest ? loc.reference : entry?.digest;
    if (!digest) throw new WorkError(`${loc.name} is not in ${this.archive.file}`);
    const p = this.blobPath(digest);
    if (!this.archive.has(p))
      throw new WorkError(`manifest ${digest} of ${loc.name} is missing from ${this.archive.file}`);
    const bytes = await readMember(this.archive, p).catch((err: unknown) => {
      throw new WorkError(
        `manifest ${digest} of ${loc.name} in ${this.archive.file}: ${err instanceof Error ? err.message : String(err)}`,
      );
    });
    if (sha256Digest(bytes) !== digest)
      throw new WorkError(`manifest ${digest} of ${loc.name} in ${this.archive.file} is corrupt`);
    return { bytes, digest, mediaType: entry ? sourceMediaType(entry) : mediaTypeOf(bytes) };
  }
}

function sourceMediaType(entry: Descriptor): string {
  return entry.annotations?.[SOURCE_MEDIA_TYPE] ?? entry.mediaType;
}

function mediaTypeOf(bytes: Buffer): string {
  try {
    return (JSON.parse(bytes.toString("utf8")) as { mediaType?: string }).mediaType ?? "";
  } catch {
    return "";
  }
}
