/**
 * The `images/` OCI layout inside a bundle archive (archive.ts), read in place: upload
 * pushes images straight out of the archive, each blob read from its offset, with no unpacking.
 * Same semantics as OciLayout as a source, `SOURCE_MEDIA_TYPE` annotation included.
 */
import type { Readable } from "node:stream";
import { readMember, type BundleArchive } from "./archive.js";
import { WorkError } from "../util/errors.js";
import { parseIndexFile } from "../oci/parse.js";
import { type Descriptor, type Origin, type RawManifest } from "../oci/types.js";
import {
  headLayoutManifest,
  readLayoutManifest,
  type IndexFile,
  type LayoutReader,
} from "../store/layout.js";
import type { ImageLocation, ImageSource, ManifestHead } from "../store/types.js";
import { blobRel } from "../util/cas.js";

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
    return `${this.prefix}/${blobRel(digest)}`;
  }

  readIndex(): Promise<IndexFile> {
    const file = `${this.prefix}/index.json`;
    this.index ??= readMember(this.archive, file).then((b) =>
      parseIndexFile(b, { where: `${file} in ${this.archive.file}`, bundleFile: true }),
    );
    return this.index;
  }

  async openBlob(loc: ImageLocation, desc: Descriptor, offset = 0): Promise<Readable> {
    const p = this.blobPath(desc.digest);
    if (!this.archive.has(p))
      throw new WorkError(`blob ${desc.digest} of ${loc.name} is missing from ${this.archive.file}`);
    return Promise.resolve(this.archive.read(p, { start: offset }));
  }

  /** Whether the archive holds the blob whole (its index gives the size; reading checks the bytes). */
  hasBlob(_loc: ImageLocation, desc: Descriptor): Promise<boolean> {
    const m = this.archive.member(this.blobPath(desc.digest));
    return Promise.resolve(m !== undefined && m.size === desc.size);
  }

  headManifest(loc: ImageLocation): Promise<ManifestHead | undefined> {
    return headLayoutManifest(loc, this.reader());
  }

  getManifest(loc: ImageLocation): Promise<RawManifest> {
    return readLayoutManifest(loc, this.reader());
  }

  blobOrigin(digest: string): Origin {
    return { where: `${this.blobPath(digest)} in ${this.archive.file}`, bundleFile: true };
  }

  private reader(): LayoutReader {
    return {
      where: this.archive.file,
      blobOrigin: (digest) => this.blobOrigin(digest),
      readIndex: () => this.readIndex(),
      blobSize: async (digest) => this.archive.member(this.blobPath(digest))?.size,
      readBlob: (digest) => readMember(this.archive, this.blobPath(digest)),
    };
  }
}
