/**
 * Which values a template needs, and where it uses each: for Handlebars from its syntax tree,
 * for Telego's `${name}` by scanning (following values that are themselves templates, such as
 * a `read_from_file` values file). Lint and prepare use this to name a missing value and the
 * line that uses it, before anything is rendered.
 */
import { createRequire } from "node:module";
import type HandlebarsModule from "handlebars";
import type { SourcePos } from "../util/errors.js";
import { InputError } from "../util/errors.js";
import type { TemplateItem, Values } from "../config/model.js";
import { isHelper } from "./helpers.js";
import { lookup } from "../config/values.js";

export interface VariableUse {
  name: string;
  pos: SourcePos;
}

let handlebars: typeof HandlebarsModule | undefined;

/**
 * Loads Handlebars (~40 ms with source-map) once; the loader calls it only for definitions that
 * have Handlebars templates, so a run without them never loads it.
 */
export async function loadHandlebars(): Promise<void> {
  handlebars ??= (await import("handlebars")).default;
}

/** Handlebars, loaded by loadHandlebars(); a caller that skipped it gets it loaded here. */
function parser(): typeof HandlebarsModule {
  return (handlebars ??= createRequire(import.meta.url)("handlebars") as typeof HandlebarsModule);
}

export const DOLLAR_VAR = /\$\{([A-Za-z0-9_.-]+)\}/g;

export function templateVariables(
  t: Pick<TemplateItem, "syntax" | "text" | "origin">,
  values: Values,
  valueOrigins: Record<string, SourcePos>,
): VariableUse[] {
  return t.syntax === "handlebars"
    ? handlebarsVariables(t.text, t.origin)
    : dollarVariables(t.text, t.origin, values, valueOrigins);
}

/** Offsets a 1-based line within a text that starts at `origin`. */
function at(origin: SourcePos, line: number, col: number): SourcePos {
  return { file: origin.file, line: origin.line + line - 1, col: line === 1 ? origin.col + col - 1 : col };
}

function dollarVariables(
  text: string,
  origin: SourcePos,
  values: Values,
  valueOrigins: Record<string, SourcePos>,
  expanding: string[] = [],
): VariableUse[] {
  const uses: VariableUse[] = [];
  for (const m of text.matchAll(DOLLAR_VAR)) {
    const name = m[1] ?? "";
    const before = text.slice(0, m.index);
    const line = before.split("\n").length;
    const col = m.index - before.lastIndexOf("\n");
    uses.push({ name, pos: at(origin, line, col) });
    const value = lookup(values, name);
    if (typeof value !== "string" || !value.includes("${")) continue;
    if (expanding.includes(name)) {
      throw new InputError(
        `${origin.file}:${line}: value "${name}" refers to itself through ${[...expanding, name].join(" → ")}`,
      );
    }
    const valueOrigin = valueOrigins[name] ?? origin;
    uses.push(...dollarVariables(value, valueOrigin, values, valueOrigins, [...expanding, name]));
  }
  return uses;
}

function handlebarsVariables(text: string, origin: SourcePos): VariableUse[] {
  let ast: hbs.AST.Program;
  try {
    ast = parser().parse(text);
  } catch (err) {
    const m = /line (\d+)/.exec(String((err as Error).message));
    const line = m ? Number(m[1]) : 1;
    const pos = at(origin, line, 1);
    const first = String((err as Error).message).split("\n")[0];
    throw new InputError(`${pos.file}:${pos.line}:${pos.col} template syntax error: ${first}`);
  }
  const uses: VariableUse[] = [];
  walk(ast, origin, uses);
  return uses;
}

/**
 * Collects root-context paths. Inside `#each` and `#with` the context changes, so paths there
 * are relative to an item and are not looked up among the values; their block parameter is.
 */
function walk(node: hbs.AST.Node, origin: SourcePos, uses: VariableUse[]): void {
  const visit = (n: hbs.AST.Node | undefined | null) => n && walk(n, origin, uses);
  const path = (p: hbs.AST.Expression, isCallee: boolean) => {
    if (p.type !== "PathExpression") return visit(p);
    const pe = p as hbs.AST.PathExpression;
    if (pe.data || pe.depth > 0 || pe.parts.length === 0) return;
    if (isCallee && isHelper(pe.parts[0] ?? "")) return;
    uses.push({ name: pe.parts.join("."), pos: at(origin, pe.loc.start.line, pe.loc.start.column + 1) });
  };
  switch (node.type) {
    case "Program":
      (node as hbs.AST.Program).body.forEach(visit);
      return;
    case "MustacheStatement":
    case "SubExpression":
    case "BlockStatement": {
      const s = node as hbs.AST.MustacheStatement | hbs.AST.BlockStatement;
      const isCall =
        s.params.length > 0 || (s.hash?.pairs.length ?? 0) > 0 || node.type !== "MustacheStatement";
      path(s.path, isCall || isHelper(pathHead(s.path)));
      s.params.forEach((p) => path(p, false));
      s.hash?.pairs.forEach((p) => path(p.value, false));
      if (node.type === "BlockStatement") {
        const b = node as hbs.AST.BlockStatement;
        const changesContext = ["each", "with"].includes(pathHead(b.path));
        if (!changesContext) visit(b.program);
        visit(b.inverse);
      }
      return;
    }
    default:
      return;
  }
}

function pathHead(p: hbs.AST.Expression): string {
  return p.type === "PathExpression" ? ((p as hbs.AST.PathExpression).parts[0] ?? "") : "";
}
