/**
 * Schema validation that speaks to people: ajv finds the problems, this module turns each
 * into one sentence at the right line, with a did-you-mean for misspelt keys.
 */
import type { ErrorObject } from "ajv";
import leven from "leven";
import type { Diagnostic } from "../util/errors.js";
import { formatPath, type KeyPath, type YamlSource } from "./yamlSource.js";
import { redactUrlPassword } from "./gitUrl.js";

import type { Validator } from "../util/schema.js";

export type { Validator };

export function validate(fn: Validator, src: YamlSource, data: unknown): Diagnostic[] {
  if (fn(data)) return [];
  return diagnostics(pruneUnionNoise(fn.errors ?? []), src);
}

/**
 * Validates, and says whether the loader can go on: when the only problems are unknown keys,
 * `usable` is the data without them, so the loader's own checks run too and every problem of
 * the definition is reported in one go. Any other schema problem leaves `usable` undefined.
 */
export function validateLenient(
  fn: Validator,
  src: YamlSource,
  data: unknown,
): { problems: Diagnostic[]; usable?: unknown } {
  if (fn(data)) return { problems: [], usable: data };
  const errors = pruneUnionNoise(fn.errors ?? []);
  const problems = diagnostics(errors, src);
  if (!errors.every((e) => e.keyword === "additionalProperties")) return { problems };
  const usable = structuredClone(data);
  for (const e of errors) {
    const parent = toKeyPath(e.instancePath).reduce<unknown>(
      (node, k) => (node as Record<string | number, unknown>)?.[k],
      usable,
    );
    if (parent && typeof parent === "object")
      delete (parent as Record<string, unknown>)[e.params.additionalProperty as string];
  }
  return fn(usable) ? { problems, usable } : { problems };
}

function diagnostics(errors: ErrorObject[], src: YamlSource): Diagnostic[] {
  const seen = new Set<string>();
  const out: Diagnostic[] = [];
  for (const e of errors) {
    const d = describe(e, src);
    const key = `${d.path}\0${d.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(d);
    }
  }
  return out.sort((a, b) => a.pos.line - b.pos.line || a.pos.col - b.pos.col);
}

/**
 * For `anyOf`, ajv reports every branch's complaint. Keep the complaints of the branch whose
 * type matches the data (an object's unknown key, not "must be string"); when no branch
 * matched even by type, keep only the anyOf itself.
 */
function pruneUnionNoise(errors: ErrorObject[]): ErrorObject[] {
  const unions = errors.filter((e) => e.keyword === "anyOf");
  let kept = errors;
  for (const u of unions) {
    const under = kept.filter((e) => e !== u && isWithin(e, u));
    const typed = under.filter((e) => !(e.instancePath === u.instancePath && isTypeMismatch(e)));
    kept = kept.filter((e) => !under.includes(e) || typed.includes(e));
    if (typed.length > 0) kept = kept.filter((e) => e !== u);
  }
  return kept;
}

function isWithin(e: ErrorObject, union: ErrorObject): boolean {
  return e.schemaPath.startsWith(union.schemaPath + "/") && e.instancePath.startsWith(union.instancePath);
}

function isTypeMismatch(e: ErrorObject): boolean {
  return e.keyword === "type" || e.keyword === "const" || e.keyword === "anyOf";
}

function toKeyPath(instancePath: string): (string | number)[] {
  if (instancePath === "") return [];
  return instancePath
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function describe(e: ErrorObject, src: YamlSource): Diagnostic {
  const path = toKeyPath(e.instancePath);
  const at = (p: KeyPath, message: string): Diagnostic => src.diag(p, message);
  switch (e.keyword) {
    case "additionalProperties": {
      const key = String(e.params.additionalProperty);
      const known = Object.keys((e.parentSchema?.properties as object | undefined) ?? {});
      return {
        pos: src.keyPos(path, key),
        path: formatPath([...path, key]),
        message: `unknown key "${key}"${didYouMean(key, known)}; allowed: ${known.join(", ")}`,
      };
    }
    case "required":
      return at(path, `missing required key "${String(e.params.missingProperty)}"`);
    case "type":
      return at(path, `expected ${article(String(e.params.type))}, got ${show(e.data)}`);
    case "pattern":
    case "format":
      return at(path, `expected ${describeSchema(e.parentSchema)}, got ${show(e.data)}`);
    case "anyOf":
      return at(path, `expected ${describeSchema(e.parentSchema)}, got ${show(e.data)}`);
    case "minItems":
    case "minLength":
      return at(path, `must not be empty`);
    default:
      return at(path, `${e.message ?? "is not valid"}, got ${show(e.data)}`);
  }
}

function describeSchema(schema: unknown): string {
  const s = schema as {
    description?: string;
    anyOf?: unknown[];
    const?: unknown;
    type?: string;
    pattern?: string;
  };
  if (s?.description) return s.description;
  if (s?.anyOf) {
    const consts = s.anyOf.map((b) => (b as { const?: unknown }).const);
    if (consts.every((c) => c !== undefined))
      return `one of ${consts.map((c) => JSON.stringify(c)).join(", ")}`;
    return s.anyOf.map(describeSchema).join(" or ");
  }
  if (s?.pattern) return `a value matching ${s.pattern}`;
  if (s?.type) return article(s.type);
  return "another value";
}

function didYouMean(key: string, known: string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = leven(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean "${best}"?)` : "";
}

function article(type: string): string {
  const names: Record<string, string> = { object: "a map", array: "a list", integer: "a whole number" };
  return names[type] ?? (/^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`);
}

export function show(v: unknown): string {
  if (v === null || v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a map";
  // Quoted input may be a URL with a password in it.
  const s = JSON.stringify(typeof v === "string" ? redactUrlPassword(v) : v);
  return s.length > 80 ? `${s.slice(0, 77)}..."` : s;
}
