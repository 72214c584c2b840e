/**
 * Checking parsed JSON against a schema, with messages a user can act on: each problem names
 * the file (or URL), the field and the value, e.g. `bundle.lock.json: images: expected a list,
 * got "notalist"`. The validators are ajv's standalone code, generated from the TypeBox schemas
 * (src/bundle/schema.ts, src/oci/schema.ts) by `npm run schema`: no command loads TypeBox or
 * compiles ajv.
 */
import type { ErrorObject } from "ajv";
import type { BundleError } from "./errors.js";

/** A compiled schema: ajv's standalone code (schema/*.validate.cjs). */
export interface Validator {
  (data: unknown): boolean;
  errors?: ErrorObject[] | null;
}

/** What the data schemas are compiled with: `useDefaults` fills a lock's optional lists. */
export const DATA_VALIDATOR_OPTIONS = { allErrors: true, verbose: true, strict: false, useDefaults: true };

/** `/releases/0/name` → `releases[0].name`. */
function fieldPath(instancePath: string, extra?: string): string {
  const parts = instancePath === "" ? [] : instancePath.slice(1).split("/");
  if (extra !== undefined) parts.push(extra);
  return parts
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((out, s) => (/^\d+$/.test(s) ? `${out}[${s}]` : out ? `${out}.${s}` : s), "");
}

/** A value as a message shows it: strings and numbers as JSON (cut at 120), lists and maps by kind. */
export function show(v: unknown): string {
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

/**
 * `data` as `T` when it fits `schema`; otherwise the error `fail` makes of the problems (at most
 * ten lines, each starting with `where`): an InputError for a file the user gave, a WorkError
 * for what a server sent.
 */
export function checkData<T>(
  fn: Validator,
  data: unknown,
  where: string,
  fail: (message: string) => BundleError,
): T {
  if (fn(data)) return data as T;
  const lines = problems(fn.errors ?? []);
  const shown = lines.slice(0, 10).map((l) => `${where}: ${l}`);
  if (lines.length > 10) shown.push(`${where}: … and ${lines.length - 10} more`);
  throw fail(shown.join("\n"));
}
