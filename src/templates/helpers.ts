/**
 * The Handlebars helpers templates may use. Kept small: what values files and scripts need
 * when they are rendered with a site's values.
 */
import { stringify } from "yaml";

export const HELPERS: Record<string, (...args: unknown[]) => unknown> = {
  /** `{{json x}}`: x as JSON. */
  json: (value: unknown) => JSON.stringify(value),
  /** `{{yaml x}}`: x as a YAML block (without a trailing newline). */
  yaml: (value: unknown) => stringify(value).replace(/\n$/, ""),
  /** `{{default x "fallback"}}`: x unless it is missing or empty. */
  default: (value: unknown, fallback: unknown) =>
    value === undefined || value === null || value === "" ? fallback : value,
  /** `{{quote x}}`: x as a double-quoted string, so YAML keeps numbers like 100000 as strings. */
  quote: (value: unknown) => JSON.stringify(String(value)),
  /** `{{indent 4 x}}`: every line of x after the first indented by n spaces. */
  indent: (n: unknown, value: unknown) => String(value).replace(/\n/g, `\n${" ".repeat(Number(n))}`),
};

/** Names that may appear as `{{name …}}` without being values. */
export const BUILTIN_HELPERS = ["if", "unless", "each", "with", "lookup", "log"];

export function isHelper(name: string): boolean {
  return Object.hasOwn(HELPERS, name) || BUILTIN_HELPERS.includes(name);
}
