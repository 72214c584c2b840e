/**
 * The one parser of each file a bundle holds: `bundle.lock.json` and an archive's
 * `bundle-index.json`, checked against their schemas (src/bundle/schema.ts) by ajv's standalone
 * code, then for what one field says about another. A bad value is an InputError naming the
 * file, the field and the value.
 */
import type { ErrorObject } from "ajv";
import { schemaValidator } from "../config/schemaFiles.js";
import { InputError } from "../util/errors.js";
import type { ArchiveIndex } from "./archive.js";
import type { Lock } from "./lock.js";
import type { BundleFileSchema } from "./schema.js";

/** `/releases/0/name` → `releases[0].name`. */
function fieldPath(instancePath: string, extra?: string): string {
  const parts = instancePath === "" ? [] : instancePath.slice(1).split("/");
  if (extra !== undefined) parts.push(extra);
  return parts
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((out, s) => (/^\d+$/.test(s) ? `${out}[${s}]` : out ? `${out}.${s}` : s), "");
}

function show(v: unknown): string {
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (v !== null && typeof v === "object") return "a map";
  const s = JSON.stringify(v);
  return s.length > 120 ? `${s.slice(0, 117)}..."` : s;
}

function expected(e: ErrorObject): string {
  const s = e.parentSchema as { description?: string; const?: unknown; anyOf?: { const?: unknown }[] };
  switch (e.keyword) {
    case "type":
      return (
        { object: "a map", array: "a list", integer: "a whole number" }[String(e.params.type)] ??
        `a ${String(e.params.type)}`
      );
    case "const":
      return JSON.stringify(s.const);
    case "anyOf":
      return `one of ${(s.anyOf ?? []).map((b) => JSON.stringify(b.const)).join(", ")}`;
    default:
      return s.description ?? e.message ?? "another value";
  }
}

function describe(e: ErrorObject): string {
  if (e.keyword === "required")
    return `${fieldPath(e.instancePath, String(e.params.missingProperty))}: missing`;
  const at = fieldPath(e.instancePath) || "(top)";
  return `${at}: expected ${expected(e)}, got ${show(e.data)}`;
}

/** Only the union's own complaint: its branches' each say the same thing less clearly. */
function problems(errors: ErrorObject[]): string[] {
  const unions = errors.filter((e) => e.keyword === "anyOf").map((e) => e.schemaPath);
  const kept = errors.filter((e) => !unions.some((u) => e.schemaPath.startsWith(`${u}/`)));
  return [...new Set(kept.map(describe))];
}

/** Checked by ajv's standalone code generated from the schema: nothing compiles at run time. */
function check<T>(schema: BundleFileSchema, data: unknown, file: string): T {
  const fn = schemaValidator(schema);
  if (fn(data)) return data as T;
  const lines = problems(fn.errors ?? []);
  const shown = lines.slice(0, 10).map((l) => `${file}: ${l}`);
  if (lines.length > 10) shown.push(`${file}: … and ${lines.length - 10} more`);
  throw new InputError(shown.join("\n"));
}

/** A lock's parsed JSON, checked: its fields, then what one field says about another. */
export function checkLockData(data: unknown, file: string): Lock {
  const lock = check<Lock>("bundle-lock.schema.json", data, file);
  for (const [i, c] of lock.charts.entries())
    if (c.path !== `charts/${c.name}`)
      throw new InputError(
        `${file}: charts[${i}].path: expected ${JSON.stringify(`charts/${c.name}`)}, got ${show(c.path)}`,
      );
  for (const t of lock.templates) t.mode &= 0o777;
  for (const c of lock.charts) for (const f of c.files ?? []) f.mode &= 0o777;
  for (const [i, r] of lock.releases.entries())
    for (const [j, v] of r.valuesFiles.entries())
      if (!v.startsWith("files/") && !v.startsWith(`charts/${r.chart}/`))
        throw new InputError(
          `${file}: releases[${i}].valuesFiles[${j}]: expected a path under files/ or charts/${r.chart}/, got ${show(v)}`,
        );
  return lock;
}

/** An archive index's parsed JSON, checked; each member's mode keeps only its permission bits. */
export function checkIndexData(data: unknown, file: string): ArchiveIndex {
  const index = check<ArchiveIndex>("bundle-index.schema.json", data, file);
  for (const m of index.members) m.mode &= 0o777;
  return index;
}
