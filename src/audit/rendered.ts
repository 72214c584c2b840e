/**
 * What a chart really does once Helm has rendered it: every image a pod runs (containers, init
 * and ephemeral containers, and OpenWhisk's runtime images, which reach pods as the
 * `RUNTIMES_MANIFEST` env JSON), and every fetch its commands, env and ConfigMaps make from
 * outside the site. Reading `helm template`'s output, not the chart's files, leaves out what
 * never renders (disabled pods, unused manifests) and sees what values put together.
 */
import { parseAllDocuments } from "yaml";
import { isRuntimeManifest, imageNameRef, runtimeImages } from "../charts/runtimes.js";
import { getIn, isTree, type Tree } from "../charts/values.js";
import { InputError } from "../util/errors.js";
import { scanText, styleOf, type FindingKind } from "./scan.js";
import type { Site } from "./site.js";

export interface RenderedImage {
  /** `StatefulSet/ow-controller` */
  object: string;
  /** `controller`, `wait-for-zookeeper`, or `invoker (RUNTIMES_MANIFEST)` for a runtime image. */
  container: string;
  /** As rendered, or as the invoker resolves a runtime image. */
  image: string;
}

export interface RenderedFetch {
  object: string;
  /** `container install-packages command`, `data download_dashboards.sh`, `env X`. */
  where: string;
  kind: FindingKind;
  text: string;
  why: string;
}

export interface RenderedView {
  images: RenderedImage[];
  fetches: RenderedFetch[];
}

const CONTAINER_LISTS = new Set(["containers", "initContainers", "ephemeralContainers"]);
/** The env OpenWhisk's invoker reads for the registry of runtime images without their own. */
const RUNTIMES_REGISTRY_ENV = "CONFIG_whisk_containerFactory_runtimesRegistry_url";
const RUNTIMES_ENV = "RUNTIMES_MANIFEST";

/** Reads `helm template` output; `source` names it in errors (the release). */
export function readRendered(text: string, source: string, site: Site): RenderedView {
  const view: RenderedView = { images: [], fetches: [] };
  for (const obj of renderedObjects(text, source)) {
    if (!isTree(obj)) continue;
    const name = `${String(obj.kind)}/${String(getIn(obj, ["metadata", "name"]) ?? "?")}`;
    for (const c of containersOf(obj)) readContainer(c, name, view, site);
    if (obj.kind === "ConfigMap" && isTree(obj.data)) {
      for (const [key, value] of Object.entries(obj.data)) {
        if (typeof value !== "string") continue;
        for (const image of manifestImages(value, "")) {
          view.images.push({ object: name, container: `data ${key}`, image });
        }
        addFetches(view, name, `data ${key}`, value, styleOf(key), site);
      }
    }
  }
  return view;
}

/**
 * The objects of `helm template` output. Go's YAML parser, which Kubernetes uses, takes a quoted
 * scalar whose continuation lines are indented less than its key (OpenWhisk's chart renders
 * such `command: ["sh", "-c", '…` lines); the YAML 1.2 parser here does not. Those lines are
 * indented under their key before a second try: a quoted scalar folds its line breaks and leading
 * spaces to one space, so the value stays what Kubernetes reads.
 */
function renderedObjects(text: string, source: string): unknown[] {
  let docs = parseAllDocuments(text);
  if (docs.some((d) => d.errors.length > 0)) docs = parseAllDocuments(indentQuotedContinuations(text));
  const bad = docs.find((d) => d.errors.length > 0);
  if (bad)
    throw new InputError(`${source}: helm rendered YAML that does not parse: ${bad.errors[0]?.message}`);
  return docs.map((d) => d.toJS() as unknown);
}

/** Where a quoted scalar may start: after `[`, `{`, `,`, `: ` or `- `, or at the line's start. */
const QUOTE_START = /(?:^\s*|[[{,]\s*|:\s+|-\s+)(['"])/;

function indentQuotedContinuations(text: string): string {
  const lines = text.split("\n");
  let open: { quote: string; indent: string } | undefined;
  for (const [i, line] of lines.entries()) {
    if (open) {
      lines[i] = `${open.indent}${line.trimStart()}`;
      if (closes(line, open.quote, 0) >= 0) open = undefined;
      continue;
    }
    const indent = `${/^\s*/.exec(line)?.[0] ?? ""}    `;
    const starts = new RegExp(QUOTE_START.source, "g");
    for (let m = starts.exec(line); m; m = starts.exec(line)) {
      const quote = m[1] ?? "";
      const end = closes(line, quote, m.index + m[0].length);
      if (end < 0) {
        open = { quote, indent };
        break;
      }
      starts.lastIndex = end + 1;
    }
  }
  return lines.join("\n");
}

/** The index of the quote that closes a scalar opened before `from`, or -1 when the line ends first. */
function closes(line: string, quote: string, from: number): number {
  for (let i = from; i < line.length; i++) {
    const c = line[i];
    if (quote === '"' && c === "\\") i++;
    else if (c === quote) {
      if (quote === "'" && line[i + 1] === "'") i++;
      else return i;
    }
  }
  return -1;
}

function* containersOf(node: unknown): Generator<Tree> {
  if (Array.isArray(node)) {
    for (const item of node) yield* containersOf(item);
    return;
  }
  if (!isTree(node)) return;
  for (const [key, value] of Object.entries(node)) {
    if (CONTAINER_LISTS.has(key) && Array.isArray(value)) {
      yield* value.filter(isTree);
    } else {
      yield* containersOf(value);
    }
  }
}

function readContainer(c: Tree, object: string, view: RenderedView, site: Site): void {
  const name = typeof c.name === "string" ? c.name : "?";
  if (typeof c.image === "string") view.images.push({ object, container: name, image: c.image });
  const env = Array.isArray(c.env) ? c.env.filter(isTree) : [];
  const envValue = (key: string) => {
    const v = env.find((e) => e.name === key)?.value;
    return typeof v === "string" ? v : undefined;
  };
  const manifest = envValue(RUNTIMES_ENV);
  if (manifest !== undefined) {
    for (const image of manifestImages(manifest, envValue(RUNTIMES_REGISTRY_ENV) ?? "")) {
      view.images.push({ object, container: `${name} (${RUNTIMES_ENV})`, image });
    }
  }
  for (const part of ["command", "args"] as const) {
    const lines = Array.isArray(c[part]) ? c[part].map(String) : [];
    if (lines.length > 0)
      addFetches(view, object, `container ${name} ${part}`, lines.join("\n"), styleOf("x.sh"), site);
  }
  for (const e of env) {
    if (e.name === RUNTIMES_ENV || typeof e.value !== "string") continue;
    addFetches(view, object, `container ${name} env ${String(e.name)}`, e.value, styleOf("x.txt"), site);
  }
}

/**
 * The images of a runtime manifest (JSON text), as the invoker resolves them: an image's own
 * `registry`, else the runtimes registry the invoker was given. Not a manifest: none.
 */
function manifestImages(text: string, runtimesRegistry: string): string[] {
  if (!/^\s*\{/.test(text)) return [];
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return [];
  }
  if (!isRuntimeManifest(data)) return [];
  return runtimeImages(data).flatMap((ri) => {
    const image = getIn(data, ri.path);
    if (!isTree(image)) return [];
    const own = typeof image.registry === "string" && image.registry !== "";
    return imageNameRef(own ? image : { ...image, registry: runtimesRegistry }) ?? [];
  });
}

function addFetches(
  view: RenderedView,
  object: string,
  where: string,
  text: string,
  style: ReturnType<typeof styleOf>,
  site: Site,
): void {
  for (const f of scanText(text, style, { site })) {
    view.fetches.push({ object, where, kind: f.kind, text: f.text, why: f.why });
  }
}
