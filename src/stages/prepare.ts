/**
 * `bundle prepare`: everything a site needs, fetched once on a connected machine and written
 * as one bundle (SPEC.md "The prepared bundle"). Incremental and resumable: the OCI layout
 * keeps what earlier runs fetched, so a rerun asks the registries only what their tags name now.
 */
import path from "node:path";
import { mkdir } from "node:fs/promises";
import { missingValues, siteValuesUsed } from "../config/load.js";
import type { Definition, ImageItem } from "../config/model.js";
import { DefinitionError, formatDiagnostic, formatPos, InputError } from "../util/errors.js";
import { NotFoundError } from "../registry/errors.js";
import type { RegistryClient } from "../registry/client.js";
import type { CredentialSource } from "../registry/credentials.js";
import { OciLayout } from "../store/layout.js";
import type { ImageSource, ImageTarget } from "../store/types.js";
import {
  LOCK_VERSION,
  readLock,
  referrerItems,
  writeLock,
  type Lock,
  type LockImage,
} from "../bundle/lock.js";
import { prepareFiles, type CarriedTool, type GitOps } from "./files.js";
import type { DownloadLimits } from "../files/download.js";
import type { Reporter } from "../util/reporter.js";
import { lockImage, sourceLocation, transferImages, type TransferLimits } from "./transfer.js";
import { VERSION } from "../version.js";
import { verifyCosignAll, type CosignVerified } from "../signatures/cosign.js";
import type { VerifyKey } from "../signatures/keys.js";
import { formatImageRef } from "../config/imageRef.js";

export interface PrepareOptions {
  def: Definition;
  /** Default `./bundle-out/<name>`. */
  output?: string;
  continueOnError: boolean;
  /** Where each image is read from: a registry (through mirrors) or the local Docker daemon. */
  openSource: (img: ImageItem) => ImageSource;
  git: GitOps;
  /** The tool itself, self-contained, to carry under files/ (`--with-tool`). */
  tools?: CarriedTool[];
  /** Clones kept between runs. */
  gitCacheDir: string;
  out: Reporter;
  limits?: TransferLimits;
  /** Sizes and timeouts of files: downloads. */
  downloads?: DownloadLimits;
  /**
   * Layer digests the site already holds (`--since OLD`): not downloaded, since the update
   * bundle leaves them out anyway.
   */
  siteLayers?: ReadonlySet<string>;
  /** `--verify-key`: carry only images with a cosign signature by one of these keys. */
  verifyKeys?: VerifyKey[];
  /** A client for the OCI registry a chart comes from (`oci://host/…`), with the credentials images use. */
  chartRegistry?: (host: string) => RegistryClient;
  /** The `--mirror` of an OCI chart's registry, asked first, as for images. */
  chartMirror?: (host: string) => RegistryClient | undefined;
  /** Credentials by host, as images find theirs, for Helm repositories that ask for a password. */
  chartCredentials?: CredentialSource;
  /** Leave signatures, SBOMs and attestations behind (`--no-referrers`); default: carry them. */
  noReferrers?: boolean;
}

export interface PrepareResult {
  dir: string;
  lock: Lock;
  bytesMoved: number;
}

export async function prepare(opts: PrepareOptions): Promise<PrepareResult> {
  const def = opts.def;
  const missing = missingValues(def);
  if (missing.length > 0) throw new DefinitionError(missing);
  if (def.charts.some((c) => c.source.kind === "local")) {
    const { localChartProblems } = await import("./lint.js");
    const problems = await localChartProblems(def);
    if (problems.length > 0) throw new DefinitionError(problems);
  }
  // Before anything is written: an image refused leaves no trace in the bundle.
  const signed = opts.verifyKeys ? await verifySignatures(def, opts, opts.verifyKeys) : undefined;
  const dir = path.resolve(opts.output ?? path.join("bundle-out", def.name));
  await mkdir(dir, { recursive: true });
  opts.out.info(`preparing bundle "${def.name}" in ${dir}`);
  // The settings known to break OpenWhisk: deploy refuses them; prepare says so before the long work.
  // Only releases have them (lint.js brings the chart rules and Handlebars).
  if (def.releases.length > 0) {
    const { lintOpenWhiskReleases } = await import("./lint.js");
    for (const d of await lintOpenWhiskReleases(def)) {
      opts.out.warn(
        `${formatDiagnostic(d)} (deploy will refuse this unless given --skip-lint ${d.rule ?? "RULE"})`,
      );
    }
  }

  const previous = await readLock(dir).catch(() => undefined);
  const { images, bytesMoved } = await prepareImages(def, dir, opts, signed);
  const files = await prepareFiles(def, dir, {
    out: opts.out,
    git: opts.git,
    cacheDir: opts.gitCacheDir,
    ...(opts.downloads ? { downloads: opts.downloads } : {}),
    ...(opts.tools ? { tools: opts.tools } : {}),
    ...(previous ? { previous } : {}),
    ...(opts.chartRegistry ? { chartRegistry: opts.chartRegistry } : {}),
    ...(opts.chartCredentials ? { chartCredentials: opts.chartCredentials } : {}),
    ...(opts.chartMirror ? { chartMirror: opts.chartMirror } : {}),
  });
  const lock: Lock = {
    lockVersion: LOCK_VERSION,
    name: def.name,
    tool: { name: "bundle", version: VERSION },
    platforms: def.platforms,
    images,
    ...files,
    releases: def.releases.map((r) => ({
      name: r.name,
      chart: r.chart,
      namespace: r.namespace,
      valuesFiles: r.valuesFiles,
    })),
    siteValues: siteValuesUsed(def),
  };
  await writeLock(dir, lock);
  return { dir, lock, bytesMoved };
}

async function prepareImages(def: Definition, dir: string, opts: PrepareOptions, signed?: Signed[]) {
  const layout = await OciLayout.open(path.join(dir, "images"), { create: true });
  const target = opts.siteLayers ? skippingLayers(layout, opts.siteLayers) : layout;
  const copied = await transferImages(
    opts.out,
    "images",
    def.images.map((img, i) => ({
      title: sourceLocation(img.ref).name,
      request: () => ({
        source: opts.openSource(img),
        target,
        targetReader: layout,
        // A verified image is copied by the digest whose signature was checked: a tag moved
        // since cannot bring in an unsigned image.
        from: { ...sourceLocation(img.ref), ...(signed ? { reference: signed[i]!.digest } : {}) },
        to: sourceLocation(img.ref),
        platforms: img.platforms,
        allowMissingPlatforms: img.allowMissingPlatforms,
        // A daemon's images have no registry to ask for what refers to them.
        ...(withReferrers(img, opts) ? { referrers: "discover" as const } : {}),
      }),
      // An image or tag the registry does not have: the definition names something that isn't there.
      mapError: (err) =>
        err instanceof NotFoundError && err.kind !== "BLOB_UNKNOWN"
          ? new InputError(`${err.message} (${formatPos(img.at)})`)
          : err,
    })),
    { continueOnError: opts.continueOnError, ...(opts.limits ? { limits: opts.limits } : {}) },
  );
  const images: LockImage[] = def.images.map((img, i) => ({
    ...lockImage(img, copied[i]!, withReferrers(img, opts)),
    ...(signed ? { verified: { key: signed[i]!.key.id, signature: signed[i]!.signature } } : {}),
  }));
  for (const [i, c] of copied.entries())
    for (const d of c.skippedReferrers)
      opts.out.warn(
        `${images[i]!.ref}: referrer ${d.digest} (${d.mediaType}) is not a manifest; left behind`,
      );
  // Only now that every image is whole: forget images the definition no longer lists.
  const names = new Set(images.map((i) => i.ref));
  const digests = new Set(
    images.flatMap((i) => [
      i.digest,
      ...i.platforms.map((p) => p.digest),
      ...i.blobs.map((b) => b.digest),
      ...referrerItems(i).map((r) => r.digest),
    ]),
  );
  const { removedBlobs } = await layout.prune(names, digests);
  if (removedBlobs > 0) opts.out.debug(`removed ${removedBlobs} blobs no image uses any more`);
  return { images, bytesMoved: copied.reduce((n, c) => n + c.bytesMoved, 0) };
}

function withReferrers(img: ImageItem, opts: PrepareOptions): boolean {
  return img.source === "registry" && !opts.noReferrers;
}

/**
 * The layout, counting the site's layers as present so the engine does not fetch them. Configs
 * and manifests are never in the set: they are small, and the engine reads them back from the
 * layout.
 */
function skippingLayers(layout: OciLayout, siteLayers: ReadonlySet<string>): ImageTarget {
  return {
    description: layout.description,
    acceptsPartialIndex: layout.acceptsPartialIndex,
    hasBlob: async (loc, desc) => siteLayers.has(desc.digest) || layout.hasBlob(loc, desc),
    putBlob: (loc, desc, open, onBytes) => layout.putBlob(loc, desc, open, onBytes),
    hasManifest: (loc, digest) => layout.hasManifest(loc, digest),
    putManifest: (loc, manifest, role) => layout.putManifest(loc, manifest, role),
  };
}

type Signed = CosignVerified & { digest: string };

/**
 * `--verify-key`: every image's cosign signature, from its source registry, by the digest its
 * tag names now (an index for a multi-platform image: what `cosign sign` signs).
 */
async function verifySignatures(def: Definition, opts: PrepareOptions, keys: VerifyKey[]): Promise<Signed[]> {
  const local = def.images.filter((i) => i.source === "docker");
  if (local.length > 0) {
    const names = local.map((i) => `docker-daemon:${formatImageRef(i.ref)} (${formatPos(i.at)})`).join(", ");
    throw new InputError(
      `--verify-key: ${names} come from the local Docker daemon, which keeps no cosign signatures to check`,
    );
  }
  opts.out.info(`checking the cosign signatures of ${def.images.length} images`);
  const results = await verifyCosignAll(def.images, async (img) => {
    const source = opts.openSource(img);
    const head = img.ref.digest ? undefined : await source.headManifest(sourceLocation(img.ref));
    const digest = img.ref.digest ?? head?.digest;
    if (!digest)
      throw new InputError(
        `${formatImageRef(img.ref)}: not found in ${source.description} (${formatPos(img.at)})`,
      );
    return { source, ref: img.ref, digest, keys };
  });
  for (const { check, verified } of results)
    opts.out.debug(`${formatImageRef(check.ref)} (${check.digest}): signed by ${verified.key.file}`);
  return results.map((r) => ({ ...r.verified, digest: r.check.digest }));
}
