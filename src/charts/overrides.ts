/**
 * The values override that points every image of a chart at the site's registry, under the
 * mirror names the definition gives them (SPEC.md "Mirror names"). Each value shape is handled
 * the way the chart's templates render it, so the rendered reference is exactly the mirror's.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { stringify } from "yaml";
import { parseImageRef } from "../config/imageRef.js";
import { formatMirror } from "../config/mirror.js";
import type { MirrorName } from "../config/model.js";
import { InputError } from "../util/errors.js";
import {
  carriedItem,
  type Carrying,
  findChartImages,
  isTemplateFile,
  listFiles,
  literalImage,
  normalise,
  type ChartImage,
} from "./discover.js";
import { DEFAULT_RUNTIMES_FILE } from "./openwhisk.js";
import { pointImageAt, runtimeImages, isRuntimeManifest } from "./runtimes.js";
import { getIn, parsePath, setIn, sortKeys, type Tree } from "./values.js";

/**
 * How `imageName` components (OpenWhisk: `{{docker.registry.name}}{{imageName}}:{{imageTag}}`)
 * reach the registry:
 * - `registry-name`: `docker.registry.name: "<REG>/"` and each imageName the mirror path. The
 *   chart then also creates an imagePullSecret from docker.registry.username/password, and the
 *   invoker uses docker.registry.name as the registry of every runtime image. The prefix is
 *   global, so an imageName image the definition lacks is pulled from `<REG>/` too (it is listed
 *   in `unmapped`).
 * - `image-name`: Telego's way: docker.registry.name stays "" and each imageName is the full
 *   `<REG>/<mirror path>`; images the definition lacks keep their public names.
 */
export type OverrideStyle = "registry-name" | "image-name";

export interface OverrideOptions {
  style?: OverrideStyle;
  /** The manifest the chart loads (loadRuntimesManifest): rewritten into `runtimes`. */
  runtimesManifest?: { file: string; text: string };
}

export interface Overrides {
  values: Tree;
  /** `values` as YAML, keys sorted: the same inputs always give the same bytes. */
  yaml: string;
  /** Chart images the definition does not carry: left as the chart has them. */
  unmapped: ChartImage[];
  /**
   * Images no values file can redirect: literal template lines (see templateOverlays), images
   * inside lists (Helm replaces a list whole), runtime images outside the given manifest.
   */
  fixed: ChartImage[];
  /** The rewritten runtime manifest, to overlay over the chart's file of the same path. */
  runtimes?: { file: string; json: string };
}

/** `registryHost` is the registry's `host[:port]`, as images are named on it. */
export function generateOverrides(
  found: ChartImage[],
  def: Carrying,
  registryHost: string,
  opts: OverrideOptions = {},
): Overrides {
  const style = opts.style ?? "registry-name";
  const values: Tree = {};
  const unmapped: ChartImage[] = [];
  const fixed: ChartImage[] = [];
  let imageNames = 0;
  for (const img of found) {
    const mirror = carriedItem(def, img.ref)?.mirror;
    if (!mirror) unmapped.push(img);
    if (!overridable(img, opts.runtimesManifest?.file)) {
      if (img.enabled !== false) fixed.push(img); // an unused manifest's images need nothing
      continue;
    }
    if (!mirror || img.kind === "runtimes") continue; // runtimes: rewritten in the manifest below
    const target = mirrorTarget(mirror, registryHost);
    if (!target.tag && img.kind !== "image") {
      unmapped.push(img); // digest-only: no `name:tag` form can hold it
      continue;
    }
    if (img.kind === "imageName+imageTag") imageNames++;
    setImage(values, img, target, style);
  }
  // registry-name: the invoker puts docker.registry.name before runtime images itself.
  const registryName = style === "registry-name" && imageNames > 0;
  if (imageNames > 0) setIn(values, ["docker", "registry", "name"], registryName ? `${registryHost}/` : "");
  const runtimePrefix = registryName ? "" : registryHost;
  const sorted = sortKeys(values) as Tree;
  return {
    values: sorted,
    yaml: toYaml(sorted),
    unmapped,
    fixed,
    ...(opts.runtimesManifest
      ? { runtimes: rewriteManifest(opts.runtimesManifest, def, registryHost, runtimePrefix) }
      : {}),
  };
}

/**
 * Every string double-quoted: Helm reads values as YAML 1.1, where a bare `on`, `no` or `1:20`
 * is no string, and a tag must stay the text it is.
 */
function toYaml(values: Tree): string {
  return stringify(values, {
    sortMapEntries: true,
    lineWidth: 0,
    defaultStringType: "QUOTE_DOUBLE",
    defaultKeyType: "PLAIN",
  });
}

interface MirrorTarget {
  /** `teleinfra/controller` */
  repository: string;
  /** `ef725a6`, or `4.0@sha256:…` when the definition pins a digest; absent for digest-only. */
  tag?: string;
  /** The whole mirror reference with the registry host. */
  ref: string;
  host: string;
}

function mirrorTarget(m: MirrorName, host: string): MirrorTarget {
  const tag = m.tag ? `${m.tag}${m.digest ? `@${m.digest}` : ""}` : undefined;
  return { repository: m.repository, ...(tag ? { tag } : {}), ref: formatMirror(m, host), host };
}

function overridable(img: ChartImage, manifestFile: string | undefined): boolean {
  if (img.kind === "template-literal") return false;
  if (img.kind === "runtimes")
    return manifestFile !== undefined && img.valuesPath?.startsWith(`${manifestFile}:`) === true;
  return !img.valuesPath?.includes("[");
}

function setImage(values: Tree, img: ChartImage, t: MirrorTarget, style: OverrideStyle): void {
  const key = parsePath(img.valuesPath ?? "").map(String);
  const parent = key.slice(0, -1);
  const tag = t.tag ?? "";
  switch (img.kind) {
    case "imageName+imageTag": {
      // The chart writes docker.registry.name straight before imageName: with the registry there,
      // imageName is only the repository path on it.
      const name = style === "registry-name" ? t.repository : `${t.host}/${t.repository}`;
      setIn(values, [...parent, "imageName"], name);
      setIn(values, [...parent, "imageTag"], tag);
      return;
    }
    case "image+imageTag":
      // No registry prefix here (elasticsearch): the image carries the host itself.
      setIn(values, [...parent, "image"], `${t.host}/${t.repository}`);
      setIn(values, [...parent, "imageTag"], tag);
      if (parent.join(".") === "elasticsearch") setEsMajorVersion(values, img);
      return;
    case "image.repository+image.tag":
      // Bitnami-style charts join image.registry and image.repository; others take the repository whole.
      if (img.registryPath) setIn(values, parsePath(img.registryPath).map(String), t.host);
      setIn(values, key, img.registryPath ? t.repository : `${t.host}/${t.repository}`);
      setIn(values, [...parent, "tag"], tag);
      return;
    case "image":
      setIn(values, key, t.ref);
      return;
    default:
      return;
  }
}

/**
 * OpenWhisk reads the Elasticsearch major version from imageTag only while the image is
 * docker.elastic.co/elasticsearch/elasticsearch, and assumes 7 otherwise; a mirrored 6.x must
 * say so. A string, like the chart's default "".
 */
function setEsMajorVersion(values: Tree, img: ChartImage): void {
  const major = /^(\d+)/.exec(parseImageRef(img.ref).tag ?? "")?.[1];
  if (major) setIn(values, ["elasticsearch", "esMajorVersionValue"], major);
}

function rewriteManifest(
  manifest: { file: string; text: string },
  def: Carrying,
  host: string,
  registryPart: string,
): { file: string; json: string } {
  let data: unknown;
  try {
    data = JSON.parse(manifest.text) as unknown;
  } catch (err) {
    throw new InputError(`${manifest.file}: not JSON: ${(err as Error).message}`);
  }
  if (!isRuntimeManifest(data)) throw new InputError(`${manifest.file}: not a runtime manifest`);
  for (const ri of runtimeImages(data)) {
    const ref = normalise(ri.ref);
    const mirror = ref ? carriedItem(def, ref)?.mirror : undefined;
    const target = mirror && mirrorTarget(mirror, host);
    if (!target?.tag) continue;
    const cut = target.repository.lastIndexOf("/");
    pointImageAt(getIn(data, ri.path) as Tree, {
      prefix: [registryPart, cut < 0 ? "" : target.repository.slice(0, cut)].filter(Boolean).join("/"),
      name: target.repository.slice(cut + 1),
      tag: target.tag,
    });
  }
  return { file: manifest.file, json: `${JSON.stringify(data, null, 4)}\n` };
}

/**
 * The runtime manifest the chart loads, as found: the one named by `whisk.runtimes`, else
 * runtimes.json, else the first manifest found.
 */
export async function loadRuntimesManifest(
  chartDir: string,
  found: ChartImage[],
): Promise<{ file: string; text: string } | undefined> {
  const files = [
    ...new Set(found.filter((f) => f.kind === "runtimes" && f.enabled !== false).map((f) => f.file)),
  ].filter((f) => f.endsWith(".json"));
  const file = files.includes(DEFAULT_RUNTIMES_FILE) ? DEFAULT_RUNTIMES_FILE : files.sort()[0];
  return file === undefined ? undefined : { file, text: await readFile(path.join(chartDir, file), "utf8") };
}

/**
 * Templates with literal images the definition carries, rewritten to the mirror (the same line,
 * only the reference changed): the one way to redirect an image no value names, by overlaying
 * these files over the chart's.
 */
export async function templateOverlays(
  chartDir: string,
  def: Carrying,
  registryHost: string,
): Promise<{ file: string; text: string }[]> {
  const out: { file: string; text: string }[] = [];
  for (const file of (await listFiles(chartDir)).filter(isTemplateFile)) {
    const text = await readFile(path.join(chartDir, file), "utf8");
    let changed = false;
    const lines = text.split("\n").map((line) => {
      const raw = literalImage(line);
      const ref = raw && normalise(raw);
      const mirror = ref ? carriedItem(def, ref)?.mirror : undefined;
      if (!raw || !mirror) return line;
      changed = true;
      return line.replace(raw, formatMirror(mirror, registryHost));
    });
    if (changed) out.push({ file, text: lines.join("\n") });
  }
  return out;
}

/** Everything at once, for a chart folder: what `bundle deploy` needs to point a chart at the mirrors. */
export async function chartOverrides(
  chartDir: string,
  def: Carrying,
  registryHost: string,
  opts: { style?: OverrideStyle; valuesFiles?: string[] } = {},
): Promise<Overrides & { templates: { file: string; text: string }[] }> {
  const found = await findChartImages(chartDir, opts.valuesFiles);
  const runtimesManifest = await loadRuntimesManifest(chartDir, found);
  const overrides = generateOverrides(found, def, registryHost, {
    ...(opts.style ? { style: opts.style } : {}),
    ...(runtimesManifest ? { runtimesManifest } : {}),
  });
  return { ...overrides, templates: await templateOverlays(chartDir, def, registryHost) };
}
