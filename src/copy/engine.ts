/**
 * The one copy engine. Prepare copies registry → OCI layout, upload copies OCI layout → registry,
 * load copies OCI layout → Docker daemon: the same walk over an image in every case.
 *
 * Order is what makes a killed run safe to run again: blobs first, then each platform's
 * manifest, then the image's top manifest. So a manifest present in a target means its blobs
 * are there too, and a rerun skips whole platforms by asking one question (at a registry, the
 * whole image, by asking about its index under the tag). Referrers (signatures, SBOMs,
 * attestations) come after the image they are about, each in the same order.
 */
import type { LimitFunction } from "p-limit";
import { InputError, StoppedError, WorkError } from "../util/errors.js";
import { parseConfig, parseManifest } from "../oci/parse.js";
import { formatPlatform, platformMatches, sha256Digest } from "../oci/types.js";
import type { Descriptor, ImageIndex, ImageManifest, Platform, RawManifest } from "../oci/types.js";
import type { BlobOpener, ImageLocation, ImageSource, ImageTarget } from "../store/types.js";
import { reducedIndex, selectPlatforms } from "./platforms.js";
import { readAll } from "../util/streams.js";
import { referrerDescriptor } from "../oci/referrers.js";
import { findReferrers, type ReferrerRef } from "./referrers.js";

export type { ReferrerRef };

export interface CopyRequest {
  source: ImageSource;
  target: ImageTarget;
  from: ImageLocation;
  to: ImageLocation;
  /** Wanted platforms, e.g. `linux/amd64`. */
  platforms: string[];
  allowMissingPlatforms: boolean;
  /**
   * The target read as a source (an OCI layout is both): manifests it already holds are read
   * from it instead of being fetched again, so a rerun moves no bytes.
   */
  targetReader?: ImageSource;
  /**
   * Artifacts about the image (signatures, SBOMs, attestations): "discover" finds them at the
   * source (prepare), a list copies exactly those (upload). Absent: none are copied.
   */
  referrers?: "discover" | ReferrerRef[];
  /**
   * The image is at the target already (an update bundle left it out, the site holds it): only
   * the listed referrers are copied, and the result says nothing of the image.
   */
  imageAtTarget?: boolean;
}

export interface CopiedPlatform {
  platform: string;
  digest: string;
  mediaType: string;
  size: number;
}

export interface CopiedImage {
  /** The top manifest as the source holds it. */
  digest: string;
  mediaType: string;
  size: number;
  /** What the target's reference names now: the source digest, or a reduced index's. */
  targetDigest: string;
  /** What a registry's tag names after upload: the source digest, or the reduced index's when platforms stay behind. */
  mirrorDigest: string;
  platforms: CopiedPlatform[];
  missingPlatforms: string[];
  /** Every config and layer blob the image carries, each once. */
  blobs: Descriptor[];
  /** Blob bytes that had to move; 0 on a rerun. */
  bytesMoved: number;
  /** The referrers copied (none unless asked for). */
  referrers: CopiedReferrer[];
  /** Referrers listed at the source that are no manifest and were left behind. */
  skippedReferrers: Descriptor[];
}

/** A referrer as copied: its descriptor (as a referrers list has it) and all it holds. */
export interface CopiedReferrer extends ReferrerRef {
  descriptor: Descriptor;
  /** The manifests of an artifact that is an index. */
  manifests: { digest: string; mediaType: string; size: number }[];
  /** Config and layer blobs, each once. */
  blobs: Descriptor[];
}

export interface CopyEvents {
  /**
   * Blob bytes an image still has to move (sent as each platform is planned); negative for
   * planned bytes that turned out not to be needed, once their blob is stored.
   */
  onPlanned?(image: string, bytes: number): void;
  /** Bytes of a blob stored, each counted once: a successful copy's sum equals what was planned. */
  onBytes?(image: string, n: number): void;
}

export interface EngineOptions {
  /** Shared by all images, so the number of blobs in flight is bounded overall. */
  blobLimit: LimitFunction;
  events?: CopyEvents;
  /** Once aborted (an earlier image failed), no new blob starts. */
  signal?: AbortSignal;
}

/** Manifests and configs are small (4 MiB, the registries' own cap); anything larger is not what it claims to be. */
const MAX_SMALL_BLOB = 4 * 1024 * 1024;

export class CopyEngine {
  constructor(private readonly opts: EngineOptions) {}

  async copy(req: CopyRequest): Promise<CopiedImage> {
    const acc: Acc = { moved: 0, present: new Map() };
    const image = req.imageAtTarget ? NOTHING_COPIED : await this.copyImage(req, acc);
    if (!req.referrers) return image;
    return { ...image, ...(await this.copyReferrers(req, image, acc)), bytesMoved: acc.moved };
  }

  /** After the image (a killed run leaves it whole): what refers to it or to its platforms. */
  private async copyReferrers(req: CopyRequest, image: CopiedImage, acc: Acc) {
    const subjects = [image.digest, ...image.platforms.map((p) => p.digest)].filter((d) => d !== "");
    const { found, skipped } =
      req.referrers === "discover"
        ? await findReferrers(req.source, req.from, subjects)
        : { found: req.referrers ?? [], skipped: [] };
    const referrers: CopiedReferrer[] = [];
    // One at a time: they are few and small, and their blobs still go through the blob limit.
    for (const ref of found) referrers.push(await this.copyReferrer(req, ref, acc));
    await this.linkReferrers(req, referrers);
    return { referrers, skippedReferrers: skipped };
  }

  private async copyImage(req: CopyRequest, acc: Acc): Promise<CopiedImage> {
    const top = await this.topManifest(req);
    const parsed = await parseManifest(req.from.name, top);
    return "manifests" in parsed
      ? this.copyIndex(req, top, parsed, acc)
      : this.copySingle(req, top, parsed, acc);
  }

  private async copyReferrer(req: CopyRequest, ref: ReferrerRef, acc: Acc): Promise<CopiedReferrer> {
    const art = await this.copyArtifact(req, ref.digest, ref.tag ?? ref.digest, acc, false);
    return {
      ...ref,
      descriptor: referrerDescriptor(art.raw, art.doc),
      manifests: art.manifests,
      blobs: uniqueByDigest(art.blobs),
    };
  }

  /** Referrers found by their subject (not by cosign's tags) made findable so at the target. */
  private async linkReferrers(req: CopyRequest, referrers: CopiedReferrer[]): Promise<void> {
    if (!req.target.linkReferrers) return;
    const bySubject = new Map<string, Descriptor[]>();
    for (const r of referrers.filter((x) => x.tag === undefined))
      bySubject.set(r.subject, [...(bySubject.get(r.subject) ?? []), r.descriptor]);
    for (const [subject, descriptors] of bySubject)
      await req.target.linkReferrers(req.to, subject, descriptors);
  }

  /**
   * An artifact's manifest (or index, and then its manifests) with its blobs, blobs first as for
   * images. A tag (cosign's) is put even when the manifest is there, since the tag may not be.
   */
  private async copyArtifact(
    req: CopyRequest,
    digest: string,
    reference: string,
    acc: Acc,
    inIndex: boolean,
  ): Promise<{ raw: RawManifest; doc: ImageIndex | ImageManifest } & ArtifactParts> {
    const byDigest = { ...req.to, reference: digest };
    const present = await req.target.hasManifest(byDigest, digest);
    const raw =
      present && req.targetReader
        ? await req.targetReader.getManifest(byDigest)
        : await req.source.getManifest({ ...req.from, reference: digest });
    if (raw.digest !== digest)
      throw new WorkError(`referrer of ${req.from.name}: expected ${digest}, got ${raw.digest}`);
    const doc = await parseManifest(req.from.name, raw);
    const parts: ArtifactParts = { manifests: [], blobs: [] };
    if ("manifests" in doc) {
      if (inIndex) throw new WorkError(`${req.from.name}: referrer ${digest} is an index inside an index`);
      for (const child of doc.manifests) {
        const c = await this.copyArtifact(req, child.digest, child.digest, acc, true);
        parts.manifests.push({ digest: child.digest, mediaType: c.raw.mediaType, size: c.raw.bytes.length });
        parts.blobs.push(...c.blobs);
      }
    } else {
      parts.blobs.push(doc.config, ...doc.layers);
      if (!present) await this.copyBlobs(req, parts.blobs, acc);
    }
    if (!present || !reference.startsWith("sha256:"))
      await req.target.putManifest({ ...req.to, reference }, raw, "child");
    return { raw, doc, ...parts };
  }

  private async copyIndex(
    req: CopyRequest,
    top: RawManifest,
    index: ImageIndex,
    acc: Acc,
  ): Promise<CopiedImage> {
    const { chosen, missing } = selectPlatforms(
      req.from.name,
      index,
      req.platforms,
      req.allowMissingPlatforms,
    );
    const forRegistry = reducedIndex(top, index, chosen);
    const stored = req.target.acceptsPartialIndex ? top : forRegistry;
    // A registry's index names exactly the platforms carried (its digest says which) and goes in
    // after them: held under the tag, it answers for all of them in one question, and not held,
    // each platform's blobs are asked about anyway. A layout keeps the source's whole index even
    // for fewer platforms, so there each platform is asked about.
    const held = req.target.acceptsPartialIndex
      ? undefined
      : await req.target.hasManifest(req.to, stored.digest);
    let childStored = false;
    const blobLists: Descriptor[][] = [];
    const platforms = await Promise.all(
      chosen.map(async (child, i) => {
        const copied = await this.copyManifest(req, child.digest, "child", acc, { present: held });
        childStored ||= copied.stored;
        // In the index's order, not as copies finish: a rerun must write the same lock.
        blobLists[i] = copied.blobs;
        return {
          platform: formatPlatform(child.platform as Platform),
          digest: child.digest,
          mediaType: copied.raw.mediaType,
          size: copied.raw.bytes.length,
        };
      }),
    );
    // The index always goes in after its children: a child stored just now means it is not there.
    const putIndex =
      held === undefined ? childStored || !(await req.target.hasManifest(req.to, stored.digest)) : !held;
    if (putIndex) await req.target.putManifest(req.to, stored, "image");
    return {
      ...result(top, stored, platforms, missing, blobLists.flat(), acc),
      mirrorDigest: forRegistry.digest,
    };
  }

  private async copySingle(
    req: CopyRequest,
    top: RawManifest,
    manifest: ImageManifest,
    acc: Acc,
  ): Promise<CopiedImage> {
    const platform = await this.configPlatform(req, manifest);
    const missing = req.platforms.filter((w) => !platform || !platformMatches(w, platform));
    const offered = platform ? formatPlatform(platform) : "unknown";
    if (missing.length > 0 && !req.allowMissingPlatforms) {
      throw new InputError(
        `${req.from.name} has no ${missing.join(", ")} image; it is a single-platform image for ${offered}. ` +
          `Request only that platform, or allow missing ones for this image (allowMissingPlatforms: true)`,
      );
    }
    const { blobs } = await this.copyManifest(req, top.digest, "image", acc, { known: top });
    return result(
      top,
      top,
      [{ platform: offered, digest: top.digest, mediaType: top.mediaType, size: top.bytes.length }],
      missing,
      blobs,
      acc,
    );
  }

  /** The top manifest: from the target when it already holds what the source's tag names. */
  private async topManifest(req: CopyRequest): Promise<RawManifest> {
    const head = await req.source.headManifest(req.from);
    if (
      head &&
      req.targetReader &&
      (await req.target.hasManifest({ ...req.to, reference: head.digest }, head.digest))
    ) {
      return req.targetReader.getManifest({ ...req.to, reference: head.digest });
    }
    return req.source.getManifest(req.from);
  }

  /**
   * One image manifest and its blobs. A target that already holds the manifest holds its blobs
   * (they are always stored first), so only the manifest is read, to list them. `present` is
   * the answer when the caller knows it (from the index), else the target is asked.
   */
  private async copyManifest(
    req: CopyRequest,
    digest: string,
    role: "child" | "image",
    acc: Acc,
    given: { known?: RawManifest; present?: boolean | undefined } = {},
  ) {
    const at = { ...req.to, reference: role === "child" ? digest : req.to.reference };
    const present = given.present ?? (await req.target.hasManifest(at, digest));
    const raw =
      given.known ??
      (present && req.targetReader
        ? await req.targetReader.getManifest({ ...req.to, reference: digest })
        : await req.source.getManifest({ ...req.from, reference: digest }));
    if (raw.digest !== digest) {
      throw new WorkError(`manifest of ${req.from.name}: expected ${digest}, got ${raw.digest}`);
    }
    const manifest = await parseManifest(req.from.name, raw);
    if ("manifests" in manifest)
      throw new WorkError(`${req.from.name}: an index inside an index (${digest}) is not supported`);
    const blobs = [manifest.config, ...manifest.layers];
    if (!present) {
      await this.copyBlobs(req, blobs, acc);
      await req.target.putManifest(at, raw, role);
    }
    return { raw, blobs, stored: !present };
  }

  private async copyBlobs(req: CopyRequest, blobs: Descriptor[], acc: Acc): Promise<void> {
    // Foreign layers (with `urls`) are not distributable: registries serve them from elsewhere.
    const wanted = uniqueByDigest(blobs.filter((b) => !b.urls?.length));
    // Platforms of an image often share blobs: the target is asked about each blob once.
    const present = await Promise.all(
      wanted.map((b) => {
        let answer = acc.present.get(b.digest);
        if (!answer) acc.present.set(b.digest, (answer = req.target.hasBlob(req.to, b)));
        return answer;
      }),
    );
    const missing = wanted.filter((_, i) => !present[i]);
    this.opts.events?.onPlanned?.(
      req.from.name,
      missing.reduce((n, b) => n + b.size, 0),
    );
    await Promise.all(missing.map((b) => this.opts.blobLimit(() => this.copyBlob(req, b, acc))));
  }

  private async copyBlob(req: CopyRequest, blob: Descriptor, acc: Acc): Promise<void> {
    if (this.opts.signal?.aborted)
      throw new StoppedError(`${req.from.name}: stopped after an earlier failure`);
    const name = req.from.name;
    const events = this.opts.events;
    // Progress counts each byte of the blob once however often it is sent (retries, a resume
    // started over), so an image's progress ends at what was planned for it.
    let counted = 0;
    const onBytes = (n: number) => {
      acc.moved += n;
      const step = Math.min(n, blob.size - counted);
      if (step <= 0) return;
      counted += step;
      events?.onBytes?.(name, step);
    };
    const open = opener(req.source, req.from, blob);
    // copyBlobs asked the target just now. The stores' reader and writer retry their own
    // transfers (util/retry.ts says who retries what): what fails here is final.
    await req.target.putBlob(req.to, blob, open, onBytes, { checkedAbsent: true });
    // Bytes planned that did not have to move: the target had them by then (another image's
    // put of the same blob, a mount, a partial file from a killed run).
    if (counted < blob.size) events?.onPlanned?.(name, counted - blob.size);
  }

  /** A single-platform image's platform, read from its config blob. */
  private async configPlatform(req: CopyRequest, manifest: ImageManifest): Promise<Platform | undefined> {
    const cfg = manifest.config;
    if (cfg.size > MAX_SMALL_BLOB)
      throw new WorkError(`${req.from.name}: config blob ${cfg.digest} is ${cfg.size} bytes`);
    const fromTarget = req.targetReader && (await req.target.hasBlob(req.to, cfg));
    const reader = fromTarget && req.targetReader ? req.targetReader : req.source;
    const loc = fromTarget ? req.to : req.from;
    const bytes = await readAll(await reader.openBlob(loc, cfg), MAX_SMALL_BLOB);
    if (sha256Digest(bytes) !== cfg.digest)
      throw new WorkError(`${req.from.name}: config blob ${cfg.digest} is corrupt`);
    const origin = reader.blobOrigin?.(cfg.digest) ?? {
      where: `config blob ${cfg.digest} of ${req.from.name} from ${reader.description}`,
      bundleFile: false,
    };
    const config = await parseConfig(bytes, origin);
    if (!config.os || !config.architecture) return undefined;
    return {
      os: config.os,
      architecture: config.architecture,
      ...(config.variant ? { variant: config.variant } : {}),
    };
  }
}

/** What copying an image that is at the target already yields: nothing of it (its referrers aside). */
const NOTHING_COPIED: CopiedImage = {
  digest: "",
  mediaType: "",
  size: 0,
  targetDigest: "",
  mirrorDigest: "",
  platforms: [],
  missingPlatforms: [],
  blobs: [],
  bytesMoved: 0,
  referrers: [],
  skippedReferrers: [],
};

interface ArtifactParts {
  manifests: { digest: string; mediaType: string; size: number }[];
  blobs: Descriptor[];
}

interface Acc {
  moved: number;
  /** The target's answer to `hasBlob` for each blob of the image, asked once. */
  present: Map<string, Promise<boolean>>;
}

function result(
  top: RawManifest,
  stored: RawManifest,
  platforms: CopiedPlatform[],
  missing: string[],
  blobs: Descriptor[],
  acc: Acc,
): CopiedImage {
  return {
    mirrorDigest: stored.digest,
    digest: top.digest,
    mediaType: top.mediaType,
    size: top.bytes.length,
    targetDigest: stored.digest,
    platforms,
    missingPlatforms: missing,
    blobs: uniqueByDigest(blobs),
    bytesMoved: acc.moved,
    referrers: [],
    skippedReferrers: [],
  };
}

/** Each digest once, where it first appears. */
function uniqueByDigest(blobs: Descriptor[]): Descriptor[] {
  return [...new Map(blobs.map((b) => [b.digest, b])).values()];
}

/** The source's `openBlob` for one blob, with the file that holds it when the source has one. */
function opener(source: ImageSource, loc: ImageLocation, blob: Descriptor): BlobOpener {
  const open = (offset: number) => source.openBlob(loc, blob, offset);
  const blobFile = source.blobFile?.bind(source);
  return blobFile ? Object.assign(open, { file: () => blobFile(loc, blob) }) : open;
}
