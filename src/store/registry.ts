/**
 * A registry as an image store: the source of `prepare` and the target of `upload`. As a
 * target it sends no blob the registry already has: it mounts from a repository of the same
 * registry known to hold the blob, else checks (once: not again when the caller just did), and
 * only then uploads.
 */
import { Readable } from "node:stream";
import { digestHex, sha256Digest, type Descriptor, type RawManifest } from "../oci/types.js";
import { OCI_INDEX } from "../oci/mediaTypes.js";
import { parseManifest } from "../oci/parse.js";
import { referrersIndex, referrersTag } from "../oci/referrers.js";
import { NotFoundError, type RegistryClient } from "../registry/client.js";
import { WorkError } from "../util/errors.js";
import { checkedBytes } from "../util/streams.js";
import type {
  BlobHolders,
  BlobOpener,
  ImageLocation,
  ImageSource,
  ImageTarget,
  ManifestHead,
  ManifestRole,
  PutBlobOptions,
} from "./types.js";

export class RegistryStore implements ImageSource, ImageTarget, BlobHolders {
  readonly description: string;
  readonly acceptsPartialIndex = false;
  /** Repositories of this registry seen holding each blob: where a mount can come from. */
  private readonly holders = new Map<string, Set<string>>();
  /** The put of each blob under way: a second put of the same digest waits for it. */
  private readonly putting = new Map<string, Promise<void>>();

  /**
   * `verifyBlobs: false` skips hashing blobs read from this registry: right when the target
   * hashes them anyway (the bundle's layout does, and a registry checks on upload), since on
   * two cores a second sha256 pass costs as much as the copy.
   */
  constructor(
    readonly client: RegistryClient,
    private readonly opts: { verifyBlobs?: boolean } = {},
  ) {
    this.description = `registry ${client.host}`;
  }

  getManifest(loc: ImageLocation): Promise<RawManifest> {
    return this.client.getManifest(loc.repository, loc.reference, loc.name);
  }

  headManifest(loc: ImageLocation): Promise<ManifestHead | undefined> {
    return this.client.headManifest(loc.repository, loc.reference, loc.name);
  }

  /**
   * From offset 0 the stream is checked against the descriptor (unless `verifyBlobs` is off):
   * a bad byte is an error at its end.
   */
  async openBlob(loc: ImageLocation, desc: Descriptor, offset = 0): Promise<Readable> {
    const stream = await this.client.getBlob(loc.repository, desc.digest, offset, loc.name, desc.size);
    this.remember(desc.digest, loc.repository);
    if (offset > 0 || this.opts.verifyBlobs === false) return stream;
    return Readable.from(
      verified(stream, desc, `blob ${desc.digest} of ${loc.name} from ${this.description}`),
      {
        objectMode: false,
      },
    );
  }

  /**
   * Whether the repository holds the blob. One seen this run in another repository of the
   * registry is mounted instead of asked about: one request that answers and links at once
   * (images sharing base layers: 96 of an upload's 694 requests were such HEADs). A refused
   * mount falls back to the HEAD.
   */
  async hasBlob(loc: ImageLocation, desc: Descriptor): Promise<boolean> {
    if (this.holders.get(desc.digest)?.has(loc.repository)) return true;
    if (await this.mountFromKnown(loc, desc)) return true;
    const size = await this.client.headBlob(loc.repository, desc.digest);
    if (size === undefined) return false;
    this.remember(desc.digest, loc.repository);
    return true;
  }

  /**
   * One put per digest at a time: images (or the platforms of one image) copied at once often
   * share a layer, and without this each would send it whole. The later put waits, then finds
   * the blob there or mounts it from the repository that just received it.
   */
  async putBlob(
    loc: ImageLocation,
    desc: Descriptor,
    open: BlobOpener,
    onBytes?: (n: number) => void,
    opts: PutBlobOptions = {},
  ): Promise<void> {
    for (let earlier = this.putting.get(desc.digest); earlier; earlier = this.putting.get(desc.digest))
      await earlier.catch(() => undefined);
    // No await between the check above and this: two puts cannot both pass it.
    const put = this.putOnce(loc, desc, open, onBytes, opts.checkedAbsent === true);
    this.putting.set(desc.digest, put);
    try {
      await put;
    } finally {
      if (this.putting.get(desc.digest) === put) this.putting.delete(desc.digest);
    }
  }

  /**
   * What hasBlob asks (seen here, a mount, a `HEAD`), unless the caller has just asked
   * (`checkedAbsent`: each request costs the registry CPU time). An earlier put of the same blob
   * waited for since then does not change that answer: into this repository it shows in
   * `holders`, into another it makes a mount possible, so those two are tried again.
   */
  private async putOnce(
    loc: ImageLocation,
    desc: Descriptor,
    open: BlobOpener,
    onBytes: ((n: number) => void) | undefined,
    checkedAbsent: boolean,
  ): Promise<void> {
    const present = checkedAbsent
      ? this.holders.get(desc.digest)?.has(loc.repository) || (await this.mountFromKnown(loc, desc))
      : await this.hasBlob(loc, desc);
    if (present) return;
    await this.client.uploadBlob(loc.repository, desc, open, onBytes, loc.name);
    this.remember(desc.digest, loc.repository);
  }

  /**
   * Whether `digest` is there under `loc.reference`: by a tag, the tag must name it (a tag moved
   * elsewhere since is put back by the copy); by a digest, it must exist.
   */
  async hasManifest(loc: ImageLocation, digest: string): Promise<boolean> {
    const byTag = !loc.reference.startsWith("sha256:");
    const head = await this.client.headManifest(loc.repository, byTag ? loc.reference : digest, loc.name);
    return byTag ? head?.digest === digest : head !== undefined;
  }

  /** A registry stores every manifest the same way, so the role does not matter here. */
  putManifest(loc: ImageLocation, manifest: RawManifest, _role?: ManifestRole): Promise<void> {
    return this.client.putManifest(loc.repository, loc.reference, manifest, loc.name);
  }

  listTags(loc: ImageLocation): Promise<Set<string> | undefined> {
    return this.client.tagsIfFew(loc.repository, loc.name);
  }

  async listReferrers(loc: ImageLocation, subject: string): Promise<Descriptor[] | undefined> {
    const body = await this.client.referrers(loc.repository, subject, loc.name);
    if (!body) return undefined;
    const where = `referrers of ${subject} of ${loc.name} from ${this.description}`;
    return indexEntries(loc.name, { bytes: body, mediaType: OCI_INDEX, digest: sha256Digest(body) }, where);
  }

  /**
   * A registry with the referrers API indexes a manifest's `subject` itself. Without it, the
   * tag schema: the `sha256-<hex>` index gets the referrers it lacks, keeping those it has.
   */
  async linkReferrers(loc: ImageLocation, subject: string, referrers: Descriptor[]): Promise<void> {
    if (referrers.length === 0) return;
    if (await this.client.referrers(loc.repository, subject, loc.name)) return;
    const at = { ...loc, reference: referrersTag(subject) };
    const current = (await this.headManifest(at))
      ? await indexEntries(loc.name, await this.getManifest(at), `${this.description} ${at.reference}`)
      : [];
    const known = new Set(current.map((d) => d.digest));
    if (referrers.every((d) => known.has(d.digest))) return;
    await this.putManifest(at, referrersIndex([...current, ...referrers]));
  }

  /** Tells the store a repository holds `digest` (e.g. from an earlier upload), so it can mount from there. */
  addHolder(digest: string, repository: string): void {
    this.remember(digest, repository);
  }

  /** Repositories this store has seen holding `digest`. */
  knownHolders(digest: string): string[] {
    return [...(this.holders.get(digest) ?? [])];
  }

  private async mountFromKnown(loc: ImageLocation, desc: Descriptor): Promise<boolean> {
    for (const from of this.knownHolders(desc.digest)) {
      if (from === loc.repository) continue;
      // A mount only saves bytes: if the registry will not, uploading still works.
      const mounted = await this.client.mountBlob(loc.repository, desc.digest, from).catch(() => false);
      if (mounted) {
        this.remember(desc.digest, loc.repository);
        return true;
      }
    }
    return false;
  }

  private remember(digest: string, repository: string): void {
    let repos = this.holders.get(digest);
    if (!repos) this.holders.set(digest, (repos = new Set()));
    repos.add(repository);
  }
}

/** The descriptors of an index (a referrers list); anything but an index lists nothing. */
async function indexEntries(name: string, raw: RawManifest, where: string): Promise<Descriptor[]> {
  const doc = await parseManifest(name, { ...raw, origin: { where, bundleFile: false } });
  return "manifests" in doc ? doc.manifests : [];
}

/** Passes the bytes through and fails at the end unless they are exactly the descriptor's. */
function verified(source: Readable, desc: Descriptor, what: string): AsyncGenerator<Buffer> {
  return checkedBytes(
    source,
    { size: desc.size, sha256: digestHex(desc.digest) },
    {
      over: () => new WorkError(`${what}: more than the ${desc.size} bytes its descriptor says`),
      differ: (size, sha256) =>
        size !== desc.size
          ? new WorkError(`${what}: ${size} bytes, its descriptor says ${desc.size}`)
          : new WorkError(`${what} is corrupt: its bytes hash to sha256:${sha256}, not ${desc.digest}`),
    },
  );
}

/**
 * `--mirror SRC=URL`: images of a registry read from a mirror, falling back to the registry
 * itself when the mirror lacks the image. Blobs of an image come from where its manifest came
 * from, so an image is never assembled from two places unless the mirror lacks a blob.
 */
export class MirroredSource implements ImageSource {
  readonly description: string;
  /** Which store served each repository's manifest. */
  private readonly servedBy = new Map<string, ImageSource>();

  constructor(
    readonly mirror: ImageSource,
    readonly origin: ImageSource,
  ) {
    this.description = `${origin.description} (through mirror ${mirror.description})`;
  }

  async getManifest(loc: ImageLocation): Promise<RawManifest> {
    return this.firstThatHas(loc, (store) => store.getManifest(loc));
  }

  async headManifest(loc: ImageLocation): Promise<ManifestHead | undefined> {
    const preferred = this.servedBy.get(loc.repository);
    if (preferred) return preferred.headManifest(loc);
    const fromMirror = await this.mirror.headManifest(loc);
    if (fromMirror) return fromMirror;
    return this.origin.headManifest(loc);
  }

  async openBlob(loc: ImageLocation, desc: Descriptor, offset?: number): Promise<Readable> {
    const store = this.servedBy.get(loc.repository) ?? this.mirror;
    if (store === this.origin) return this.origin.openBlob(loc, desc, offset);
    try {
      return await store.openBlob(loc, desc, offset);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      return this.origin.openBlob(loc, desc, offset);
    }
  }

  /** Where the image's manifests came from lists its referrers. */
  async listReferrers(loc: ImageLocation, subject: string): Promise<Descriptor[] | undefined> {
    const store = this.servedBy.get(loc.repository) ?? this.mirror;
    return store.listReferrers?.(loc, subject);
  }

  /** The tags of the store that served the repository's manifests. */
  async listTags(loc: ImageLocation): Promise<Set<string> | undefined> {
    const store = this.servedBy.get(loc.repository) ?? this.mirror;
    return store.listTags?.(loc);
  }

  /** Which store served `repository`'s manifests, once one has. */
  sourceOf(repository: string): ImageSource | undefined {
    return this.servedBy.get(repository);
  }

  /**
   * The mirror first, unless the origin already served this repository. A digest the mirror
   * lacks (say, a child manifest a pull-through cache has not fetched yet) still comes from
   * the origin, but does not switch the repository over.
   */
  private async firstThatHas<T>(loc: ImageLocation, read: (store: ImageSource) => Promise<T>): Promise<T> {
    const preferred = this.servedBy.get(loc.repository);
    if (preferred === this.origin) return read(this.origin);
    try {
      const found = await read(this.mirror);
      if (!preferred) this.servedBy.set(loc.repository, this.mirror);
      return found;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    const found = await read(this.origin);
    if (!preferred) this.servedBy.set(loc.repository, this.origin);
    return found;
  }
}
