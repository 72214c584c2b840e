/**
 * `bundle upload`: the bundle's images to the site's registry under their mirror names, and its
 * files to the file server. The same engine as prepare, the other way round; a second upload
 * only checks, since every manifest is asked about before anything moves. The bundle may be a
 * folder or a one-file archive: both are read in place, an archive member by member from its
 * offset, so nothing is unpacked to disk.
 */
import type { Lock, LockChart, LockImage, LockReferrer } from "../bundle/lock.js";
import type { ReferrerRef } from "../copy/engine.js";
import type { ChartArtifact } from "../charts/artifact.js";
import type { BundleContents } from "../bundle/contents.js";
import { knowsHolders, type ImageLocation, type ImageTarget } from "../store/types.js";
import { parseMirror } from "../config/mirror.js";
import type { Reporter } from "../util/reporter.js";
import { InputError, WorkError } from "../util/errors.js";
import { transferImages, type TransferLimits } from "./transfer.js";
import { parseImageRef } from "../config/imageRef.js";
import { sourceLocation } from "./transfer.js";
import type { Values } from "../config/model.js";
import { applyValueOptions, mergeValues, siteValues, type ValueOptions } from "../config/values.js";
import { uploadFiles, type FileTarget } from "./siteFiles.js";
import { checkSiteHas, isCarriedBefore, omittedHolders } from "../bundle/update.js";

export interface UploadOptions {
  /** The bundle, a folder or an archive read in place. */
  bundle: BundleContents;
  /** `host[:port]` of the site's registry, as image references name it. */
  registryHost?: string;
  /** The site's registry as a copy target; required when the bundle has images. */
  target?: ImageTarget;
  /** The file server; required when the bundle has files. */
  fileserver?: FileTarget;
  /** Whether a token for the file server's uploads was given; required when the bundle has files. */
  fileserverToken?: boolean;
  /** `--values` and `--set` of this run, over the values prepare recorded. */
  valueOptions?: ValueOptions;
  fileserverUrl?: string;
  continueOnError: boolean;
  out: Reporter;
  limits?: TransferLimits;
}

export interface UploadResult {
  lock: Lock;
  images: { ref: string; mirror: string; digest: string }[];
  /** Charts pushed as Helm OCI artifacts: `REG/<prefix>/charts/<name>:<version>` and the manifest's digest. */
  charts: { name: string; mirror: string; digest: string }[];
  files: { sent: string[]; skipped: string[] };
  bytesMoved: number;
}

export async function upload(opts: UploadOptions): Promise<UploadResult> {
  const lock = opts.bundle.lock;
  if (lock.images.length > 0 && (!opts.target || !opts.registryHost)) {
    throw new InputError(
      `the bundle holds ${lock.images.length} images: give the site's registry with --registry HOST[:PORT]`,
    );
  }
  const hasFiles = lock.files.length > 0 || lock.templates.some((t) => t.dest.startsWith("files/"));
  if (hasFiles && !opts.fileserver) {
    throw new InputError(
      `the bundle holds files: give the file server with --fileserver URL (e.g. http://10.0.0.5:8003)`,
    );
  }
  if (hasFiles && opts.fileserver && !opts.fileserverToken) {
    throw new InputError(
      `the bundle holds files: the file server takes uploads only with its token; give it with --token-file FILE`,
    );
  }
  if (lock.update) await checkUpdateBase(lock, opts);
  if (!opts.target && lock.charts.some((c) => c.archive && c.mirror))
    opts.out.warn("the bundle's charts are not pushed as OCI artifacts: no --registry given");
  // Every chart archive is read and checked before anything moves.
  const charts = opts.target && opts.registryHost ? await openCharts(opts) : [];
  const images =
    opts.target && opts.registryHost
      ? await uploadImages(lock, opts, opts.target, opts.registryHost)
      : { list: [], moved: 0 };
  const pushed =
    opts.target && opts.registryHost
      ? await pushCharts(charts, opts, opts.target, opts.registryHost)
      : { list: [], moved: 0 };
  const files =
    hasFiles && opts.fileserver
      ? await uploadFiles(opts.bundle, opts.fileserver, await bundleValues(opts.bundle, opts), opts)
      : { sent: [], skipped: [], bytesMoved: 0 };
  return {
    lock,
    images: images.list,
    charts: pushed.list,
    files: { sent: files.sent, skipped: files.skipped },
    bytesMoved: images.moved + pushed.moved + files.bytesMoved,
  };
}

/**
 * An update bundle leaves out what an earlier upload put on the site: check the site holds every
 * item left out before anything moves, naming each missing one; then tell the registry store
 * where those blobs are, so new images mount them instead of needing their bytes.
 */
async function checkUpdateBase(lock: Lock, opts: UploadOptions): Promise<void> {
  const target = opts.target;
  const remote = opts.fileserver
    ? new Map((await opts.fileserver.list(lock.name)).map((f) => [f.path, f.sha256]))
    : new Map();
  const at = (repository: string, digest: string) => ({
    repository,
    reference: digest,
    name: `${repository}@${digest}`,
  });
  const missing = await checkSiteHas(lock, {
    blob: async (digest, repository, size) =>
      target ? target.hasBlob(at(repository, digest), { digest, size, mediaType: "" }) : false,
    manifest: async (digest, repository) =>
      target ? target.hasManifest(at(repository, digest), digest) : false,
    file: async (p, sha256) => remote.get(p) === sha256,
  });
  if (missing.length > 0) {
    throw new WorkError(
      `this update bundle (since ${lock.update?.since.slice(0, 12)}) needs what an earlier upload put on the site, and the site lacks:\n` +
        missing.map((m) => `  - ${m}`).join("\n"),
    );
  }
  if (target && knowsHolders(target))
    for (const [digest, where] of omittedHolders(lock)) target.addHolder(digest, where.repository);
}

/** The values prepare used, then this run's --values and --set, then the site values. */
export async function bundleValues(
  bundle: BundleContents,
  opts: { registryHost?: string; fileserverUrl?: string; valueOptions?: ValueOptions },
): Promise<Values> {
  const lock = bundle.lock;
  const recorded = JSON.parse((await bundle.readFile(lock.values)).toString("utf8")) as Values;
  const values = await applyValueOptions(recorded, opts.valueOptions ?? {});
  return mergeValues(
    values,
    siteValues({
      bundleName: lock.name,
      ...(opts.registryHost ? { registryHost: opts.registryHost } : {}),
      ...(opts.fileserverUrl ? { fileserverUrl: opts.fileserverUrl } : {}),
    }),
  );
}

async function uploadImages(lock: Lock, opts: UploadOptions, target: ImageTarget, host: string) {
  const layout = await opts.bundle.images();
  // An update bundle leaves out images the site already has: they were checked, not copied,
  // though referrers found since (a new signature, an SBOM) still go next to them.
  const images = lock.images.filter((img) => !isCarriedBefore(lock, img) || img.referrers?.length);
  const copied = await transferImages(
    opts.out,
    "images",
    images.map((img) => ({
      title: `${img.ref} → ${host}/${img.mirror}`,
      request: () => ({
        source: layout,
        target,
        from: sourceLocation(parseImageRef(img.ref)),
        to: mirrorLocation(img, host),
        // Exactly the platforms prepare carried, by their recorded names.
        platforms: img.platforms.map((p) => p.platform),
        allowMissingPlatforms: true,
        ...(isCarriedBefore(lock, img) ? { imageAtTarget: true } : {}),
        // Next to the image, by the same digests (and cosign's tags), so signatures still verify.
        ...(img.referrers?.length ? { referrers: img.referrers.map(referrerRef) } : {}),
      }),
    })),
    { continueOnError: opts.continueOnError, ...(opts.limits ? { limits: opts.limits } : {}) },
  );
  const list = images.flatMap((img, i) => {
    if (isCarriedBefore(lock, img)) return [];
    const got = copied[i]?.targetDigest ?? "";
    if (got !== img.mirrorDigest) {
      throw new WorkError(
        `${host}/${img.mirror} names ${got} after upload; the bundle's lock expects ${img.mirrorDigest}`,
      );
    }
    return [{ ref: img.ref, mirror: `${host}/${img.mirror}`, digest: got }];
  });
  return { list, moved: copied.reduce((n, c) => n + c.bytesMoved, 0) };
}

function referrerRef(r: LockReferrer): ReferrerRef {
  return { subject: r.subject, digest: r.digest, ...(r.tag ? { tag: r.tag } : {}) };
}

/** The bundle's charts with an archive and a mirror name, each read and checked against the lock. */
async function openCharts(opts: UploadOptions) {
  const lock = opts.bundle.lock;
  const { ChartArtifact: Artifact } = await import("../charts/artifact.js");
  const out: { chart: LockChart; mirror: string; artifact: ChartArtifact }[] = [];
  for (const chart of lock.charts) {
    const { archive, mirror } = chart;
    if (!archive || !mirror) continue;
    out.push({ chart, mirror, artifact: await Artifact.open(opts.bundle, { ...chart, archive }) });
  }
  return out;
}

/** Each chart as a Helm OCI artifact, through the copy engine as images go. */
async function pushCharts(
  charts: Awaited<ReturnType<typeof openCharts>>,
  opts: UploadOptions,
  target: ImageTarget,
  host: string,
) {
  const copied = await transferImages(
    opts.out,
    "charts",
    charts.map(({ chart, mirror, artifact }) => {
      const m = parseMirror(mirror);
      const to = { repository: m.repository, reference: m.tag ?? "", name: `${host}/${mirror}` };
      return {
        title: `chart ${chart.name} → ${host}/${mirror}`,
        request: () => ({
          source: artifact,
          target,
          from: { ...to, name: `chart ${chart.name} (${artifact.description})` },
          to,
          platforms: [],
          allowMissingPlatforms: true,
        }),
      };
    }),
    { continueOnError: opts.continueOnError, ...(opts.limits ? { limits: opts.limits } : {}) },
  );
  const list = charts.map(({ chart, mirror }, i) => ({
    name: chart.name,
    mirror: `${host}/${mirror}`,
    digest: copied[i]?.targetDigest ?? "",
  }));
  return { list, moved: copied.reduce((n, c) => n + c.bytesMoved, 0) };
}

/** `teleinfra/redis:4.0` on the site's registry; an image pinned by digest keeps its digest. */
export function mirrorLocation(img: LockImage, host: string): ImageLocation {
  const m = parseMirror(img.mirror);
  return { repository: m.repository, reference: m.tag ?? img.mirrorDigest, name: `${host}/${img.mirror}` };
}
