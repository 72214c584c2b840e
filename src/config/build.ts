/**
 * Shared steps of both loaders: turning raw items into model items while collecting every
 * problem as a Diagnostic, and the checks that span items (mirror names, references).
 */
import { access, readFile, realpath } from "node:fs/promises";
import path from "node:path";
import type { Diagnostic, SourcePos } from "../util/errors.js";
import { InputError } from "../util/errors.js";
import { parseImageRef, type ImageRef } from "./imageRef.js";
import { checkMirrorCollisions } from "./mirror.js";
import { destPath, type Definition } from "./model.js";
import type { KeyPath, YamlSource } from "./yamlSource.js";
import { fsReason } from "../util/files.js";
import { isWithin } from "../util/paths.js";

/** What a format's loader builds: the model, less the name, which load.ts settles. */
export type LoadedDefinition = Omit<Definition, "name"> & { declaredName?: string };

/** Collects diagnostics; `try` runs a step and records its InputError instead of throwing. */
export class Problems {
  readonly list: Diagnostic[] = [];
  /** `allowOutside`: the user's `--allow-outside`, letting the definition's paths leave its folder. */
  constructor(
    readonly src: YamlSource,
    readonly allowOutside = false,
  ) {}

  add(path: KeyPath, message: string): void {
    this.list.push(this.src.diag(path, message));
  }

  addAt(pos: SourcePos, message: string): void {
    this.list.push({ pos, path: "", message });
  }

  try<T>(path: KeyPath, fn: () => T): T | undefined {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      this.add(path, err.message);
      return undefined;
    }
  }
}

/** Images from a local Docker daemon use skopeo's transport name, since `docker:` is a Hub image. */
export const DOCKER_DAEMON_PREFIX = "docker-daemon:";

export function parseImage(text: string): { ref: ImageRef; source: "registry" | "docker" } {
  if (text.startsWith(DOCKER_DAEMON_PREFIX)) {
    return { ref: parseImageRef(text.slice(DOCKER_DAEMON_PREFIX.length)), source: "docker" };
  }
  return { ref: parseImageRef(text), source: "registry" };
}

/** `https://github.com/apache/openwhisk.git` → `openwhisk.tar.gz`. */
export function archiveName(url: string): string {
  const trimmed = url.replace(/[/]+$/, "").replace(/\.git$/, "");
  const last = trimmed.split(/[/:]/).pop() ?? "";
  if (!/^[A-Za-z0-9._-]+$/.test(last)) throw new InputError(`cannot name an archive after the URL "${url}"`);
  return `${last}.tar.gz`;
}

/**
 * Parses a file mode written in octal digits: "0644", "755", or 755 as YAML reads it (a
 * decimal number whose digits are the octal ones).
 */
export function parseMode(mode: string | number | undefined, fallback: number): number {
  if (mode === undefined) return fallback;
  const digits = String(mode);
  if (!/^0?[0-7]{3,4}$/.test(digits)) {
    throw new InputError(
      `expected file mode in octal digits, e.g. "0644" or "755", got ${JSON.stringify(mode)}`,
    );
  }
  const bits = Number.parseInt(digits, 8);
  // Refused rather than masked: a definition that asks for setuid gets told, not silently less.
  if (bits & ~0o777)
    throw new InputError(
      `mode ${JSON.stringify(mode)} sets setuid, setgid or sticky bits; a bundle carries permission bits only (e.g. "755")`,
    );
  return bits;
}

/**
 * `rel` (a template source, a values file, a local chart) resolved against the definition's
 * folder `dir`; a path that leads outside it, by `..`, as an absolute path or through a link,
 * is a problem at `at` unless the user gave `--allow-outside`: a definition from elsewhere
 * cannot carry the machine's files into a bundle unasked.
 */
export async function confinedPath(
  problems: Problems,
  dir: string,
  rel: string,
  at: KeyPath,
): Promise<string | undefined> {
  const file = path.resolve(dir, rel);
  if (problems.allowOutside) return file;
  const realDir = await realpath(dir).catch(() => path.resolve(dir));
  const real = await realpath(file).catch(() => path.resolve(realDir, rel));
  if (isWithin(realDir, real)) return file;
  problems.add(
    at,
    `${JSON.stringify(rel)} lies outside the definition's folder ${dir}; give --allow-outside to take it from there`,
  );
  return undefined;
}

export async function readSourceFile(
  problems: Problems,
  dir: string,
  rel: string,
  at: KeyPath,
): Promise<{ text: string; file: string } | undefined> {
  const file = await confinedPath(problems, dir, rel, at);
  if (file === undefined) return undefined;
  try {
    return { text: await readFile(file, "utf8"), file };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problems.add(
      at,
      code === "ENOENT"
        ? `file ${rel} does not exist (looked at ${file})`
        : `cannot read ${file}: ${fsReason(err)}`,
    );
    return undefined;
  }
}

export async function checkDirExists(problems: Problems, dir: string, at: KeyPath): Promise<void> {
  try {
    await access(dir);
  } catch {
    problems.add(at, `folder ${dir} does not exist`);
  }
}

/** A relative path that stays inside its folder: no `..`, not absolute. */
export function isInsidePath(p: string): boolean {
  const n = path.posix.normalize(p);
  return !path.posix.isAbsolute(n) && n !== ".." && !n.startsWith("../");
}

/** Checks that span items: mirror names, duplicate outputs, references between items. */
export function crossChecks(def: Definition, problems: Problems): void {
  for (const d of checkMirrorCollisions(def.images)) problems.list.push(d);

  const outputs = new Map<string, SourcePos>();
  const claim = (bundlePath: string, at: SourcePos) => {
    const first = outputs.get(bundlePath);
    if (first)
      problems.addAt(
        at,
        `${bundlePath} is written twice (first at ${first.file}:${first.line}:${first.col})`,
      );
    else outputs.set(bundlePath, at);
  };
  for (const g of def.git) claim(`files/${g.archive}`, g.at);
  for (const f of def.files) claim(`files/${f.path}`, f.at);
  for (const n of def.npm) claim(`files/${n.path}`, n.at);
  for (const t of def.templates) claim(destPath(t.dest), t.at);

  const charts = new Set(def.charts.map((c) => c.name));
  for (const t of def.templates) {
    if (t.dest.kind === "chart" && !charts.has(t.dest.chart)) {
      problems.addAt(t.at, `no chart named "${t.dest.chart}" (charts: ${[...charts].join(", ") || "none"})`);
    }
  }
  const releases = new Set<string>();
  for (const r of def.releases) {
    if (releases.has(r.name)) problems.addAt(r.at, `release "${r.name}" is defined twice`);
    releases.add(r.name);
    if (!charts.has(r.chart)) problems.addAt(r.at, `release ${r.name}: no chart named "${r.chart}"`);
    for (const v of r.valuesFiles) {
      if (!outputs.has(v) && !v.startsWith("charts/")) {
        problems.addAt(r.at, `release ${r.name}: values file ${v} is not produced by any template or file`);
      }
    }
  }
}
