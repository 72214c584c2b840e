/**
 * `bundle audit DIR`: everything in a prepared bundle that would still reach outside the site at
 * install time — images neither on the site registry nor pointed at their mirror, `git clone`s,
 * downloads, package installs. It reads what the install runs: the charts (with the overlays
 * prepare wrote), the templates still to render (rendered with the bundle's values and the
 * site's), and the text files under files/ (not archives: the source code inside them is full of
 * URLs that nothing fetches at install time).
 */
import path from "node:path";
import type { Lock } from "../bundle/lock.js";
import type { BundleContents } from "../bundle/contents.js";
import { parseDestPath, type Values } from "../config/model.js";
import { mergeValues, siteValues } from "../config/values.js";
import { renderTemplate } from "../templates/render.js";
import { InputError } from "../util/errors.js";
import {
  ImageJudge,
  parseValuesFile,
  registryNameOf,
  type ValuePath,
  type ValuesFile,
} from "./references.js";
import { scanText, styleOf, type FindingKind, type LineFinding } from "./scan.js";
import { makeSite, type Site } from "./site.js";

export { PLACEHOLDER_FILESERVER, PLACEHOLDER_REGISTRY } from "./site.js";
export type { FindingKind } from "./scan.js";

export interface AuditFinding {
  kind: FindingKind;
  /** Bundle-relative path: `charts/openwhisk/templates/grafana.yaml`, `templates/files/override-values.yml`. */
  file: string;
  /** 1-based; in a template still to render, the line of its rendered text; 0 for a rendered object. */
  line: number;
  /** The reference found: an image, a URL, a command. */
  text: string;
  why: string;
}

export interface AuditOptions {
  /** The site's registry, `host[:port]` (IMG_REPO); default `site-registry.invalid:5000`. */
  registryHost?: string;
  /** The file server's base URL; default `http://site-fileserver.invalid:8003`. */
  fileserverUrl?: string;
  /** Read the chart files (default); false when the charts were rendered and judged from helm's output. */
  charts?: boolean;
}

/** One text the install uses: a file of the bundle, or a template rendered. */
interface Source {
  /** Where findings point: the bundle file (the stored template for one still to render). */
  file: string;
  /** The bundle path it stands for (a template's destination): decides how it is read. */
  as: string;
  text: string;
}

/** Files larger than this are not scripts or values files. */
const MAX_TEXT_BYTES = 16 * 1024 * 1024;
/** The audit reports what the bundle holds as it is; judging its bytes against the lock is verify's. */
const UNCHECKED = { check: false };
const ARCHIVE =
  /\.(?:tar|tgz|tbz2?|txz|tar\.(?:gz|bz2|xz|zst)|gz|bz2|xz|zst|zip|7z|jar|war|ear|whl|deb|rpm|apk|gem|crate|nupkg)$/i;
/** Archives `extract: true` unpacks beside themselves (`tools/x.tgz` → `tools/x/…`). */
const EXTRACTED = /\.(?:tar\.gz|tgz|tar)$/i;
/** Documentation and chart metadata: read by people, never fetched by the install. */
const DOCS =
  /^(?:(?:README|CHANGELOG|CHANGES|HISTORY|LICEN[CS]E|NOTICE|COPYING|AUTHORS|CONTRIBUTING|NOTES)(?:\..*)?|.*\.(?:md|markdown|rst|adoc)|Chart\.yaml|Chart\.lock|\.helmignore|\.gitignore|\.gitattributes|\.dockerignore)$/i;
const SKIPPED_DIRS = new Set([".git", ".partial"]);
const VALUES_EXT = /\.(?:ya?ml|json)$/i;
const CHART_DEFAULTS = /^charts\/[^/]+\/values\.ya?ml$/;

/** Everything in the bundle (folder or archive) that would reach outside the site, sorted by file and line. */
export async function auditBundle(bundle: BundleContents, opts: AuditOptions = {}): Promise<AuditFinding[]> {
  const lock = bundle.lock;
  const site = makeSite(opts);
  const judge = new ImageJudge(lock, site);
  const charts = opts.charts ?? true;
  const sources = [
    ...(await renderPending(bundle, site)).filter((s) => charts || !s.as.startsWith("charts/")),
    ...(charts ? await readTree(bundle, "charts", pendingDests(lock)) : []),
    ...(await readTree(bundle, "files", pendingDests(lock))),
  ];

  const parsed = new Map<Source, ValuesFile | undefined>();
  for (const s of sources) {
    const style = styleOf(s.as);
    parsed.set(s, VALUES_EXT.test(s.as) && !style.helm ? parseValuesFile(s.text) : undefined);
  }
  // Values files the file server serves are the releases' overrides: what they set replaces the
  // charts' defaults, so a default they override never reaches the install.
  const overrides = sources
    .filter((s) => s.as.startsWith("files/") && /\.ya?ml$/i.test(s.as))
    .flatMap((s) => parsed.get(s)?.data ?? [])
    .filter(isPlainMap);
  const overrideRegistry = overrides
    .map(registryNameOf)
    .filter((n) => n !== undefined)
    .pop();

  const findings: AuditFinding[] = [];
  const cols = new Map<AuditFinding, number>();
  for (const s of sources) {
    const defaults = CHART_DEFAULTS.test(s.as);
    let values = parsed.get(s);
    if (values && defaults && overrideRegistry !== undefined) {
      values = parseValuesFile(s.text, overrideRegistry);
    }
    const overridden = (p: ValuePath | undefined) =>
      defaults && p !== undefined && overrides.some((o) => setsPath(o, p));

    const found: LineFinding[] = scanText(s.text, styleOf(s.as), { site, ...(values ? {} : { judge }) });
    const kept = found.filter((f) => !overridden(values?.linePaths.get(f.line)));
    for (const c of values?.images ?? []) {
      const why = judge.judge(c.text);
      if (why && !overridden(c.path))
        kept.push({ kind: "image", line: c.line, col: c.col, text: c.text, why });
    }
    for (const f of kept) {
      const finding: AuditFinding = { kind: f.kind, file: s.file, line: f.line, text: f.text, why: f.why };
      findings.push(finding);
      cols.set(finding, f.col);
    }
  }
  return sortUnique(findings, cols);
}

/** Findings as lines for a terminal: `file:line kind text` and the reason under it. */
export function formatAuditFindings(findings: AuditFinding[]): string {
  return findings
    .map((f) => `${f.file}${f.line > 0 ? `:${f.line}` : ""} ${f.kind} ${f.text}\n    ${f.why}\n`)
    .join("");
}

function sortUnique(findings: AuditFinding[], cols: Map<AuditFinding, number>): AuditFinding[] {
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const sorted = [...findings].sort(
    (a, b) =>
      cmp(a.file, b.file) ||
      a.line - b.line ||
      (cols.get(a) ?? 0) - (cols.get(b) ?? 0) ||
      cmp(a.kind, b.kind) ||
      cmp(a.text, b.text),
  );
  const seen = new Set<string>();
  return sorted.filter((f) => {
    const key = JSON.stringify([f.file, f.line, f.kind, f.text]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Bundle paths that a template still to render will replace: their current bytes never run. */
function pendingDests(lock: Lock): Set<string> {
  return new Set(lock.templates.map((t) => t.dest));
}

/** Templates still to render, rendered as upload and deploy would: the bundle's values, then the site's. */
async function renderPending(bundle: BundleContents, site: Site): Promise<Source[]> {
  const lock = bundle.lock;
  if (lock.templates.length === 0) return [];
  const recorded = (await bundle.stat(lock.values))
    ? (JSON.parse((await bundle.readFile(lock.values, UNCHECKED)).toString("utf8")) as Values)
    : {};
  const values = mergeValues(
    recorded,
    siteValues({ bundleName: lock.name, registryHost: site.registryHost, fileserverUrl: site.fileserverUrl }),
  );
  const out: Source[] = [];
  for (const t of lock.templates) {
    let text: string;
    try {
      text = (await bundle.readFile(t.source, UNCHECKED)).toString("utf8");
    } catch {
      throw new InputError(`${t.source}: the template for ${t.dest} is missing from ${bundle.where}`);
    }
    const rendered = renderTemplate(
      { syntax: t.syntax, text, origin: t.origin, dest: parseDestPath(t.dest) },
      values,
    );
    out.push({ file: t.source, as: t.dest, text: rendered });
  }
  return out;
}

/** The text files under `top` (charts or files), minus archives, what they unpacked to, docs and binaries. */
async function readTree(bundle: BundleContents, top: string, replaced: Set<string>): Promise<Source[]> {
  const rels = (await bundle.list(top)).filter((r) => !r.split("/").some((s) => SKIPPED_DIRS.has(s)));
  const extractedDirs = rels.filter((r) => EXTRACTED.test(r)).map((r) => `${r.replace(EXTRACTED, "")}/`);
  const out: Source[] = [];
  for (const rel of rels) {
    if (replaced.has(rel) || ARCHIVE.test(rel) || DOCS.test(path.posix.basename(rel))) continue;
    if (top === "files" && extractedDirs.some((d) => rel.startsWith(d))) continue;
    const size = (await bundle.stat(rel))?.size ?? 0;
    if (size > MAX_TEXT_BYTES) continue;
    const buf = await bundle.readFile(rel, UNCHECKED);
    if (buf.length > MAX_TEXT_BYTES || buf.subarray(0, 8192).includes(0)) continue;
    out.push({ file: rel, as: rel, text: buf.toString("utf8") });
  }
  return out;
}

function isPlainMap(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Whether a values document sets `p` for the chart: it reaches `p`, or it sets something that is
 * not a map on the way (a list or a scalar replaces the default wholesale; null deletes it).
 */
function setsPath(doc: Record<string, unknown>, p: ValuePath): boolean {
  let cur: unknown = doc;
  for (let i = 0; i < p.length; i++) {
    if (!isPlainMap(cur)) return i > 0;
    const key = p[i];
    if (typeof key !== "string" || !Object.hasOwn(cur, key)) return false;
    cur = cur[key];
  }
  return true;
}
