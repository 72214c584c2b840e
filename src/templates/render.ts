/**
 * Rendering templates: Handlebars in strict mode (a missing value is an error, never an empty
 * string; no HTML escaping: these are values files and scripts), and Telego's `${name}`, which
 * expands values recursively (a `read_from_file` value may itself use `${…}`).
 */
import Handlebars from "handlebars";
import { InputError } from "../util/errors.js";
import type { TemplateItem, Values } from "../config/model.js";
import { destPath } from "../config/model.js";
import { lookup } from "../config/values.js";
import { HELPERS } from "./helpers.js";
import { DOLLAR_VAR } from "./variables.js";

const hbs = Handlebars.create();
for (const [name, fn] of Object.entries(HELPERS)) {
  // Handlebars passes an options object last; our helpers take only the values before it.
  hbs.registerHelper(name, (...args: unknown[]) => fn(...args.slice(0, -1)));
}

export function renderTemplate(
  t: Pick<TemplateItem, "syntax" | "text" | "origin" | "dest">,
  values: Values,
): string {
  return t.syntax === "handlebars" ? renderHandlebars(t, values) : expandDollar(t.text, values, [], t);
}

function renderHandlebars(t: Pick<TemplateItem, "text" | "origin" | "dest">, values: Values): string {
  try {
    return hbs.compile(t.text, { strict: true, noEscape: true })(values);
  } catch (err) {
    const message = String((err as Error).message).split("\n")[0];
    const line = /(\d+):\d+$/.exec(message ?? "")?.[1];
    const at = `${t.origin.file}:${line ? t.origin.line + Number(line) - 1 : t.origin.line}`;
    throw new InputError(`${at} rendering the template for ${destPath(t.dest)}: ${message}`);
  }
}

function expandDollar(
  text: string,
  values: Values,
  expanding: string[],
  t: Pick<TemplateItem, "origin" | "dest">,
): string {
  return text.replace(DOLLAR_VAR, (_match, name: string) => {
    const value = lookup(values, name);
    if (value === undefined || value === null) {
      throw new InputError(
        `${t.origin.file}:${t.origin.line} missing value "${name}" (used by the template for ${destPath(t.dest)})`,
      );
    }
    if (expanding.includes(name)) {
      throw new InputError(`value "${name}" refers to itself through ${[...expanding, name].join(" → ")}`);
    }
    const s =
      typeof value === "string" ? value : typeof value === "object" ? JSON.stringify(value) : String(value);
    return s.includes("${") ? expandDollar(s, values, [...expanding, name], t) : s;
  });
}
