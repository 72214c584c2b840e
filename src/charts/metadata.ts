/**
 * A chart's Chart.yaml as Helm reads it: its name and version (what a chart archive and its OCI
 * artifact are named by), and the metadata as the JSON `helm push` stores as the artifact's
 * config. Read with YAML's failsafe schema, so `version: 1.10` stays "1.10" and is not a number.
 */
import { parse as parseYaml } from "yaml";

/** Chart.yaml is small; a bigger one is not what Helm writes. */
export const MAX_CHART_YAML = 1 << 20;

/** Masterminds semver (Helm's): `1`, `1.2`, `v1.2.3`, with pre-release and build parts. */
const SEMVER =
  /^v?\d+(\.\d+)?(\.\d+)?(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/;
/** Helm refuses a name that is not one path segment. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

export type ChartYaml = Record<string, unknown>;

/** The parsed Chart.yaml with its name and version, or why it has no usable name or version. */
export type ChartMeta =
  { ok: true; meta: ChartYaml; name: string; version: string } | { ok: false; why: string };

export function readChartYaml(text: string): ChartMeta {
  let doc: unknown;
  try {
    doc = parseYaml(text, { schema: "failsafe" });
  } catch (err) {
    return { ok: false, why: `it is not valid YAML (${(err as Error).message.split("\n")[0]})` };
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc))
    return { ok: false, why: "it is not a YAML mapping" };
  const meta = doc as ChartYaml;
  const { name, version } = meta;
  if (typeof name !== "string" || !NAME.test(name))
    return { ok: false, why: `its name ${JSON.stringify(name ?? null)} is not a chart name` };
  if (typeof version !== "string" || !SEMVER.test(version))
    return { ok: false, why: `its version ${JSON.stringify(version ?? null)} is not a SemVer version` };
  return { ok: true, meta, name, version };
}

/**
 * The metadata as `helm push` writes the config blob: Go's JSON of Helm's `chart.Metadata`,
 * fields in its order, empty ones left out; so the same Chart.yaml always gives the same bytes.
 */
export function helmConfig(meta: ChartYaml): Buffer {
  const out: Record<string, unknown> = {};
  for (const [key, kind] of METADATA) {
    const v = field(meta[key], kind);
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
