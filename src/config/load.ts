/**
 * Loading a definition: read the YAML, pick the format by its keys, validate, build the one
 * model, then apply `--values`/`--set` and check that every value a template needs is given.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { DefinitionError, InputError, type Diagnostic } from "../util/errors.js";
import { DEFAULT_DEFINITION } from "./defaults.js";
import { SITE_VALUES, destPath, type Definition } from "./model.js";
import { crossChecks, Problems } from "./build.js";
import { loadNative } from "./native.js";
import { loadTelego, TELEGO_KEYS } from "./telego.js";
import { YamlSource } from "./yamlSource.js";
import { applyValueOptions, isSiteValue, lookup, type ValueOptions } from "./values.js";
import { loadHandlebars, templateVariables } from "../templates/variables.js";

export interface LoadOptions extends ValueOptions {
  /** Overrides the bundle's name (`--name`). */
  name?: string;
  /** Overrides the definition's default platforms (`--platform`); per-image platforms stay. */
  platforms?: string[];
  /** `--allow-outside`: template sources and local charts may lie outside the definition's folder. */
  allowOutside?: boolean;
}

const PLATFORM = /^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/;

/** `--platform linux/amd64,linux/arm64` → its list, or an input error naming the bad entry. */
export function parsePlatformList(list: string): string[] {
  const platforms = list
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  const bad = platforms.find((p) => !PLATFORM.test(p));
  if (bad !== undefined || platforms.length === 0) {
    throw new InputError(
      `--platform ${list}: expected os/arch[/variant] separated by commas, e.g. linux/amd64,linux/arm64`,
    );
  }
  return platforms;
}

export { DEFAULT_DEFINITION };

export async function loadDefinition(file: string, opts: LoadOptions = {}): Promise<Definition> {
  const display = path.relative(process.cwd(), file) || file;
  if (file === DEFAULT_DEFINITION && !existsSync(file)) {
    throw new InputError(
      `no ${DEFAULT_DEFINITION} in this folder (${process.cwd()}): name the definition with -f FILE`,
    );
  }
  const src = await YamlSource.load(file, display);
  const data = src.data();
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new DefinitionError([src.diag([], "expected a map at the top of the definition")]);
  }
  const abs = path.resolve(file);
  const isTelego = TELEGO_KEYS.some((k) => Object.hasOwn(data, k));
  // One round: unknown keys, each item's problems and the checks across items, all together.
  const problems = new Problems(src, opts.allowOutside ?? false);
  const { declaredName, ...rest } = isTelego
    ? await loadTelego(src, abs, data, opts.platforms, problems)
    : await loadNative(src, abs, data, opts.platforms, problems);
  const def: Definition = { ...rest, name: opts.name ?? declaredName ?? path.basename(path.dirname(abs)) };

  for (const key of Object.keys(def.values)) {
    if (isSiteValue(key)) {
      problems.add(
        isTelego ? ["local_values", key] : ["values", key],
        `${key} is a site value, bound from the command line at upload and deploy; remove it here`,
      );
    }
  }
  crossChecks(def, problems);
  if (def.templates.some((t) => t.syntax === "handlebars")) await loadHandlebars();
  const values = applyValueOptions(def.values, opts);
  if (problems.list.length > 0) {
    // Missing values too, which prepare and lint would name only after a fix of the rest.
    const given = await values.catch(() => undefined);
    if (given) problems.list.push(...missingValues({ ...def, values: given }));
    throw new DefinitionError(byPosition(problems.list));
  }
  def.values = await values;
  return def;
}

/** Diagnostics in file order, so one run reads top to bottom (the sort keeps ties in place). */
function byPosition(list: Diagnostic[]): Diagnostic[] {
  return [...list].sort(
    (a, b) => a.pos.file.localeCompare(b.pos.file) || a.pos.line - b.pos.line || a.pos.col - b.pos.col,
  );
}

/**
 * Every value a template uses and nobody gives, named with the line that uses it. Site values
 * count as given: at prepare they are bound later, at upload and deploy they are bound.
 */
export function missingValues(def: Definition): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const t of def.templates) {
    let uses;
    try {
      uses = templateVariables(t, def.values, def.valueOrigins);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      out.push({ pos: t.origin, path: "", message: err.message });
      continue;
    }
    const reported = new Set<string>();
    for (const use of uses) {
      if (isSiteValue(use.name) || lookup(def.values, use.name) !== undefined || reported.has(use.name))
        continue;
      reported.add(use.name); // the first use names the value; the others add nothing
      out.push({
        pos: use.pos,
        path: "",
        message:
          `missing value "${use.name}" (used by the template for ${destPath(t.dest)}); ` +
          `give it in the definition's values, --values FILE or --set ${use.name}=VALUE`,
      });
    }
  }
  return out;
}

/** The site values the templates use, which prepare records as still to bind. */
export function siteValuesUsed(def: Definition): string[] {
  const used = new Set<string>();
  for (const t of def.templates) {
    for (const use of templateVariables(t, def.values, def.valueOrigins)) {
      if (isSiteValue(use.name)) used.add(use.name);
    }
  }
  return SITE_VALUES.filter((v) => used.has(v));
}
