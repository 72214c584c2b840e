/**
 * `bundle verify DIR|FILE`: re-hashes every blob and file of a prepared bundle against its lock
 * (SPEC.md "The prepared bundle") and names every mismatch, missing item and extra item.
 * Each blob is hashed once however many images share it, streamed so memory stays flat; an
 * archive is read in place, each member once. Nothing is trusted but the lock: index.json,
 * blob names and file names are all checked.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import pLimit from "p-limit";
import { referrerParts, type Lock } from "../bundle/lock.js";
import type { BundleContents, LayoutSource } from "../bundle/contents.js";
import { updateOf } from "../bundle/update.js";
import { REF_NAME } from "../store/layout.js";
import { DIGEST_PATTERN } from "../oci/types.js";
import { formatBytes } from "../util/format.js";
import { relativePath, segmentName } from "../util/paths.js";
import { IMAGE_BLOBS_DIR, imageBlobMember } from "../bundle/contents.js";

export type ProblemKind = "mismatch" | "missing" | "extra";

export interface VerifyProblem {
  kind: ProblemKind;
  /** What it is about: `blob sha256:… (used by ref, ref)`, `image ref`, `files/path`. */
  item: string;
  /** Expected against actual, or why it is missing or extra. */
  detail: string;
}

export interface VerifyReport {
  ok: boolean;
  /** Distinct blobs and files hashed, and the bytes read to hash them. */
  checked: { blobs: number; files: number; bytes: number };
  problems: VerifyProblem[];
}

/** How many files are hashed at once. */
const CONCURRENCY = 4;

interface Hashed {
  size: number;
  sha256: string;
}

interface WantedBlob {
  digest: string;
  size: number;
  /** What each user calls it: `ref` (a layer), `ref manifest`, `ref linux/arm64 manifest`. */
  uses: string[];
}

interface WantedFile {
  /** Bundle path, e.g. `files/app.tar.gz`, `templates/files/init.sh`. */
  rel: string;
  size?: number;
  sha256: string;
}

export async function verifyBundle(bundle: BundleContents): Promise<VerifyReport> {
  const lock = bundle.lock;
  const problems: VerifyProblem[] = [];
  const checked = { blobs: 0, files: 0, bytes: 0 };

  await verifyImages(bundle, lock, problems, checked);
  await verifyFiles(bundle, lock, problems, checked);
  const charts = await verifyCharts(bundle, lock);
  problems.push(...charts.problems);
  checked.files += charts.checked.files;
  checked.bytes += charts.checked.bytes;

  // Hashing runs in parallel: a stable order for the report.
  problems.sort(
    (a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || (a.item < b.item ? -1 : a.item > b.item ? 1 : 0),
  );
  return { ok: problems.length === 0, checked, problems };
}

const KIND_ORDER: Record<ProblemKind, number> = { missing: 0, mismatch: 1, extra: 2 };

async function verifyImages(
  bundle: BundleContents,
  lock: Lock,
  problems: VerifyProblem[],
  checked: VerifyReport["checked"],
): Promise<void> {
  if (lock.images.length === 0 && (await bundle.list("images")).length === 0) return;
  const entries = await layoutEntries(bundle, problems);
  if (!entries) return;
  const wanted = wantedBlobs(lock, entries, problems);
  const omittedBlobs = new Set(updateOf(lock)?.omittedBlobs ?? []);
  await forEachLimit([...wanted.values()], CONCURRENCY, (blob) =>
    checkBlob(bundle, blob, omittedBlobs, problems, checked),
  );
  await extraBlobs(bundle, wanted, problems);
}

type IndexEntry = { digest: string; annotations?: Record<string, string> };

/** The layout's index.json entries ([] when it cannot be read); undefined when there is no layout. */
async function layoutEntries(
  bundle: BundleContents,
  problems: VerifyProblem[],
): Promise<IndexEntry[] | undefined> {
  let layout: LayoutSource;
  try {
    layout = await bundle.images();
  } catch (err) {
    problems.push({ kind: "missing", item: "images/", detail: (err as Error).message });
    return undefined;
  }
  try {
    return (await layout.readIndex()).manifests;
  } catch (err) {
    problems.push({
      kind: "missing",
      item: "images/index.json",
      detail: `cannot be read: ${(err as Error).message}`,
    });
    return [];
  }
}

/** Every blob the lock's images use, each once with all its uses; an image index.json misnames is a problem. */
function wantedBlobs(lock: Lock, entries: IndexEntry[], problems: VerifyProblem[]): Map<string, WantedBlob> {
  const wanted = new Map<string, WantedBlob>();
  const want = (digest: string, size: number, use: string) => {
    const w = wanted.get(digest);
    if (w) {
      if (!w.uses.includes(use)) w.uses.push(use);
    } else wanted.set(digest, { digest, size, uses: [use] });
  };
  for (const img of lock.images) {
    const named = entries.filter((e) => e.annotations?.[REF_NAME] === img.ref);
    const entry = named[0];
    if (!entry)
      problems.push({
        kind: "missing",
        item: `image ${img.ref}`,
        detail: `not named in images/index.json (expected ${img.digest})`,
      });
    else if (entry.digest !== img.digest)
      problems.push({
        kind: "mismatch",
        item: `image ${img.ref}`,
        detail: `images/index.json names ${entry.digest}, the lock ${img.digest}`,
      });
    want(img.digest, img.size, `${img.ref} manifest`);
    for (const p of img.platforms)
      if (p.digest !== img.digest) want(p.digest, p.size, `${img.ref} ${p.platform} manifest`);
    for (const b of img.blobs) want(b.digest, b.size, img.ref);
    for (const r of img.referrers ?? []) {
      const use = `${img.ref} referrer ${r.tag ?? r.artifactType ?? r.mediaType}`;
      for (const item of referrerParts(r)) want(item.digest, item.size, use);
    }
  }
  return wanted;
}

/** Hashes one blob of the layout against the lock. */
async function checkBlob(
  bundle: BundleContents,
  blob: WantedBlob,
  omittedBlobs: Set<string>,
  problems: VerifyProblem[],
  checked: VerifyReport["checked"],
): Promise<void> {
  const item = `blob ${blob.digest} (${blob.uses.join(", ")})`;
  if (!DIGEST_PATTERN.test(blob.digest)) {
    problems.push({ kind: "mismatch", item, detail: "the lock's digest is not a sha256 digest" });
    return;
  }
  const got = await hashFile(bundle, imageBlobMember(blob.digest));
  if (!got && omittedBlobs.has(blob.digest)) return; // an update bundle leaves it to the site
  if (!got) {
    problems.push({
      kind: "missing",
      item,
      detail: `${imageBlobMember(blob.digest)} is missing`,
    });
    return;
  }
  checked.blobs++;
  checked.bytes += got.size;
  const actual = `sha256:${got.sha256}`;
  if (got.size !== blob.size || actual !== blob.digest)
    problems.push({
      kind: "mismatch",
      item,
      detail: `expected ${blob.size} bytes with digest ${blob.digest}, got ${got.size} bytes with digest ${actual}`,
    });
}

/** Blobs in the layout that no image of the lock uses (a writer's temporary names aside). */
async function extraBlobs(
  bundle: BundleContents,
  wanted: Map<string, WantedBlob>,
  problems: VerifyProblem[],
): Promise<void> {
  const present = (await bundle.list(IMAGE_BLOBS_DIR)).map((rel) => path.posix.basename(rel));
  const known = new Set([...wanted.keys()].map((d) => d.slice("sha256:".length)));
  for (const name of present.sort()) {
    if (known.has(name) || name.includes(".tmp-")) continue;
    problems.push({
      kind: "extra",
      item: `blob sha256:${name}`,
      detail: "in images/blobs/sha256 but used by no image of the lock",
    });
  }
}

async function verifyFiles(
  bundle: BundleContents,
  lock: Lock,
  problems: VerifyProblem[],
  checked: VerifyReport["checked"],
): Promise<void> {
  const omittedFiles = new Set((updateOf(lock)?.omittedFiles ?? []).map((f) => `files/${f}`));
  const wanted = new Map<string, WantedFile>();
  for (const f of lock.files)
    wanted.set(`files/${f.path}`, { rel: `files/${f.path}`, size: f.size, sha256: f.sha256 });
  // Git archives are usually listed among the files too; each is hashed once.
  for (const g of lock.git) {
    const rel = `files/${g.archive}`;
    const before = wanted.get(rel);
    if (before && (before.sha256 !== g.sha256 || before.size !== g.size))
      problems.push({
        kind: "mismatch",
        item: rel,
        detail: `the lock's git entry for ${g.url}@${g.commit} says ${g.size} bytes sha256 ${g.sha256}, its file entry ${String(before.size)} bytes sha256 ${before.sha256}`,
      });
    if (!before) wanted.set(rel, { rel, size: g.size, sha256: g.sha256 });
  }
  for (const w of templateFiles(lock)) wanted.set(w.rel, w);

  await hashWanted(bundle, [...wanted.values()], problems, checked, omittedFiles);

  if (lock.valuesSha256 === undefined) {
    // A lock from before values were hashed: the file must at least be there.
    const there = await bundle.stat(lock.values).catch((e: Error) => e);
    if (!there || there instanceof Error)
      problems.push({
        kind: "missing",
        item: lock.values,
        detail: there instanceof Error ? there.message : "the template values file is missing",
      });
  }

  for (const rel of await bundle.list("files")) {
    if (wanted.has(rel) || ignored(rel)) continue;
    problems.push({ kind: "extra", item: rel, detail: "under files/ but not in the lock" });
  }
}

/** The templates and, in locks that record it, the values file they are rendered with. */
function templateFiles(lock: Lock): WantedFile[] {
  const out: WantedFile[] = lock.templates.map((t) => ({ rel: t.source, sha256: t.sha256 }));
  if (lock.valuesSha256 !== undefined)
    out.push({
      rel: lock.values,
      sha256: lock.valuesSha256,
      ...(lock.valuesSize !== undefined ? { size: lock.valuesSize } : {}),
    });
  return out;
}

/**
 * What a signature covers only through the lock and a stage reads before anything moves: the
 * charts, the templates and the values file (small files, all of them hashed). A signed lock
 * with any of them changed is refused before upload or deploy starts.
 */
export async function verifyCovered(bundle: BundleContents): Promise<VerifyReport> {
  const report = await verifyCharts(bundle, bundle.lock);
  await hashWanted(bundle, templateFiles(bundle.lock), report.problems, report.checked, new Set());
  return { ...report, ok: report.problems.length === 0 };
}

/** Each file hashed against the lock: missing (unless `omitted`) and mismatched ones named. */
async function hashWanted(
  bundle: BundleContents,
  wanted: WantedFile[],
  problems: VerifyProblem[],
  checked: VerifyReport["checked"],
  omitted: Set<string>,
): Promise<void> {
  await forEachLimit(wanted, CONCURRENCY, async (f) => {
    const got = await hashFile(bundle, f.rel).catch((err: Error) => {
      // A link that leads outside the bundle: named, never read through.
      problems.push({ kind: "mismatch", item: f.rel, detail: err.message });
      return null;
    });
    if (got === null) return;
    if (!got && omitted.has(f.rel)) return; // an update bundle leaves it to the site
    if (!got) {
      problems.push({ kind: "missing", item: f.rel, detail: "listed in the lock but not in the bundle" });
      return;
    }
    checked.files++;
    checked.bytes += got.size;
    const sizeOk = f.size === undefined || f.size === got.size;
    if (!sizeOk || got.sha256 !== f.sha256) {
      const expected =
        f.size === undefined ? `sha256 ${f.sha256}` : `${f.size} bytes with sha256 ${f.sha256}`;
      problems.push({
        kind: "mismatch",
        item: f.rel,
        detail: `expected ${expected}, got ${got.size} bytes with sha256 ${got.sha256}`,
      });
    }
  });
}

/**
 * Every file of the charts (`names`: only those) against the lock's listing: changed, missing
 * and added files named, and chart folders the lock does not list. A chart of a bundle
 * prepared before charts were listed has no listing to check.
 */
export async function verifyCharts(
  bundle: BundleContents,
  lock: Lock,
  names?: string[],
): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  const checked = { blobs: 0, files: 0, bytes: 0 };
  const charts = lock.charts.filter((c) => !names || names.includes(c.name));
  const wanted = charts.flatMap((c) =>
    (c.files ?? []).map((f) => ({
      rel: `charts/${segmentName(c.name, "bundle.lock.json charts[].name")}/${relativePath(f.path, `bundle.lock.json chart ${c.name} files[].path`)}`,
      size: f.size,
      sha256: f.sha256,
    })),
  );
  // A chart's Helm archive (charts/<name>-<version>.tgz) is checked with its files.
  for (const c of charts)
    if (c.archive) wanted.push({ rel: c.archive.path, size: c.archive.size, sha256: c.archive.sha256 });
  await hashWanted(bundle, wanted, problems, checked, new Set());
  const known = new Set(wanted.map((w) => w.rel));
  const listed = new Set(lock.charts.map((c) => c.name));
  const archives = new Set(lock.charts.flatMap((c) => (c.archive ? [c.archive.path] : [])));
  for (const rel of await bundle.list("charts")) {
    const name = rel.split("/")[1] ?? "";
    const chart = charts.find((c) => c.name === name);
    if (known.has(rel) || archives.has(rel) || ignored(rel)) continue;
    if ((listed.has(name) && !chart) || (chart && !chart.files)) continue;
    problems.push({
      kind: "extra",
      item: rel,
      detail: chart
        ? "in the chart but not in the lock's list of its files"
        : "under charts/ but no chart of the lock",
    });
  }
  return { ok: problems.length === 0, checked, problems };
}

/** Work files of prepare, upload and deploy, not content of the bundle. */
function ignored(rel: string): boolean {
  return rel
    .split("/")
    .some((s) => s === ".partial" || s === ".docker-export" || s.endsWith(".partial") || s.includes(".tmp-"));
}

/**
 * Size and sha256 (hex) of a bundle file, streamed; undefined when there is no such file. The
 * hash here is the check, so an archive member is read without its own (a second) hashing.
 */
async function hashFile(bundle: BundleContents, rel: string): Promise<Hashed | undefined> {
  if (!(await bundle.stat(rel))) return undefined;
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of bundle.open(rel, { check: false })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest("hex") };
}

/** `fn` over `items`, at most `limit` at a time. */
async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const run = pLimit(limit);
  await Promise.all(items.map((item) => run(() => fn(item))));
}

/** Human output: one line per problem, then a summary. */
export function formatVerify(report: VerifyReport): string[] {
  const lines = report.problems.map((p) => `${p.kind}: ${p.item}: ${p.detail}`);
  const { blobs, files, bytes } = report.checked;
  const summary = `${blobs} blobs and ${files} files checked (${formatBytes(bytes)})`;
  lines.push(
    report.ok
      ? `bundle ok: ${summary}`
      : `bundle NOT ok: ${report.problems.length} problem${report.problems.length === 1 ? "" : "s"}; ${summary}`,
  );
  return lines;
}
