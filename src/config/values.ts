/**
 * Template values in layers: the definition's, then `--values FILE`, then `--set KEY=VALUE`,
 * then (at upload and deploy only) the site values from `--registry` and `--fileserver`.
 */
import { InputError } from "../util/errors.js";
import { SITE_VALUES, type SiteValueName, type Value, type Values } from "./model.js";
import { YamlSource } from "./yamlSource.js";

export function isSiteValue(name: string): name is SiteValueName {
  return (SITE_VALUES as readonly string[]).includes(name);
}

/** Deep merge: maps merge key by key, anything else is replaced. */
export function mergeValues(base: Values, over: Values): Values {
  const out: Values = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const prev = out[k];
    out[k] = isMap(prev) && isMap(v) ? mergeValues(prev, v) : v;
  }
  return out;
}

function isMap(v: Value | undefined): v is Values {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `a.b=c` → `{ a: { b: "c" } }`. Values stay strings, as with `helm --set-string`. */
export function parseSet(assignment: string): Values {
  const eq = assignment.indexOf("=");
  const key = eq > 0 ? assignment.slice(0, eq) : "";
  if (!key || key.split(".").some((p) => p === "")) {
    throw new InputError(`--set ${assignment}: expected KEY=VALUE, e.g. --set ingress_ip=10.0.0.5`);
  }
  const parts = key.split(".").reverse();
  let v: Value = assignment.slice(eq + 1);
  for (const p of parts) v = { [p]: v };
  return v as Values;
}

export async function loadValuesFile(file: string): Promise<Values> {
  const src = await YamlSource.load(file);
  const data = src.data();
  if (data === null || data === undefined) return {};
  if (!isMap(data as Value))
    throw new InputError(`${file}:1:1 --values: expected a map of values at the top`);
  return data as Values;
}

export interface ValueOptions {
  valuesFiles?: string[];
  set?: string[];
}

/** Applies `--values` files in order, then every `--set`. */
export async function applyValueOptions(values: Values, opts: ValueOptions): Promise<Values> {
  let out = values;
  for (const f of opts.valuesFiles ?? []) out = mergeValues(out, await loadValuesFile(f));
  for (const s of opts.set ?? []) out = mergeValues(out, parseSet(s));
  return out;
}

/** Looks up a dotted name: `whisk.ingress.apiHostName`. */
export function lookup(values: Values, name: string): Value | undefined {
  if (Object.hasOwn(values, name)) return values[name];
  let cur: Value | undefined = values;
  for (const part of name.split(".")) {
    if (!isMap(cur ?? null)) return undefined;
    cur = (cur as Values)[part];
  }
  return cur;
}

/** The site values, from where upload and deploy send things: the registry and the file server. */
export function siteValues(opts: {
  registryHost?: string;
  fileserverUrl?: string;
  bundleName: string;
}): Values {
  const out: Values = {};
  if (opts.registryHost) out.IMG_REPO = opts.registryHost;
  if (opts.fileserverUrl) {
    const url = new URL(opts.fileserverUrl);
    out.MAIN_NODE_IP = url.hostname.replace(/^\[|\]$/g, "");
    out.FILESERVER_URL = `${url.toString().replace(/\/+$/, "")}/${encodeURIComponent(opts.bundleName)}`;
  }
  return out;
}
