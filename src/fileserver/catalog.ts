/**
 * What `bundle serve --registry-port` serves: the images of one or more bundles (folders or
 * archives, read in place) under the mirror names upload pushes them to, so that a site with
 * no registry pulls what `deploy --registry` proves. Built once from the locks; every answer is
 * a map lookup by repository, tag or digest, so a request's path never reaches the filesystem:
 * a blob is read only through `blobMember` of a digest the lock lists for that repository.
 * Charts are served as upload pushes them: Helm OCI artifacts under `<prefix>/charts/<name>`.
 */
import type { Readable } from "node:stream";
import type { BundleContents } from "../bundle/contents.js";
import { referrerItems, type LockImage } from "../bundle/lock.js";
import { parseMirror } from "../config/mirror.js";
import { reducedIndex } from "../copy/platforms.js";
import { digestHex, type Descriptor, type ImageIndex, type RawManifest } from "../oci/types.js";
import { ChartArtifact } from "../charts/artifact.js";

/** Where the bundle keeps a blob or manifest of its `images/` layout. */
function blobMember(digest: string): string {
  return `images/blobs/sha256/${digestHex(digest)}`;
}

interface Repository {
  tags: Map<string, string>;
  /** Manifests and blobs this repository may serve. */
  manifests: Set<string>;
  blobs: Set<string>;
  /** What the referrers API lists for each subject: the carried referrers found by it. */
  referrers: Map<string, Map<string, Descriptor>>;
}

/** A manifest as served: the stored bytes (or the reduced index upload would push) and their type. */
export interface ServedManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface ServedBlob {
  digest: string;
  size: number;
  /** Bytes `start`…`end` (inclusive), or the whole blob, checked, when no range is asked. */
  open(range?: { start: number; end: number }): Readable;
}

export class RegistryCatalog {
  private readonly repos = new Map<string, Repository>();
  /** Media types the locks record, by digest: what `Content-Type` says. */
  private readonly mediaTypes = new Map<string, string>();
  /** Indexes reduced to the carried platforms, as upload pushes them (small, kept in memory). */
  private readonly reduced = new Map<string, RawManifest>();
  /** Charts' config and layer blobs, by digest: the artifact that holds each. */
  private readonly chartBlobs = new Map<string, { artifact: ChartArtifact; size: number }>();

  /** `bundles` in the order given: a later one (an update) wins a tag both name. */
  private constructor(private readonly bundles: BundleContents[]) {}

  static async open(bundles: BundleContents[], warn: (line: string) => void): Promise<RegistryCatalog> {
    const catalog = new RegistryCatalog(bundles);
    for (const bundle of bundles) for (const img of bundle.lock.images) await catalog.add(bundle, img, warn);
    for (const bundle of bundles) await catalog.addCharts(bundle);
    await catalog.checkTagged(warn);
    return catalog;
  }

  private async add(bundle: BundleContents, img: LockImage, warn: (line: string) => void) {
    const mirror = parseMirror(img.mirror);
    const repo = this.repo(mirror.repository);
    const children = img.platforms.map((p) => p.digest);
    for (const digest of [img.digest, img.mirrorDigest, ...children]) repo.manifests.add(digest);
    for (const b of img.blobs) repo.blobs.add(b.digest);
    this.mediaTypes.set(img.digest, img.mediaType);
    for (const p of img.platforms) this.mediaTypes.set(p.digest, p.mediaType);
    this.addReferrers(repo, img);
    if (img.mirrorDigest !== img.digest && !this.reduced.has(img.mirrorDigest))
      await this.addReduced(bundle, img, warn);
    if (!mirror.tag) return;
    const before = repo.tags.get(mirror.tag);
    if (before && before !== img.mirrorDigest)
      warn(`${img.mirror}: ${bundle.where} names ${img.mirrorDigest}, over ${before} of an earlier bundle`);
    repo.tags.set(mirror.tag, img.mirrorDigest);
  }

  /** Each chart with an archive and a mirror name, as the Helm OCI artifact upload pushes. */
  private async addCharts(bundle: BundleContents) {
    for (const chart of bundle.lock.charts) {
      const { archive, mirror } = chart;
      if (!archive || !mirror) continue;
      // Opening reads the archive once, checked against the lock: a changed one stops serve.
      const artifact = await ChartArtifact.open(bundle, { ...chart, archive });
      const { repository, tag } = parseMirror(mirror);
      const repo = this.repo(repository);
      const m = artifact.manifest;
      repo.manifests.add(m.digest);
      this.reduced.set(m.digest, m);
      if (tag) repo.tags.set(tag, m.digest);
      for (const d of artifact.blobs()) {
        repo.blobs.add(d.digest);
        this.chartBlobs.set(d.digest, { artifact, size: d.size });
      }
    }
  }

  /** Referrers as upload pushes them: by digest, cosign's under their tags, the others listed by subject. */
  private addReferrers(repo: Repository, img: LockImage) {
    for (const item of referrerItems(img)) (item.manifest ? repo.manifests : repo.blobs).add(item.digest);
    for (const r of img.referrers ?? []) {
      this.mediaTypes.set(r.digest, r.mediaType);
      for (const m of r.manifests ?? []) this.mediaTypes.set(m.digest, m.mediaType);
      if (r.tag) {
        repo.tags.set(r.tag, r.digest);
        continue;
      }
      let listed = repo.referrers.get(r.subject);
      if (!listed) repo.referrers.set(r.subject, (listed = new Map()));
      listed.set(r.digest, {
        mediaType: r.mediaType,
        digest: r.digest,
        size: r.size,
        ...(r.artifactType ? { artifactType: r.artifactType } : {}),
        ...(r.annotations ? { annotations: r.annotations } : {}),
      });
    }
  }

  /**
   * The index of the platforms carried, rebuilt from the stored index exactly as upload builds
   * it (a pure function of it), so the tag names the digest the lock records for the mirror.
   */
  private async addReduced(bundle: BundleContents, img: LockImage, warn: (line: string) => void) {
    const source = await this.storedManifest(img.digest);
    if (!source) return; // An update bundle without its base: checkTagged names it.
    const index = JSON.parse(source.bytes.toString("utf8")) as ImageIndex;
    const keep = new Set(img.platforms.map((p) => p.digest));
    const reduced = reducedIndex(
      source,
      index,
      index.manifests.filter((d) => keep.has(d.digest)),
    );
    if (reduced.digest === img.mirrorDigest) this.reduced.set(reduced.digest, reduced);
    else
      warn(
        `${img.mirror}: the lock's mirror digest ${img.mirrorDigest} does not match its index in ${bundle.where}`,
      );
  }

  /** Tags whose manifest no bundle holds (an update bundle served without its base). */
  private async checkTagged(warn: (line: string) => void) {
    for (const [name, repo] of this.repos)
      for (const [tag, digest] of repo.tags)
        if (!this.reduced.has(digest) && (await this.holder(digest)) === undefined)
          warn(`${name}:${tag}: no bundle given holds its manifest ${digest}; serve its base bundle too`);
  }

  private repo(name: string): Repository {
    let repo = this.repos.get(name);
    if (!repo)
      this.repos.set(
        name,
        (repo = { tags: new Map(), manifests: new Set(), blobs: new Set(), referrers: new Map() }),
      );
    return repo;
  }

  /** Repository names, sorted as `_catalog` lists them. */
  repositories(): string[] {
    return [...this.repos.keys()].sort();
  }

  /** A repository's tags, sorted; undefined when it is not served. */
  tags(name: string): string[] | undefined {
    const repo = this.repos.get(name);
    return repo && [...repo.tags.keys()].sort();
  }

  has(name: string): boolean {
    return this.repos.has(name);
  }

  /** The referrers of `subject` in `name`, as the referrers API lists them (by digest, of one artifactType if given). */
  referrers(name: string, subject: string, artifactType?: string): Descriptor[] {
    const listed = [...(this.repos.get(name)?.referrers.get(subject)?.values() ?? [])];
    return artifactType === undefined ? listed : listed.filter((d) => d.artifactType === artifactType);
  }

  /** The manifest a tag or digest names in `name`; undefined when not served there. */
  async manifest(name: string, reference: string): Promise<ServedManifest | undefined> {
    const repo = this.repos.get(name);
    const digest = reference.startsWith("sha256:") ? reference : repo?.tags.get(reference);
    if (!repo || !digest || !repo.manifests.has(digest)) return undefined;
    const raw = this.reduced.get(digest) ?? (await this.storedManifest(digest));
    return raw && { digest, bytes: raw.bytes, mediaType: this.mediaTypes.get(digest) ?? raw.mediaType };
  }

  /** A config or layer (or a manifest, as registries also serve them) of `name`. */
  async blob(name: string, digest: string): Promise<ServedBlob | undefined> {
    const repo = this.repos.get(name);
    if (!repo || !(repo.blobs.has(digest) || repo.manifests.has(digest))) return undefined;
    const chart = this.chartBlobs.get(digest);
    if (chart) return { digest, size: chart.size, open: (range) => chart.artifact.openRange(digest, range) };
    const found = await this.holder(digest);
    if (!found) return undefined;
    const rel = blobMember(digest);
    return {
      digest,
      size: found.size,
      open: (range) => found.bundle.open(rel, range ?? {}),
    };
  }

  /** The last bundle (updates come after their base) whose layout holds the blob. */
  private async holder(digest: string): Promise<{ bundle: BundleContents; size: number } | undefined> {
    for (const bundle of [...this.bundles].reverse()) {
      const info = await bundle.stat(blobMember(digest));
      if (info) return { bundle, size: info.size };
    }
    return undefined;
  }

  /** A manifest's stored bytes, checked against its digest by the layout (which fails when they differ). */
  private async storedManifest(digest: string): Promise<RawManifest | undefined> {
    const found = await this.holder(digest);
    if (!found) return undefined;
    const layout = await found.bundle.images();
    return layout.getManifest({ repository: "", reference: digest, name: digest });
  }
}
