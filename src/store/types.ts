/**
 * Stores that images are copied between: a registry, the bundle's OCI layout on disk, a Docker
 * daemon. Prepare and upload are the same copy in opposite directions, so every store speaks
 * these two small interfaces and one engine (src/copy/engine.ts) moves images between them.
 */
import type { Readable } from "node:stream";
import type { Descriptor, Origin, RawManifest } from "../oci/types.js";

/** Which image inside a store. */
export interface ImageLocation {
  /** Repository path in a registry (`library/redis`); an OCI layout ignores it for blobs. */
  repository: string;
  /** A tag or a `sha256:` digest. */
  reference: string;
  /** How errors and progress name the image: its full reference, e.g. `docker.io/library/redis:4.0`. */
  name: string;
}

/** An image's top manifest or index, or a platform's manifest inside an index. */
export type ManifestRole = "image" | "child";

import type { ManifestHead } from "../oci/types.js";
import type { BlobOpener } from "../registry/upload.js";

export type { ManifestHead };

export interface ImageSource {
  /** For messages: `registry 127.0.0.1:5000`, `OCI layout ./bundle-out/x/images`. */
  readonly description: string;
  /** The manifest or index a tag or digest names, byte for byte as the store holds it. */
  getManifest(loc: ImageLocation): Promise<RawManifest>;
  /** The digest a tag points at now, without fetching the body; undefined when absent. */
  headManifest(loc: ImageLocation): Promise<ManifestHead | undefined>;
  /** A blob's bytes from `offset` on, streamed (offset > 0 resumes a partial copy). */
  openBlob(loc: ImageLocation, desc: Descriptor, offset?: number): Promise<Readable>;
  /**
   * The file that holds the whole blob, when the store keeps blobs as files (a layout): an upload
   * reads it into buffers it reuses, where a stream allocates one per piece.
   */
  blobFile?(loc: ImageLocation, desc: Descriptor): Promise<string>;
  /**
   * Where a blob (a config) is held, for messages about what it says: a layout's file, whose
   * bad content is the input's fault. Without it, the store's description, and the work's fault.
   */
  blobOrigin?(digest: string): Origin;
  /**
   * What the OCI 1.1 referrers API lists for `subject` (a manifest's digest in `loc.repository`),
   * or undefined when the store has no such API: then the tag schema (`sha256-<hex>`) stands in.
   */
  listReferrers?(loc: ImageLocation, subject: string): Promise<Descriptor[] | undefined>;
  /** Every tag of `loc.repository` when the store can list them cheaply (one page); else undefined. */
  listTags?(loc: ImageLocation): Promise<Set<string> | undefined>;
}

/** What the caller of `putBlob` knows already, so that the target need not find it out again. */
export interface PutBlobOptions {
  /**
   * The caller asked `hasBlob` for this blob at this location and the answer was no: a target
   * for which asking costs a request (a registry) does not ask again before sending it.
   */
  checkedAbsent?: boolean;
}

/** Reads blob bytes from an offset; the engine hands a source's `openBlob` to a target this way. */
export type { BlobOpener };

export interface ImageTarget {
  readonly description: string;
  /**
   * Whether it may hold an index whose children it does not all hold. The bundle's layout may
   * (it keeps the source's index byte for byte and only the requested platforms); a registry
   * may not (it refuses such an index), so it receives an index of the platforms carried.
   */
  readonly acceptsPartialIndex: boolean;
  hasBlob(loc: ImageLocation, desc: Descriptor): Promise<boolean>;
  /**
   * Stores a blob read through `open`, checking its size and digest before anyone can see it.
   * `onBytes` reports progress as bytes arrive.
   */
  putBlob(
    loc: ImageLocation,
    desc: Descriptor,
    open: BlobOpener,
    onBytes?: (n: number) => void,
    opts?: PutBlobOptions,
  ): Promise<void>;
  hasManifest(loc: ImageLocation, digest: string): Promise<boolean>;
  /**
   * Stores a manifest under `loc.reference`: an image's top manifest under its tag (or digest),
   * a child of an index under its own digest.
   */
  putManifest(loc: ImageLocation, manifest: RawManifest, role: ManifestRole): Promise<void>;
  /**
   * Makes referrers just stored findable from their subject where the store has no referrers
   * API of its own: a registry without one gets the tag schema's `sha256-<hex>` index.
   */
  linkReferrers?(loc: ImageLocation, subject: string, referrers: Descriptor[]): Promise<void>;
}

/**
 * An optional ability of a target: being told which repositories already hold a blob (an
 * earlier upload's), so that a copy can mount it from there instead of sending it.
 */
export interface BlobHolders {
  addHolder(digest: string, repository: string): void;
}

export function knowsHolders<T extends object>(target: T): target is T & BlobHolders {
  return typeof (target as Partial<BlobHolders>).addHolder === "function";
}
