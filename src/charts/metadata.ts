/**
 * The one reader of a chart's Chart.yaml and Chart.lock, for every caller (prepare, packaging,
 * the pushed artifact, image discovery, lint, diff): bounded, parsed with YAML's failsafe schema
 * as Helm reads them (`version: 1.10` stays "1.10"), checked against their schemas
 * (src/charts/schema.ts), every problem at `file:line:col`. Also Chart.yaml's name and version
 * as a chart archive and its OCI artifact are named, and its metadata as the JSON `helm push`
 * stores as the artifact's config.
 */
import { open } from "node:fs/promises";
import { schemaValidator, type SchemaName } from "../config/schemaFiles.js";
import { show, validate } from "../config/validate.js";
import { YamlSource } from "../config/yamlSource.js";
import {
  BundleError,
  DefinitionError,
  formatDiagnostic,
  InputError,
  WorkError,
  type Diagnostic,
} from "../util/errors.js";
import { fsReason } from "../util/files.js";
import { readAll } from "../util/streams.js";
import type { ChartLock, ChartYaml } from "./schema.js";

export type { ChartDependency, ChartLock, ChartYaml } from "./schema.js";

/** Chart.yaml and Chart.lock are small; a bigger one is not what Helm writes. */
export const MAX_CHART_YAML = 1 << 20;

type ChartFile = "Chart.yaml" | "Chart.lock";
interface Parsed {
  "Chart.yaml": ChartYaml;
  "Chart.lock": ChartLock;
}
const SCHEMAS: Record<ChartFile, SchemaName> = {
  "Chart.yaml": "chart-yaml.schema.json",
  "Chart.lock": "chart-lock.schema.json",
};

/**
 * The file as messages name it (`where`), and, for a chart a server sent, where it came from
 * (`from`: its URL, or the chain of charts above it): its problems are then exit 1 starting
 * with `from`; without it the user gave the file, and they are exit 2.
 */
export interface ChartFileAt {
  where: string;
  from?: string;
}

/** The file's text parsed and checked: a DefinitionError (or, with `from`, a WorkError) at its lines. */
export function parseChartFile<K extends ChartFile>(kind: K, text: string, at: ChartFileAt): Parsed[K] {
  let src: YamlSource;
  try {
    src = YamlSource.parse(text, at.where, { failsafe: true });
  } catch (err) {
    throw err instanceof DefinitionError ? failure(at, err.diagnostics) : err;
  }
  const data = withoutNulls(src.data()) ?? {};
  if (!isMap(data))
    throw failure(at, [src.diag([], `expected a map (a ${kind} is keys and values), got ${show(data)}`)]);
  const problems = validate(schemaValidator(SCHEMAS[kind]), src, data);
  if (problems.length > 0) throw failure(at, problems);
  return data as Parsed[K];
}

/** `file` read (at most MAX_CHART_YAML bytes), parsed and checked; undefined when there is no such file. */
export async function readChartFile<K extends ChartFile>(
  kind: K,
  file: string,
  at: ChartFileAt,
): Promise<Parsed[K] | undefined> {
  const fh = await open(file, "r").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw failure(at, `cannot read it: ${fsReason(err)}`);
  });
  if (!fh) return undefined;
  let bytes: Buffer;
  try {
    bytes = await readAll(fh.createReadStream({ end: MAX_CHART_YAML }), MAX_CHART_YAML);
  } catch (err) {
    if (err instanceof BundleError)
      throw failure(at, `larger than ${MAX_CHART_YAML} bytes, not a ${kind} Helm reads`);
    throw failure(at, `cannot read it: ${fsReason(err)}`);
  } finally {
    await fh.close();
  }
  return parseChartFile(kind, bytes.toString("utf8"), at);
}

function failure(at: ChartFileAt, problems: Diagnostic[] | string): BundleError {
  const lines = typeof problems === "string" ? [`${at.where}: ${problems}`] : problems.map(formatDiagnostic);
  if (at.from !== undefined) return new WorkError(lines.map((l) => `${at.from}: ${l}`).join("\n"));
  return typeof problems === "string" ? new InputError(lines.join("\n")) : new DefinitionError(problems);
}

/** A key with no value (null) is a field left empty, as Helm reads it: left out, at every level. */
function withoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (!isMap(v)) return v;
  return Object.fromEntries(
    Object.entries(v)
      .filter(([, x]) => x !== null)
      .map(([k, x]) => [k, withoutNulls(x)]),
  );
}

/** Masterminds semver (Helm's): `1`, `1.2`, `v1.2.3`, with pre-release and build parts. */
const SEMVER =
  /^v?\d+(\.\d+)?(\.\d+)?(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/;
/** Helm refuses a name that is not one path segment. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** The name and version a chart archive and artifact are named by, or why the Chart.yaml has none. */
export type ChartId = { ok: true; name: string; version: string } | { ok: false; why: string };

export function chartId(meta: ChartYaml): ChartId {
  const { name, version } = meta;
  if (name === undefined || !NAME.test(name))
    return { ok: false, why: `its name ${JSON.stringify(name ?? null)} is not a chart name` };
  if (version === undefined || !SEMVER.test(version))
    return { ok: false, why: `its version ${JSON.stringify(version ?? null)} is not a SemVer version` };
  return { ok: true, name, version };
}

/**
 * The metadata as `helm push` writes the config blob: Go's JSON of Helm's `chart.Metadata`,
 * fields in its order, empty ones left out; so the same Chart.yaml always gives the same bytes.
 */
export function helmConfig(meta: ChartYaml): Buffer {
  const out: Record<string, unknown> = {};
  for (const [key, kind] of METADATA) {
    const v = field((meta as Record<string, unknown>)[key], kind);
    if (v !== undefined) out[key] = v;
  }
  return Buffer.from(JSON.stringify(out));
}

type Kind = "string" | "strings" | "bool" | "map" | "maintainers" | "dependencies";

/** Helm's chart.Metadata, field by field, in its JSON order. */
const METADATA: [string, Kind][] = [
  ["name", "string"],
  ["home", "string"],
  ["sources", "strings"],
  ["version", "string"],
  ["description", "string"],
  ["keywords", "strings"],
  ["maintainers", "maintainers"],
  ["icon", "string"],
  ["apiVersion", "string"],
  ["condition", "string"],
  ["tags", "string"],
  ["appVersion", "string"],
  ["deprecated", "bool"],
  ["annotations", "map"],
  ["kubeVersion", "string"],
  ["dependencies", "dependencies"],
  ["type", "string"],
];

function field(v: unknown, kind: Kind): unknown {
  if (v === undefined || v === null) return undefined;
  switch (kind) {
    case "string":
      return typeof v === "string" && v !== "" ? v : undefined;
    case "bool":
      return v === "true" ? true : undefined;
    case "strings":
      return Array.isArray(v) && v.length > 0 ? v.map(String) : undefined;
    case "map":
      return isMap(v) && Object.keys(v).length > 0 ? sortedStrings(v) : undefined;
    case "maintainers":
      return list(v, (m) => pick(m, [["name"], ["email"], ["url"]]));
    case "dependencies":
      return list(v, dependency);
  }
}

function list(v: unknown, each: (m: Record<string, unknown>) => unknown): unknown[] | undefined {
  return Array.isArray(v) && v.length > 0 ? v.filter(isMap).map(each) : undefined;
}

/** Helm's chart.Dependency: `name` and `repository` always there, the rest when set. */
function dependency(d: Record<string, unknown>): Record<string, unknown> {
  return pick(d, [
    ["name", true],
    ["version"],
    ["repository", true],
    ["condition"],
    ["tags"],
    ["enabled"],
    ["import-values"],
    ["alias"],
  ]);
}

function pick(m: Record<string, unknown>, keys: [string, boolean?][]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, always] of keys) {
    const v = m[key];
    if (key === "enabled") {
      if (v === "true") out[key] = true;
    } else if (key === "tags" || key === "import-values") {
      if (Array.isArray(v) && v.length > 0) out[key] = v;
    } else if ((typeof v === "string" && v !== "") || always) out[key] = typeof v === "string" ? v : "";
  }
  return out;
}

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Go writes a map's keys sorted. */
function sortedStrings(m: Record<string, unknown>): Record<string, string> {
  const keys = Object.keys(m).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(keys.map((k) => [k, String(m[k])]));
}
