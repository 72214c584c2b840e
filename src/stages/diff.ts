/**
 * `bundle diff OLD NEW`: what changed between two bundles (folders, archives or lock files), the
 * page a change-approval board reads before an update bundle crosses. Everything comes from the
 * two locks, read through the lock's schema; only what a lock cannot say (a chart's version, the
 * template values) is read from the bundles themselves, and only when both sides are bundles.
 * Values are compared by key and never printed: they may hold passwords.
 */
import { readFile, stat } from "node:fs/promises";
import { isArchive, startsAsArchive } from "../bundle/archive.js";
import { openBundle, type BundleContents } from "../bundle/contents.js";
import { parseLock, type Lock, type LockChart, type LockImage } from "../bundle/lock.js";
import { updateOf } from "../bundle/update.js";
import { parseChartFile } from "../charts/metadata.js";
import { InputError } from "../util/errors.js";
import { formatBytes, plural, shortDigest } from "../util/format.js";

/** A lock beyond this is not one prepare wrote: refused rather than read whole into memory. */
const MAX_LOCK_BYTES = 64 << 20;
/** Chart.yaml and values.json are small; a bigger one is not read for the comparison. */
const MAX_SMALL_FILE = 1 << 20;

export interface DiffSide {
  /** The path as given: for messages. */
  where: string;
  lock: Lock;
  /** Undefined when the side is a bare lock file. */
  bundle?: BundleContents;
}

/** Opens OLD or NEW: a bundle folder, a bundle archive (read in place) or a lock file. */
export async function openSide(p: string): Promise<DiffSide> {
  const info = await stat(p).catch(() => undefined);
  if (!info && !(await isArchive(p)))
    throw new InputError(`${p}: no such bundle folder, archive or lock file`);
  if (info?.isFile() && !(await startsAsArchive(p))) {
    if (info.size > MAX_LOCK_BYTES)
      throw new InputError(`${p}: ${formatBytes(info.size)} is too large for a bundle lock`);
    return { where: p, lock: await parseLock(await readFile(p, "utf8"), p) };
  }
  const bundle = await openBundle(p);
  return { where: p, lock: bundle.lock, bundle };
}

export interface FieldChange {
  old: unknown;
  new: unknown;
}

/** An item present on both sides whose fields differ, by the key that names it. */
export interface ItemChange {
  key: string;
  fields: Record<string, FieldChange>;
}

export interface KindDiff<T> {
  added: T[];
  removed: T[];
  changed: ItemChange[];
}

export interface ImageSummary {
  ref: string;
  mirror: string;
  digest: string;
  platforms: { platform: string; digest: string }[];
}

export interface ImageChange {
  ref: string;
  old: { digest: string; mirror: string };
  new: { digest: string; mirror: string };
  platforms: {
    added: { platform: string; digest: string }[];
    removed: { platform: string; digest: string }[];
    changed: { platform: string; old: string; new: string }[];
  };
}

/** The same content under another source reference or mirror name. */
export interface ImageRetag {
  digest: string;
  old: { ref: string; mirror: string };
  new: { ref: string; mirror: string };
}

export interface ReferrerSummary {
  image: string;
  /** cosign's tag, or the artifactType (media type) of an OCI referrer. */
  kind: string;
  subject: string;
  digest: string;
}

export interface ChartChange {
  name: string;
  /** From each side's Chart.yaml when it changed (both sides bundles), else the locks' versions when they differ; else null. */
  version: FieldChange | null;
  files: { added: string[]; removed: string[]; changed: string[] };
  /** The Helm archive upload pushes (`charts/<name>-<version>.tgz`): its sha256 on each side; only when it changed. */
  archive?: FieldChange;
}

export interface DiffReport {
  equal: boolean;
  old: SideSummary;
  new: SideSummary;
  /** `name` is null when both sides have the same name. */
  bundle: { name: FieldChange | null; platforms: { added: string[]; removed: string[] } };
  images: {
    added: ImageSummary[];
    removed: ImageSummary[];
    retagged: ImageRetag[];
    changed: ImageChange[];
  };
  /** Signatures, SBOMs, attestations, by image and cosign tag (or digest). */
  referrers: KindDiff<ReferrerSummary>;
  git: KindDiff<{ archive: string; url: string; commit: string; sha256: string; size: number }>;
  files: KindDiff<{ path: string; size: number; sha256: string; url?: string }>;
  npm: KindDiff<{ path: string; git: string; sha256: string; size: number }>;
  charts: { added: string[]; removed: string[]; changed: ChartChange[] };
  releases: KindDiff<{ name: string; chart: string; namespace: string; valuesFiles: string[] }>;
  templates: KindDiff<{ dest: string; source: string; sha256: string; siteValues: string[] }>;
  values: {
    /** False when a side is a lock file: the values file is not in it. */
    compared: boolean;
    /** Keys of the template values added, removed or set otherwise (the values are not shown). */
    added: string[];
    removed: string[];
    changed: string[];
    siteValues: { added: string[]; removed: string[] };
  };
}

export interface SideSummary {
  where: string;
  name: string;
  kind: "folder" | "archive" | "lock";
  /** sha256 of the lock an update bundle leaves the rest to; null for a full bundle. */
  updateSince: string | null;
}

export async function diffBundles(oldSide: DiffSide, newSide: DiffSide): Promise<DiffReport> {
  const [a, b] = [oldSide.lock, newSide.lock];
  const gitPaths = new Set([...a.git, ...b.git].map((g) => g.archive));
  const files = (l: Lock) => l.files.filter((f) => !gitPaths.has(f.path));
  const report: Omit<DiffReport, "equal"> = {
    old: summary(oldSide),
    new: summary(newSide),
    bundle: {
      name: a.name !== b.name ? { old: a.name, new: b.name } : null,
      platforms: setDiff(a.platforms, b.platforms),
    },
    images: diffImages(a.images, b.images),
    referrers: diffBy(referrerSummaries(a), referrerSummaries(b), referrerKey, ["digest", "subject"]),
    git: diffBy(a.git, b.git, (g) => g.archive, ["url", "commit", "sha256", "size"]),
    files: diffBy(files(a), files(b), (f) => f.path, ["sha256", "size", "url"]),
    npm: diffBy(a.npm ?? [], b.npm ?? [], (n) => n.path, ["git", "key", "sha256", "size", "dirs"]),
    charts: await diffCharts(oldSide, newSide),
    releases: diffBy(a.releases, b.releases, (r) => r.name, ["chart", "namespace", "valuesFiles"]),
    templates: diffBy(a.templates, b.templates, (t) => t.dest, [
      "source",
      "syntax",
      "mode",
      "sha256",
      "siteValues",
    ]),
    values: await diffValues(oldSide, newSide),
  };
  return { equal: countChanges(report).length === 0, ...report };
}

function summary(side: DiffSide): SideSummary {
  return {
    where: side.where,
    name: side.lock.name,
    kind: !side.bundle ? "lock" : side.bundle.isArchive ? "archive" : "folder",
    updateSince: updateOf(side.lock)?.since ?? null,
  };
}

function setDiff(a: string[], b: string[]): { added: string[]; removed: string[] } {
  return {
    added: b.filter((x) => !a.includes(x)).sort(),
    removed: a.filter((x) => !b.includes(x)).sort(),
  };
}

const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);

/** Items matched by key; an item on both sides is changed when one of `fields` differs. */
function diffBy<T extends object>(olds: T[], news: T[], key: (x: T) => string, fields: (keyof T)[]) {
  const oldBy = new Map(olds.map((x) => [key(x), x]));
  const newBy = new Map(news.map((x) => [key(x), x]));
  const changed: ItemChange[] = [];
  for (const [k, n] of newBy) {
    const o = oldBy.get(k);
    if (!o) continue;
    const diff = fields.filter((f) => !same(o[f], n[f]));
    if (diff.length > 0)
      changed.push({ key: k, fields: Object.fromEntries(diff.map((f) => [f, { old: o[f], new: n[f] }])) });
  }
  const byKey = (x: T, y: T) => key(x).localeCompare(key(y));
  return {
    added: news.filter((x) => !oldBy.has(key(x))).sort(byKey),
    removed: olds.filter((x) => !newBy.has(key(x))).sort(byKey),
    changed: changed.sort((x, y) => x.key.localeCompare(y.key)),
  };
}

function referrerSummaries(lock: Lock): ReferrerSummary[] {
  return lock.images.flatMap((img) =>
    (img.referrers ?? []).map((r) => ({
      image: img.ref,
      kind: r.tag ?? r.artifactType ?? r.mediaType,
      subject: r.subject,
      digest: r.digest,
    })),
  );
}

/** A cosign tag names one artifact, re-signing changes its digest; an OCI referrer is its digest. */
const referrerKey = (r: ReferrerSummary) =>
  `${r.image} ${r.kind.startsWith("sha256-") ? r.kind : `${r.digest} (${r.kind})`}`;

const imageSummary = (i: LockImage): ImageSummary => ({
  ref: i.ref,
  mirror: i.mirror,
  digest: i.digest,
  platforms: i.platforms.map((p) => ({ platform: p.platform, digest: p.digest })),
});

/**
 * Images matched by source reference: other content is a change (top digest or a platform's),
 * the same content under another mirror name a retag. An image gone under one reference whose
 * digest reappears under another is a retag too, not a removal and an addition.
 */
function diffImages(olds: LockImage[], news: LockImage[]): DiffReport["images"] {
  const oldBy = new Map(olds.map((i) => [i.ref, i]));
  const newRefs = new Set(news.map((i) => i.ref));
  const changed: ImageChange[] = [];
  const retagged: ImageRetag[] = [];
  for (const n of news) {
    const o = oldBy.get(n.ref);
    if (!o) continue;
    const change = imageChange(o, n);
    if (change) changed.push(change);
    else if (o.mirror !== n.mirror) retagged.push(retag(o, n));
  }
  const removed = olds.filter((i) => !newRefs.has(i.ref));
  const added = news.filter((i) => !oldBy.has(i.ref));
  for (const o of [...removed]) {
    const n = added.find((x) => x.digest === o.digest);
    if (!n) continue;
    retagged.push(retag(o, n));
    removed.splice(removed.indexOf(o), 1);
    added.splice(added.indexOf(n), 1);
  }
  const byRef = (x: { ref: string }, y: { ref: string }) => x.ref.localeCompare(y.ref);
  return {
    added: added.map(imageSummary).sort(byRef),
    removed: removed.map(imageSummary).sort(byRef),
    retagged: retagged.sort((x, y) => x.old.ref.localeCompare(y.old.ref)),
    changed: changed.sort(byRef),
  };
}

function retag(o: LockImage, n: LockImage): ImageRetag {
  return { digest: n.digest, old: { ref: o.ref, mirror: o.mirror }, new: { ref: n.ref, mirror: n.mirror } };
}

function imageChange(o: LockImage, n: LockImage): ImageChange | undefined {
  const oldP = new Map(o.platforms.map((p) => [p.platform, p.digest]));
  const newP = new Map(n.platforms.map((p) => [p.platform, p.digest]));
  const pick = (m: Map<string, string>, other: Map<string, string>) =>
    [...m].filter(([p]) => !other.has(p)).map(([platform, digest]) => ({ platform, digest }));
  const platforms = {
    added: pick(newP, oldP),
    removed: pick(oldP, newP),
    changed: [...newP]
      .filter(([p, d]) => oldP.has(p) && oldP.get(p) !== d)
      .map(([platform, d]) => ({ platform, old: oldP.get(platform) ?? "", new: d })),
  };
  const platformsSame = !platforms.added.length && !platforms.removed.length && !platforms.changed.length;
  if (o.digest === n.digest && platformsSame) return undefined;
  return {
    ref: n.ref,
    old: { digest: o.digest, mirror: o.mirror },
    new: { digest: n.digest, mirror: n.mirror },
    platforms,
  };
}

/** Charts by name: their files by path and sha256, and the version when Chart.yaml changed. */
async function diffCharts(oldSide: DiffSide, newSide: DiffSide): Promise<DiffReport["charts"]> {
  const newBy = new Map(newSide.lock.charts.map((c) => [c.name, c]));
  const changed: ChartChange[] = [];
  for (const o of oldSide.lock.charts) {
    const n = newBy.get(o.name);
    if (!n) continue;
    const files = chartFiles(o, n);
    const archive =
      o.archive?.sha256 !== n.archive?.sha256 ? { old: o.archive?.sha256, new: n.archive?.sha256 } : null;
    if (!files.added.length && !files.removed.length && !files.changed.length && !archive) continue;
    // Each side's Chart.yaml; a lock file has none, but a lock may record the version.
    const fromYaml = files.changed.includes("Chart.yaml")
      ? await chartVersions(oldSide, newSide, o.name)
      : undefined;
    const fromLock = o.version !== n.version ? { old: o.version, new: n.version } : undefined;
    const version = fromYaml ?? fromLock ?? null;
    changed.push({ name: o.name, version, files, ...(archive ? { archive } : {}) });
  }
  const names = setDiff(
    oldSide.lock.charts.map((c) => c.name),
    newSide.lock.charts.map((c) => c.name),
  );
  return { ...names, changed: changed.sort((x, y) => x.name.localeCompare(y.name)) };
}

function chartFiles(o: LockChart, n: LockChart): ChartChange["files"] {
  const d = diffBy(o.files ?? [], n.files ?? [], (f) => f.path, ["sha256", "size", "mode"]);
  return {
    added: d.added.map((f) => f.path),
    removed: d.removed.map((f) => f.path),
    changed: d.changed.map((c) => c.key),
  };
}

async function chartVersions(a: DiffSide, b: DiffSide, name: string): Promise<FieldChange | undefined> {
  const version = async (side: DiffSide) => {
    const rel = `charts/${name}/Chart.yaml`;
    const text = await smallFile(side, rel);
    return text === undefined
      ? undefined
      : parseChartFile("Chart.yaml", text, { where: `${side.where}/${rel}` }).version;
  };
  const [old, next] = [await version(a), await version(b)];
  return old !== undefined && next !== undefined && old !== next ? { old, new: next } : undefined;
}

/** A small file of a side's bundle as text; undefined for a lock file or a file it lacks. */
async function smallFile(side: DiffSide, rel: string): Promise<string | undefined> {
  const info = await side.bundle?.stat(rel);
  if (!side.bundle || !info || info.size > MAX_SMALL_FILE) return undefined;
  return (await side.bundle.readFile(rel)).toString("utf8");
}

/** Template values by key (the values themselves stay unprinted), and the site values to bind. */
async function diffValues(a: DiffSide, b: DiffSide): Promise<DiffReport["values"]> {
  const siteValues = setDiff(a.lock.siteValues, b.lock.siteValues);
  const [old, next] = [await valuesOf(a), await valuesOf(b)];
  if (!old || !next) return { compared: false, added: [], removed: [], changed: [], siteValues };
  const keys = setDiff(Object.keys(old), Object.keys(next));
  const changed = Object.keys(next)
    .filter((k) => k in old && !same(old[k], next[k]))
    .sort();
  return { compared: true, ...keys, changed, siteValues };
}

async function valuesOf(side: DiffSide): Promise<Record<string, unknown> | undefined> {
  const text = await smallFile(side, side.lock.values);
  if (text === undefined) return undefined;
  try {
    const data: unknown = JSON.parse(text);
    return data !== null && typeof data === "object" ? (data as Record<string, unknown>) : undefined;
  } catch {
    throw new InputError(`${side.where}: ${side.lock.values} is not valid JSON`);
  }
}

/** `2 images changed`, … for each kind and way that has any: empty when the bundles are equal. */
export function countChanges(r: Omit<DiffReport, "equal">): string[] {
  const out: string[] = [];
  const count = (n: number, word: string, how: string) => {
    if (n > 0) out.push(`${plural(n, word)} ${how}`);
  };
  if (r.bundle.name) out.push("bundle name changed");
  count(r.bundle.platforms.added.length + r.bundle.platforms.removed.length, "bundle platform", "changed");
  for (const [word, d] of [
    ["image", r.images],
    ["referrer", r.referrers],
    ["git archive", r.git],
    ["file", r.files],
    ["npm archive", r.npm],
    ["chart", r.charts],
    ["release", r.releases],
    ["template", r.templates],
  ] as const) {
    count(d.added.length, word, "added");
    count(d.removed.length, word, "removed");
    if ("retagged" in d) count(d.retagged.length, word, "retagged");
    count(d.changed.length, word, "changed");
  }
  const v = r.values;
  count(v.added.length + v.removed.length + v.changed.length, "template value", "changed");
  count(v.siteValues.added.length + v.siteValues.removed.length, "site value", "changed");
  return out;
}

/** Human output: one section per kind that changed, short digests, then the count of changes. */
export function formatDiff(r: DiffReport): string[] {
  const side = (label: string, s: SideSummary) =>
    `${label} ${s.where} (${s.kind}, bundle ${s.name}` +
    (s.updateSince ? `, an update bundle after lock sha256 ${s.updateSince.slice(0, 12)})` : ")");
  const lines = [side("old", r.old), side("new", r.new)];
  const section = (title: string, rows: string[]) => {
    if (rows.length > 0) lines.push("", title, ...rows.map((l) => `  ${l}`));
  };
  section("bundle", bundleLines(r.bundle));
  section("images", imageLines(r.images));
  section(
    "referrers",
    kindLines(
      r.referrers,
      (x) => `${referrerKey(x)}  of ${shortDigest(x.subject)}  ${shortDigest(x.digest)}`,
    ),
  );
  section(
    "git archives",
    kindLines(r.git, (g) => `${g.archive}  ${g.url}  commit ${g.commit.slice(0, 12)}`),
  );
  section(
    "files",
    kindLines(r.files, (f) => `${f.path}  ${formatBytes(f.size)}  sha256 ${f.sha256.slice(0, 12)}`),
  );
  section(
    "npm archives",
    kindLines(r.npm, (n) => `${n.path}  ${formatBytes(n.size)}  for ${n.git}`),
  );
  section("charts", chartLines(r.charts));
  section(
    "releases",
    kindLines(r.releases, (x) => `${x.name}  chart ${x.chart}  namespace ${x.namespace}`),
  );
  section(
    "templates",
    kindLines(r.templates, (t) => `${t.dest}  sha256 ${t.sha256.slice(0, 12)}`),
  );
  section("values", valueLines(r.values));
  const counts = countChanges(r);
  lines.push("", counts.length ? counts.join(", ") : "no differences");
  return lines;
}

function bundleLines(b: DiffReport["bundle"]): string[] {
  return [
    ...(b.name ? [`name ${String(b.name.old)} → ${String(b.name.new)}`] : []),
    ...b.platforms.added.map((p) => `platform added    ${p}`),
    ...b.platforms.removed.map((p) => `platform removed  ${p}`),
  ];
}

function imageLines(d: DiffReport["images"]): string[] {
  const one = (i: ImageSummary) =>
    `${i.ref}  ${shortDigest(i.digest)}  ${i.platforms.map((p) => p.platform).join(",") || "-"}  → ${i.mirror}`;
  const mirror = (c: ImageChange) =>
    c.old.mirror === c.new.mirror ? c.new.mirror : `${c.old.mirror} → ${c.new.mirror}`;
  return [
    ...d.added.map((i) => `added     ${one(i)}`),
    ...d.removed.map((i) => `removed   ${one(i)}`),
    ...d.retagged.map(
      (x) =>
        `retagged  ${shortDigest(x.digest)}  ${x.old.ref} (${x.old.mirror}) → ${x.new.ref} (${x.new.mirror})`,
    ),
    ...d.changed.flatMap((c) => [
      `changed   ${c.ref} (${mirror(c)})  ${shortDigest(c.old.digest)} → ${shortDigest(c.new.digest)}`,
      ...c.platforms.changed.map(
        (p) => `            ${p.platform}  ${shortDigest(p.old)} → ${shortDigest(p.new)}`,
      ),
      ...c.platforms.added.map((p) => `            ${p.platform}  added ${shortDigest(p.digest)}`),
      ...c.platforms.removed.map((p) => `            ${p.platform}  removed (was ${shortDigest(p.digest)})`),
    ]),
  ];
}

function kindLines<T>(d: KindDiff<T>, one: (x: T) => string): string[] {
  return [
    ...d.added.map((x) => `added    ${one(x)}`),
    ...d.removed.map((x) => `removed  ${one(x)}`),
    ...d.changed.map(
      (c) =>
        `changed  ${c.key}  ` +
        Object.entries(c.fields)
          .map(([f, v]) => `${f} ${showValue(f, v.old)} → ${showValue(f, v.new)}`)
          .join(", "),
    ),
  ];
}

/** A field's value, short: hashes and commits to 12 hex digits, sizes in bytes, lists joined. */
function showValue(field: string, v: unknown): string {
  if (v === undefined) return "(none)";
  if (field === "size" && typeof v === "number") return formatBytes(v);
  if (field === "mode" && typeof v === "number") return v.toString(8);
  if (typeof v === "string" && /^(sha256|commit|key)$/.test(field)) return v.slice(0, 12);
  if (Array.isArray(v)) return v.every((x) => typeof x === "string") ? v.join(",") || "(none)" : "(other)";
  return typeof v === "string" || typeof v === "number" ? String(v) : JSON.stringify(v);
}

function chartLines(d: DiffReport["charts"]): string[] {
  return [
    ...d.added.map((c) => `added    ${c}`),
    ...d.removed.map((c) => `removed  ${c}`),
    ...d.changed.flatMap((c) => [
      `changed  ${c.name}` +
        (c.version ? `  version ${String(c.version.old)} → ${String(c.version.new)}` : "") +
        (c.archive
          ? `  archive ${showValue("sha256", c.archive.old)} → ${showValue("sha256", c.archive.new)}`
          : ""),
      ...c.files.added.map((f) => `           added    ${f}`),
      ...c.files.removed.map((f) => `           removed  ${f}`),
      ...c.files.changed.map((f) => `           changed  ${f}`),
    ]),
  ];
}

function valueLines(v: DiffReport["values"]): string[] {
  return [
    ...(v.compared ? [] : ["template values not compared: a side is a lock file, which holds none"]),
    ...v.added.map((k) => `added    ${k}`),
    ...v.removed.map((k) => `removed  ${k}`),
    ...v.changed.map((k) => `changed  ${k}`),
    ...v.siteValues.added.map((k) => `site value to bind added    ${k}`),
    ...v.siteValues.removed.map((k) => `site value to bind removed  ${k}`),
  ];
}
