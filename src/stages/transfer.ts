/**
 * The image half of prepare and upload: jobs for the copy engine, their outcomes turned into
 * lock entries, and every failure summarised at the end.
 */
import pLimit from "p-limit";
import { formatImageRef, type ImageRef } from "../config/imageRef.js";
import { formatMirror } from "../config/mirror.js";
import type { ImageItem } from "../config/model.js";
import { CopyEngine, type CopiedImage, type CopiedReferrer, type CopyRequest } from "../copy/engine.js";
import type { LockImage, LockReferrer } from "../bundle/lock.js";
import type { JobOutcome, Reporter } from "../util/reporter.js";
import type { ImageLocation } from "../store/types.js";
import { InputError, StoppedError, WorkError } from "../util/errors.js";
import { formatBytes } from "../util/format.js";

export interface TransferLimits {
  /** Images copied at once. */
  images: number;
  /** Blobs in flight at once, over all images. */
  blobs: number;
}

export const DEFAULT_LIMITS: TransferLimits = { images: 4, blobs: 8 };

/** Where an image is in a registry, or in the bundle's layout (which names it by its full reference). */
export function sourceLocation(ref: ImageRef): ImageLocation {
  return {
    repository: ref.repository,
    reference: ref.digest ?? ref.tag ?? "latest",
    name: formatImageRef(ref),
  };
}

export interface TransferJob {
  title: string;
  request: () => CopyRequest;
  /** Turns an error into what this stage should say (e.g. "not found" is the input's fault at prepare). */
  mapError?: (err: unknown) => unknown;
}

/**
 * Runs the copies with bounded concurrency. Stops starting new work at the first failure unless
 * `continueOnError`; either way every failure is listed in the error thrown at the end.
 */
export async function transferImages(
  out: Reporter,
  label: string,
  jobs: TransferJob[],
  opts: { continueOnError: boolean; limits?: TransferLimits },
): Promise<CopiedImage[]> {
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const abort = new AbortController();
  const reports = new Map<string, { planned(n: number): void; moved(n: number): void }>();
  const engine = new CopyEngine({
    blobLimit: pLimit(limits.blobs),
    signal: abort.signal,
    events: {
      onPlanned: (image, n) => reports.get(image)?.planned(n),
      onBytes: (image, n) => reports.get(image)?.moved(n),
    },
  });
  const outcomes = await out.runJobs(
    label,
    jobs.map((job) => ({
      title: job.title,
      run: async (report) => {
        const req = job.request();
        reports.set(req.from.name, report);
        try {
          return await engine.copy(req);
        } catch (err) {
          throw job.mapError ? job.mapError(err) : err;
        }
      },
    })),
    { concurrency: limits.images, continueOnError: opts.continueOnError, abort },
  );
  throwIfFailed(outcomes, label);
  return outcomes.map((o) => (o as { value: CopiedImage }).value);
}

/**
 * One error listing every failed item; exit 2 when every failure is the input's fault. Items
 * stopped because another failed first are counted with those not started, not as failures.
 */
export function throwIfFailed<T>(outcomes: JobOutcome<T>[], label: string): void {
  const stopped = (o: JobOutcome<T>) => !o.ok && (o.skipped || o.error instanceof StoppedError);
  const failed = outcomes.filter((o) => !o.ok && !stopped(o)) as { title: string; error: unknown }[];
  if (failed.length === 0 && !outcomes.some(stopped)) return;
  const skipped = outcomes.filter(stopped).length;
  const lines = failed.map((f) => `  ${f.title}: ${(f.error as Error)?.message ?? String(f.error)}`);
  const tail =
    skipped > 0
      ? `\n  (${skipped} more stopped or not started; --continue-on-error keeps going past a failure)`
      : "";
  const message = `${label}: ${failed.length} of ${outcomes.length} failed:\n${lines.join("\n")}${tail}`;
  const allInput = failed.every((f) => f.error instanceof InputError);
  throw allInput && failed.length > 0 ? new InputError(message) : new WorkError(message);
}

export function lockImage(img: ImageItem, copied: CopiedImage, withReferrers = false): LockImage {
  return {
    ref: formatImageRef(img.ref),
    source: img.source,
    digest: copied.digest,
    mediaType: copied.mediaType,
    size: copied.size,
    platforms: copied.platforms,
    missingPlatforms: copied.missingPlatforms,
    mirror: formatMirror(img.mirror),
    mirrorDigest: copied.mirrorDigest,
    blobs: copied.blobs.map((b) => ({ digest: b.digest, size: b.size, mediaType: b.mediaType })),
    bytes: copied.blobs.reduce((n, b) => n + b.size, 0),
    ...(withReferrers ? { referrers: copied.referrers.map(lockReferrer) } : {}),
  };
}

function lockReferrer(r: CopiedReferrer): LockReferrer {
  const d = r.descriptor;
  return {
    subject: r.subject,
    digest: r.digest,
    mediaType: d.mediaType,
    size: d.size,
    ...(d.artifactType ? { artifactType: d.artifactType } : {}),
    ...(d.annotations ? { annotations: d.annotations } : {}),
    ...(r.tag ? { tag: r.tag } : {}),
    ...(r.manifests.length ? { manifests: r.manifests } : {}),
    blobs: r.blobs.map((b) => ({ digest: b.digest, size: b.size, mediaType: b.mediaType })),
  };
}

/** The final table: image, platforms, size, mirror name. */
export function imageTable(images: LockImage[], registry?: string): string[][] {
  return images.map((i) => [
    i.ref,
    i.platforms.map((p) => p.platform).join(",") +
      (i.missingPlatforms.length ? ` (missing ${i.missingPlatforms.join(",")})` : ""),
    formatBytes(i.bytes),
    registry ? `${registry}/${i.mirror}` : i.mirror,
  ]);
}
