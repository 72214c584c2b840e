/**
 * Every image a Helm chart uses, found from its files alone (Helm is not needed): the values
 * files, runtime manifests such as OpenWhisk's runtimes.json, and literal `image:` lines in
 * templates. Images behind disabled flags are listed too, marked `enabled: false`: a site that
 * turns the flag on later must not discover then that the image never crossed the air gap.
 */
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { formatImageRef, parseImageRef, type ImageRef } from "../config/imageRef.js";
import type { Definition, ImageItem } from "../config/model.js";
import { YamlSource, formatPath, type KeyPath } from "../config/yamlSource.js";
import { InputError } from "../util/errors.js";
import { readChartFile } from "./metadata.js";
import { looksLikeOpenWhiskValues, openWhiskGate } from "./openwhisk.js";
import { isRuntimeManifest, runtimeImages } from "./runtimes.js";
import { isTree, ValuesStack, type Tree } from "./values.js";
import { fsReason } from "../util/files.js";

export type ChartImageKind =
  | "imageName+imageTag"
  | "image+imageTag"
  | "image.repository+image.tag"
  | "image"
  | "runtimes"
  | "template-literal";

export interface ChartImage {
  /** Normalised full reference, e.g. `docker.io/openwhisk/controller:ef725a6`. */
  ref: string;
  /**
   * The key that sets it: `controller.imageName`, `elasticsearch.image`, `x.image.repository`;
   * for a manifest, `<file>:<path>` such as `runtimes.json:runtimes.nodejs[0].image`.
   * Absent for literal template lines, which no value sets.
   */
  valuesPath?: string;
  /** The key that holds the registry part, when it is separate: `docker.registry.name`, `x.image.registry`. */
  registryPath?: string;
  /** Path relative to the chart folder (a values file outside the chart: as given). */
  file: string;
  line: number;
  kind: ChartImageKind;
  /** False when a disabled flag (or the chart's own condition) keeps its pod off; absent otherwise. */
  enabled?: boolean;
}

/** A values file by path, or already read (a rendered template) with the name its lines belong to. */
export type ValuesInput = string | { file: string; text: string };

/** Scans `chartDir`; `valuesFiles` are merged over the chart's values.yaml in order, as with `helm -f`. */
export async function findChartImages(
  chartDir: string,
  valuesFiles: ValuesInput[] = [],
): Promise<ChartImage[]> {
  const files = await listFiles(chartDir);
  const chart =
    (await readChartFile("Chart.yaml", path.join(chartDir, "Chart.yaml"), { where: "Chart.yaml" })) ?? {};
  const stack = new ValuesStack(await loadValues(chartDir, files, valuesFiles));
  const ctx: ScanContext = {
    stack,
    openwhisk: chart.name === "openwhisk" || looksLikeOpenWhiskValues(stack.data),
    appVersion: chart.appVersion,
  };
  const found = [
    ...valuesImages(ctx),
    ...embeddedRuntimeImages(stack),
    ...(await manifestFileImages(chartDir, files, stack)),
    ...(await templateImages(chartDir, files)),
  ];
  return uniqueSorted(found);
}

/** What the chart uses and the definition lacks, and what the definition carries for no chart. */
export function compareImages(
  found: ChartImage[],
  def: Definition,
): { missing: ChartImage[]; unused: ImageItem[] } {
  const carried = new Set(def.images.map((i) => imageKey(i.ref)));
  const used = new Set(found.map((f) => imageKey(parseImageRef(f.ref))));
  return {
    missing: found.filter((f) => !carried.has(imageKey(parseImageRef(f.ref)))),
    unused: def.images.filter((i) => !used.has(imageKey(i.ref))),
  };
}

/** What carries images under mirror names: a definition, or a bundle's lock read back. */
export interface Carrying {
  images: readonly Pick<ImageItem, "ref" | "mirror">[];
}

/** The definition's item for a chart image, if it carries it. */
export function carriedItem(def: Carrying, ref: string): Pick<ImageItem, "ref" | "mirror"> | undefined {
  const key = imageKey(parseImageRef(ref));
  return def.images.find((i) => imageKey(i.ref) === key);
}

/**
 * Charts name images by tag; a definition may pin the same tag to a digest
 * (`redis:4.0@sha256:…`), which is still the image the chart asks for.
 */
function imageKey(ref: ImageRef): string {
  return formatImageRef(ref.tag ? { registry: ref.registry, repository: ref.repository, tag: ref.tag } : ref);
}

interface ScanContext {
  stack: ValuesStack;
  openwhisk: boolean;
  /** Chart.yaml's appVersion: what charts in the image.repository style use when image.tag is empty. */
  appVersion: string | undefined;
}

interface Candidate {
  kind: ChartImageKind;
  raw: string;
  keyPath: KeyPath;
  registryPath?: KeyPath;
}

function valuesImages(ctx: ScanContext): ChartImage[] {
  const out: ChartImage[] = [];
  for (const { map, at } of mapsIn(ctx.stack.data, [])) {
    for (const c of candidatesAt(map, at, ctx)) {
      const ref = normalise(c.raw);
      if (!ref) continue;
      const pos = ctx.stack.keyPos(c.keyPath);
      out.push({
        ref,
        valuesPath: formatPath(c.keyPath),
        ...(c.registryPath ? { registryPath: formatPath(c.registryPath) } : {}),
        file: pos.file,
        line: pos.line,
        kind: c.kind,
        ...(isEnabled(ctx, at) ? {} : { enabled: false }),
      });
    }
  }
  return out;
}

/** The value shapes charts use to name an image, tried on one map of the values. */
function candidatesAt(m: Tree, at: KeyPath, ctx: ScanContext): Candidate[] {
  const out: Candidate[] = [];
  const tag = scalarText(m.imageTag);
  if (typeof m.imageName === "string" && tag !== undefined) {
    // OpenWhisk renders "{{ docker.registry.name }}{{ imageName }}:{{ imageTag }}".
    const registry = ctx.openwhisk ? ctx.stack.get(REGISTRY_NAME) : undefined;
    const prefix = typeof registry === "string" ? registry : "";
    out.push({
      kind: "imageName+imageTag",
      raw: `${prefix}${m.imageName}:${tag}`,
      keyPath: [...at, "imageName"],
      ...(typeof registry === "string" ? { registryPath: REGISTRY_NAME } : {}),
    });
  }
  if (typeof m.image === "string") {
    // elasticsearch: "{{ image }}:{{ imageTag }}", with no registry prefix.
    out.push(
      tag !== undefined
        ? { kind: "image+imageTag", raw: `${m.image}:${tag}`, keyPath: [...at, "image"] }
        : { kind: "image", raw: m.image, keyPath: [...at, "image"] },
    );
  }
  if (isTree(m.image) && typeof m.image.repository === "string") out.push(repositoryStyle(m.image, at, ctx));
  return out;
}

const REGISTRY_NAME = ["docker", "registry", "name"];

/** `image: {registry?, repository, tag?, digest?}`, the common chart style (Bitnami splits out registry). */
function repositoryStyle(image: Tree, at: KeyPath, ctx: ScanContext): Candidate {
  const registry = typeof image.registry === "string" && image.registry !== "" ? image.registry : undefined;
  const tag = scalarText(image.tag) || ctx.appVersion;
  const digest = typeof image.digest === "string" && image.digest !== "" ? image.digest : undefined;
  const raw = `${registry ? `${registry}/` : ""}${String(image.repository)}${tag ? `:${tag}` : ""}${digest ? `@${digest}` : ""}`;
  return {
    kind: "image.repository+image.tag",
    raw,
    keyPath: [...at, "image", "repository"],
    ...(registry ? { registryPath: [...at, "image", "registry"] } : {}),
  };
}

/** Off when any map on the way says `enabled: false` or `external: true`, or the chart gates it. */
function isEnabled(ctx: ScanContext, at: KeyPath): boolean {
  for (let n = 1; n <= at.length; n++) {
    const node = ctx.stack.get(at.slice(0, n));
    if (isTree(node) && (node.enabled === false || node.external === true)) return false;
  }
  return !ctx.openwhisk || openWhiskGate(ctx.stack, at[0]);
}

/** A runtime manifest written into the values under `whisk.runtimes` (a map, or JSON text). */
function embeddedRuntimeImages(stack: ValuesStack): ChartImage[] {
  const at = ["whisk", "runtimes"];
  const value = stack.get(at);
  const manifest = typeof value === "string" && value.trim().startsWith("{") ? parseJson(value) : value;
  if (!isRuntimeManifest(manifest)) return [];
  return runtimeImages(manifest).flatMap((ri) => {
    const ref = normalise(ri.ref);
    if (!ref) return [];
    // JSON text has no positions of its own: point at the whisk.runtimes key.
    const keyPath = typeof value === "string" ? at : [...at, ...ri.path];
    const pos = stack.keyPos(keyPath);
    const valuesPath =
      typeof value === "string" ? `whisk.runtimes:${formatPath(ri.path)}` : formatPath([...at, ...ri.path]);
    return [{ ref, valuesPath, file: pos.file, line: pos.line, kind: "runtimes" as const }];
  });
}

/**
 * runtimes*.json anywhere in the chart. The one `whisk.runtimes` names is the one the chart
 * loads; the others (runtimes-minimal-travis.json) are listed as disabled.
 */
async function manifestFileImages(
  chartDir: string,
  files: string[],
  stack: ValuesStack,
): Promise<ChartImage[]> {
  const named = stack.get(["whisk", "runtimes"]);
  const active =
    named === undefined ? undefined : typeof named === "string" && !named.trim().startsWith("{") ? named : "";
  const out: ChartImage[] = [];
  for (const file of files.filter((f) => /^runtimes.*\.json$/i.test(path.posix.basename(f)))) {
    const src = YamlSource.parse(await readFile(path.join(chartDir, file), "utf8"), file);
    const manifest = src.data();
    if (!isRuntimeManifest(manifest)) continue;
    const enabled = active === undefined || path.posix.normalize(active) === file;
    for (const ri of runtimeImages(manifest)) {
      const ref = normalise(ri.ref);
      const last = ri.path[ri.path.length - 1];
      const pos = last === "image" ? src.keyPos(ri.path.slice(0, -1), last) : src.pos(ri.path);
      if (!ref) continue;
      out.push({
        ref,
        valuesPath: `${file}:${formatPath(ri.path)}`,
        file,
        line: pos.line,
        kind: "runtimes",
        ...(enabled ? {} : { enabled: false }),
      });
    }
  }
  return out;
}

/** Literal `image:` lines in templates: images no value can redirect (the Grafana pod's curl). */
async function templateImages(chartDir: string, files: string[]): Promise<ChartImage[]> {
  const out: ChartImage[] = [];
  for (const file of files.filter(isTemplateFile)) {
    const lines = (await readFile(path.join(chartDir, file), "utf8")).split("\n");
    lines.forEach((text, i) => {
      const raw = literalImage(text);
      const ref = raw && normalise(raw);
      if (ref) out.push({ ref, file, line: i + 1, kind: "template-literal" });
    });
  }
  return out;
}

export function isTemplateFile(file: string): boolean {
  return file.startsWith("templates/") && /\.(ya?ml|tpl)$/.test(file);
}

/** `  - image: "appropriate/curl:latest"  # why` → `appropriate/curl:latest`; template expressions → undefined. */
export function literalImage(line: string): string | undefined {
  const m = /^\s*(?:-\s+)?image:\s*(.*)$/.exec(line);
  const value = m?.[1]?.trim();
  if (!value || value.includes("{{")) return undefined;
  const quoted = /^(["'])(.*?)\1/.exec(value);
  return (quoted ? quoted[2] : value.split(/\s+#/)[0])?.trim() || undefined;
}

/** The normalised reference, or undefined for text that is no image reference (a value that only looks like one). */
export function normalise(raw: string): string | undefined {
  try {
    return formatImageRef(parseImageRef(raw));
  } catch (err) {
    if (err instanceof InputError) return undefined;
    throw err;
  }
}

function* mapsIn(node: unknown, at: KeyPath): Generator<{ map: Tree; at: KeyPath }> {
  if (Array.isArray(node)) {
    for (const [i, item] of node.entries()) yield* mapsIn(item, [...at, i]);
  } else if (isTree(node)) {
    yield { map: node, at };
    for (const [key, value] of Object.entries(node)) yield* mapsIn(value, [...at, key]);
  }
}

/** Once per (ref, valuesPath), ordered by reference, then path, file and line (code points, not locale). */
function uniqueSorted(images: ChartImage[]): ChartImage[] {
  const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  const sorted = [...images].sort(
    (a, b) =>
      cmp(a.ref, b.ref) ||
      cmp(a.valuesPath ?? "", b.valuesPath ?? "") ||
      cmp(a.file, b.file) ||
      a.line - b.line,
  );
  const seen = new Set<string>();
  return sorted.filter((img) => {
    const key = `${img.ref}\u0000${img.valuesPath ?? ""}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

async function loadValues(chartDir: string, files: string[], extra: ValuesInput[]): Promise<YamlSource[]> {
  const own = files.includes("values.yaml") ? [path.join(chartDir, "values.yaml")] : [];
  return Promise.all(
    [...own, ...extra].map((f) =>
      typeof f === "string" ? YamlSource.load(f, displayName(chartDir, f)) : YamlSource.parse(f.text, f.file),
    ),
  );
}

function displayName(chartDir: string, file: string): string {
  const rel = path.relative(chartDir, file).split(path.sep).join("/");
  return rel.startsWith("../") || path.isAbsolute(rel) ? file : rel;
}

/** Every file of the chart, relative, with `/` separators; subcharts' own folders are skipped. */
export async function listFiles(chartDir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(chartDir, { recursive: true, withFileTypes: true });
  } catch (err) {
    throw new InputError(`${chartDir}: cannot read the chart folder: ${fsReason(err, "folder")}`);
  }
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(chartDir, path.join(e.parentPath, e.name)).split(path.sep).join("/"))
    .filter((f) => !/^(charts|node_modules|\.git)\//.test(f))
    .sort();
}

function scalarText(v: unknown): string | undefined {
  return typeof v === "string" || typeof v === "number" ? String(v) : undefined;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
