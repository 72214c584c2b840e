/**
 * Helm values in layers: the chart's values.yaml, then each override file, merged the way Helm
 * merges them, while remembering which file set each key so a finding can point at the line
 * that decides it (the override that won, not the chart default it replaced).
 */
import { YamlSource, formatPath, type KeyPath } from "../config/yamlSource.js";
import { DefinitionError, type Diagnostic, type SourcePos } from "../util/errors.js";

export type Tree = { [key: string]: unknown };

export function isTree(v: unknown): v is Tree {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Helm's coalescing: maps merge key by key, anything else replaces, and null deletes the key. */
export function mergeValues(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key];
    if (value === null) delete out[key];
    else out[key] = isTree(prev) && isTree(value) ? mergeValues(prev, value) : value;
  }
  return out;
}

export function getIn(node: unknown, path: KeyPath): unknown {
  let cur = node;
  for (const key of path) {
    if (typeof key === "number") cur = Array.isArray(cur) ? cur[key] : undefined;
    else cur = isTree(cur) ? cur[key] : undefined;
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** Sets `value` at `path`, creating maps on the way (override files never need lists). */
export function setIn(root: Tree, path: readonly string[], value: unknown): void {
  let cur = root;
  for (const key of path.slice(0, -1)) {
    const next = cur[key];
    cur = isTree(next) ? next : (cur[key] = {});
  }
  const last = path[path.length - 1];
  if (last !== undefined) cur[last] = value;
}

/** The inverse of formatPath: `a.b[0].c` → `["a", "b", 0, "c"]`. Keys holding dots are not supported. */
export function parsePath(text: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const part of text.split(".")) {
    const m = /^([^[]*)((?:\[\d+\])*)$/.exec(part);
    if (!m) return [...out, part];
    if (m[1]) out.push(m[1]);
    for (const idx of (m[2] ?? "").matchAll(/\[(\d+)\]/g)) out.push(Number(idx[1]));
  }
  return out;
}

/** A deep copy with map keys in code-point order, so JSON and YAML output never depends on insertion. */
export function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (!isTree(v)) return v;
  const out: Tree = {};
  for (const key of Object.keys(v).sort()) out[key] = sortKeys(v[key]);
  return out;
}

export class ValuesStack {
  readonly data: Tree;
  private readonly layers: { src: YamlSource; data: unknown }[];

  constructor(sources: YamlSource[]) {
    this.layers = sources.map((src) => ({ src, data: src.data() }));
    this.data = this.layers.reduce<Tree>((acc, l) => (isTree(l.data) ? mergeValues(acc, l.data) : acc), {});
  }

  /** Parses each file; a YAML syntax error is a DefinitionError at its line, as for definitions. */
  static parse(files: readonly { file: string; text: string }[]): ValuesStack {
    return new ValuesStack(files.map((f) => YamlSource.parse(f.text, f.file)));
  }

  /** Like parse, but returns the syntax errors instead of throwing them (lint reports them all). */
  static tryParse(files: readonly { file: string; text: string }[]): ValuesStack | Diagnostic[] {
    const errors: Diagnostic[] = [];
    const sources: YamlSource[] = [];
    for (const f of files) {
      try {
        sources.push(YamlSource.parse(f.text, f.file));
      } catch (err) {
        if (!(err instanceof DefinitionError)) throw err;
        errors.push(...err.diagnostics);
      }
    }
    return errors.length > 0 ? errors : new ValuesStack(sources);
  }

  get(path: KeyPath): unknown {
    return getIn(this.data, path);
  }

  /** The last file that sets `path` to something other than null: the one whose setting wins. */
  origin(path: KeyPath): YamlSource | undefined {
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const layer = this.layers[i];
      const v = layer && getIn(layer.data, path);
      if (layer && v !== undefined && v !== null) return layer.src;
    }
    return undefined;
  }

  /** Where the key at `path` is written in the file that set it (the first file if none did). */
  keyPos(path: KeyPath): SourcePos {
    const src = this.origin(path) ?? this.layers[0]?.src;
    if (!src) return { file: "", line: 1, col: 1 };
    const last = path[path.length - 1];
    return typeof last === "string" ? src.keyPos(path.slice(0, -1), last) : src.pos(path);
  }

  diag(path: KeyPath, message: string): Diagnostic {
    return { pos: this.keyPos(path), path: formatPath(path), message };
  }
}
