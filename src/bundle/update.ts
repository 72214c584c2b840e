/**
 * Update bundles (`bundle prepare --since OLD`): a bundle that leaves out every blob, manifest and
 * file the site already received with an older bundle. Prepare writes a full bundle as usual;
 * `applyUpdate` then removes what the old bundle carried and records it in the lock's `update`
 * field, so upload and deploy can first check (`checkSiteHas`) that the site holds it.
 *
 * An old bundle that was itself an update counts as carrying everything its lock lists: the
 * site could only take it after holding what it left out.
 */
import { createHash } from "node:crypto";
import { readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { LOCK_FILE, LOCK_VERSION, readLock, referrerItems, writeLock, type Lock } from "./lock.js";
import { isArchive, openArchive, readMember, startsAsArchive } from "./archive.js";
import { parseMirror } from "../config/mirror.js";
import { InputError } from "../util/errors.js";
import { resolveInside } from "../util/paths.js";
import { blobRel } from "../util/cas.js";

/** The lock's `update` field (lock.ts adds `update?: UpdateInfo` to `Lock`). */
export interface UpdateInfo {
  /** sha256 (hex) of the old lock's bytes, exactly as its file held them. */
  since: string;
  /** Digests of blobs and manifests left out of images/blobs/sha256. */
  omittedBlobs: string[];
  /** Paths relative to files/ (as the lock's `files[].path`) left out of files/. */
  omittedFiles: string[];
}

export type UpdateLock = Lock & { update?: UpdateInfo };

export interface UpdatePlan {
  /** sha256 (hex) of the old lock's bytes. */
  since: string;
  /** Config, layer and manifest digests the old bundle already carried. */
  omitBlobs: Set<string>;
  /** Paths relative to files/ whose sha256 the old bundle had at the same path. */
  omitFiles: Set<string>;
  keepBlobs: Set<string>;
  keepFiles: Set<string>;
  /** Bytes left out (each blob and file counted once). */
  savedBytes: number;
  /** Bytes the update bundle still carries. */
  neededBytes: number;
}

/** Holders of the old locks' bytes, so `since` names the file's exact bytes. */
const lockBytesHash = new WeakMap<Lock, string>();

function sha256Hex(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** sha256 of a lock's bytes: those read by `readOldLock`, else as `writeLock` writes them. */
export function lockSha256(lock: Lock): string {
  return lockBytesHash.get(lock) ?? sha256Hex(`${JSON.stringify(lock, null, 2)}\n`);
}

/** The old bundle's lock: `p` is a bundle folder, a bundle archive (whole or split), or a lock file. */
export async function readOldLock(p: string): Promise<Lock> {
  const { file, bytes } = await oldLockBytes(p);
  let data: unknown;
  try {
    data = JSON.parse(bytes.toString("utf8"));
  } catch (err) {
    throw new InputError(`--since ${file}: not a bundle lock (${(err as Error).message})`);
  }
  const version = (data as { lockVersion?: unknown } | null)?.lockVersion;
  if (data === null || typeof data !== "object" || version !== LOCK_VERSION) {
    throw new InputError(
      `--since ${file}: not a bundle lock of version ${LOCK_VERSION} (lockVersion ${String(version)})`,
    );
  }
  const { checkLockData } = await import("./parse.js");
  const lock = checkLockData(data, `--since ${file}`);
  lockBytesHash.set(lock, sha256Hex(bytes));
  return lock;
}

async function oldLockBytes(p: string): Promise<{ file: string; bytes: Buffer }> {
  const info = await stat(p).catch(() => undefined);
  if (info?.isDirectory()) {
    await readLock(p); // its error names a folder that is not a bundle
    return { file: path.join(p, LOCK_FILE), bytes: await readFile(path.join(p, LOCK_FILE)) };
  }
  const split = !info && (await isArchive(p));
  if (!info && !split) throw new InputError(`--since ${p}: no such bundle folder, archive or lock file`);
  if (split || (await startsAsArchive(p))) {
    const archive = await openArchive(p);
    return { file: `${LOCK_FILE} in ${p}`, bytes: await readMember(archive, LOCK_FILE) };
  }
  return { file: p, bytes: await readFile(p) };
}

/** Every blob and manifest of a lock's images, digest → size, each once. */
export function lockBlobs(lock: Lock): Map<string, number> {
  const out = new Map<string, number>();
  for (const img of lock.images) {
    out.set(img.digest, img.size);
    for (const p of img.platforms) out.set(p.digest, p.size);
    for (const b of img.blobs) out.set(b.digest, b.size);
    // A referrer's manifests are always carried (they are small): upload reads them to push
    // cosign's tags again, and the site's copy cannot be read back from an update bundle.
    for (const r of referrerItems(img)) if (!r.manifest) out.set(r.digest, r.size);
  }
  return out;
}

/**
 * The layers of a lock's images: what a site that took that bundle holds, and what
 * `prepare --since` need not download. Configs are left out (the copy reads them back).
 */
export function lockLayers(lock: Lock): Set<string> {
  const out = new Set<string>();
  for (const img of lock.images) for (const b of img.blobs) if (!isConfigType(b.mediaType)) out.add(b.digest);
  return out;
}

function isConfigType(mediaType: string): boolean {
  return /config|container\.image/.test(mediaType);
}

/** Every file under files/ (downloads, templates, git archives), path → {size, sha256}. */
export function lockFiles(lock: Lock): Map<string, { size: number; sha256: string }> {
  const out = new Map<string, { size: number; sha256: string }>();
  for (const g of lock.git) out.set(g.archive, { size: g.size, sha256: g.sha256 });
  for (const f of lock.files) out.set(f.path, { size: f.size, sha256: f.sha256 });
  return out;
}

/** What an update from `old` to `next` leaves out. */
export function planUpdate(next: Lock, old: Lock): UpdatePlan {
  const oldBlobs = lockBlobs(old);
  const oldFiles = lockFiles(old);
  const plan: UpdatePlan = {
    since: lockSha256(old),
    omitBlobs: new Set(),
    omitFiles: new Set(),
    keepBlobs: new Set(),
    keepFiles: new Set(),
    savedBytes: 0,
    neededBytes: 0,
  };
  for (const [digest, size] of lockBlobs(next)) {
    if (oldBlobs.has(digest)) {
      plan.omitBlobs.add(digest);
      plan.savedBytes += size;
    } else {
      plan.keepBlobs.add(digest);
      plan.neededBytes += size;
    }
  }
  for (const [p, f] of lockFiles(next)) {
    if (oldFiles.get(p)?.sha256 === f.sha256) {
      plan.omitFiles.add(p);
      plan.savedBytes += f.size;
    } else {
      plan.keepFiles.add(p);
      plan.neededBytes += f.size;
    }
  }
  return plan;
}

function blobPath(dir: string, digest: string): string {
  return path.join(dir, "images", blobRel(digest));
}

/**
 * Turns the full bundle that prepare wrote into `dir` into an update bundle: removes the omitted
 * blobs and files and records them in the lock (written atomically). A signature of the full
 * lock no longer holds and is removed; sign after this.
 */
export async function applyUpdate(dir: string, plan: UpdatePlan): Promise<UpdateInfo> {
  const lock = (await readLock(dir)) as UpdateLock;
  const update: UpdateInfo = {
    since: plan.since,
    omittedBlobs: [...plan.omitBlobs].sort(),
    omittedFiles: [...plan.omitFiles].sort(),
  };
  for (const d of update.omittedBlobs) await rm(blobPath(dir, d), { force: true });
  for (const f of update.omittedFiles)
    await rm(await resolveInside(dir, `files/${f}`, "a file the update leaves out"), { force: true });
  lock.update = update;
  await writeLock(dir, lock);
  await rm(path.join(dir, `${LOCK_FILE}.sig`), { force: true });
  return update;
}

/** What the site holds: the private registry's blobs and the file server's files. */
/** An item an update bundle leaves out: where the site holds it, for which image, its size. */
export interface OmittedItem {
  repository: string;
  ref: string;
  isManifest: boolean;
  size: number;
}

export interface SiteHolder {
  /** Whether `repository` (the mirror's, e.g. `teleinfra/redis`) on the registry holds the blob. */
  blob(digest: string, repository: string, size: number): Promise<boolean>;
  /** Manifests by digest; defaults to `blob`. */
  manifest?(digest: string, repository: string): Promise<boolean>;
  /** Whether the file server holds `path` (relative to files/) with this sha256. */
  file(path: string, sha256: string): Promise<boolean>;
}

/**
 * Every item the update bundle leaves out that the site does not hold, as messages; empty when
 * the lock is not an update or the site holds everything. A blob is checked in each mirror
 * repository whose image uses it.
 */
export async function checkSiteHas(lock: Lock, has: SiteHolder): Promise<string[]> {
  const update = (lock as UpdateLock).update;
  if (!update) return [];
  const problems: string[] = [];
  for (const [digest, where] of omittedHolders(lock)) {
    const ok =
      where.isManifest && has.manifest
        ? await has.manifest(digest, where.repository)
        : await has.blob(digest, where.repository, where.size);
    if (!ok) {
      problems.push(
        `${where.isManifest ? "manifest" : "blob"} ${digest} of ${where.ref} is not on the registry in ${where.repository} ` +
          `(the update bundle leaves it out)`,
      );
    }
  }
  const files = lockFiles(lock);
  for (const p of update.omittedFiles) {
    const f = files.get(p);
    if (!f) {
      problems.push(`files/${p} is listed as left out but the lock does not list it`);
      continue;
    }
    if (!(await has.file(p, f.sha256))) {
      problems.push(
        `files/${p} (sha256 ${f.sha256}) is not on the file server (the update bundle leaves it out)`,
      );
    }
  }
  return problems;
}

/** An image the earlier bundle carried whole: its top manifest is left out. */
export function isCarriedBefore(lock: Lock, img: Lock["images"][number]): boolean {
  return (lock as UpdateLock).update?.omittedBlobs.includes(img.digest) ?? false;
}

/**
 * Where the site should hold each left-out digest: the mirror repository of an image the earlier
 * bundle carried whole (so upload can mount it from there into a new image's repository), else
 * that of the first image using it.
 */
export function omittedHolders(lock: Lock): Map<string, OmittedItem> {
  const omitted = new Set((lock as UpdateLock).update?.omittedBlobs ?? []);
  const out = new Map<string, OmittedItem>();
  const images = [...lock.images].sort(
    (a, b) => Number(isCarriedBefore(lock, b)) - Number(isCarriedBefore(lock, a)),
  );
  for (const img of images) {
    const repository = parseMirror(img.mirror).repository;
    const referred = referrerItems(img);
    const manifests = new Map([
      [img.digest, img.size],
      ...img.platforms.map((p) => [p.digest, p.size] as const),
      ...referred.filter((r) => r.manifest).map((r) => [r.digest, r.size] as const),
    ]);
    const items = [
      ...manifests,
      ...img.blobs.map((b) => [b.digest, b.size] as const),
      ...referred.filter((r) => !r.manifest).map((r) => [r.digest, r.size] as const),
    ];
    for (const [digest, size] of items) {
      if (omitted.has(digest) && !out.has(digest)) {
        out.set(digest, { repository, ref: img.ref, isManifest: manifests.has(digest), size });
      }
    }
  }
  return out;
}

/** Whether a lock is an update bundle's. */
export function updateOf(lock: Lock): UpdateInfo | undefined {
  return (lock as UpdateLock).update;
}
