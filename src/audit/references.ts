/**
 * Image references: finding them in YAML and JSON values (`image:`, `imageName` + `imageTag`,
 * `image: {repository, tag}`, runtimes manifests' `{prefix, name, tag}`) and judging them against
 * the site's registry and the images the bundle carries.
 */
import { LineCounter, isMap, isScalar, isSeq, parseAllDocuments, type Node } from "yaml";
import type { Lock } from "../bundle/lock.js";
import { DOCKER_HUB, formatImageRef, parseImageRef, type ImageRef } from "../config/imageRef.js";
import { hostnameOf, isInsideSite, type Site } from "./site.js";

/** A key path in a YAML or JSON document: `["grafana", "dashboards", 0]`. */
export type ValuePath = (string | number)[];

/** An image reference found in a file, before it is judged. */
export interface ImageCandidate {
  /** The reference as written or composed (`openwhisk/controller:ef725a6`). */
  text: string;
  line: number;
  col: number;
  /** Where it sits in a values document, for overrides. */
  path?: ValuePath;
}

interface CarriedImage {
  ref: ImageRef;
  digests: Set<string>;
  mirror: string;
}

/** Judges image references: fine when on the site registry, otherwise says why it reaches outside. */
export class ImageJudge {
  private readonly carried: CarriedImage[] = [];

  constructor(
    lock: Lock,
    private readonly site: Site,
  ) {
    for (const img of lock.images) {
      const ref = parseOrUndefined(img.ref.replace(/^docker-daemon:/, ""));
      if (!ref) continue;
      const digests = new Set([img.digest, img.mirrorDigest, ...img.platforms.map((p) => p.digest)]);
      this.carried.push({ ref, digests, mirror: img.mirror });
    }
  }

  /** Why `text` reaches outside the site, or undefined when it does not (or cannot be resolved). */
  judge(text: string): string | undefined {
    const s = text.trim();
    if (s === "") return undefined;
    if (s.includes("{{")) return this.judgeTemplated(s);
    // `${IMG_REPO}` left unrendered, a shell variable: nothing to resolve it with.
    if (s.includes("$")) return undefined;
    const ref = parseOrUndefined(s);
    if (!ref || this.inside(ref.registry)) return undefined;
    const carried = this.carried.find((c) => sameImage(c.ref, ref, c.digests));
    return carried ? this.carriedWhy(carried.mirror) : this.missingWhy(formatImageRef(ref));
  }

  /**
   * A reference with a Helm expression in it. When the text before the first `{{` already names
   * the registry (it holds a `/`) or the whole repository (a `:` or `@` follows it), that part is
   * hard-coded and can be judged; otherwise (`{{ .Values.docker.registry.name }}…`) it is skipped.
   */
  private judgeTemplated(s: string): string | undefined {
    const prefix = s.slice(0, s.indexOf("{{"));
    if (prefix.includes("$")) return undefined;
    const lastSlash = prefix.lastIndexOf("/");
    const colon = prefix.lastIndexOf(":");
    const at = prefix.indexOf("@");
    const end = at >= 0 ? at : colon > lastSlash ? colon : -1;
    if (end > 0) {
      const ref = parseOrUndefined(prefix.slice(0, end));
      if (!ref || this.inside(ref.registry)) return undefined;
      const carried = this.carried.find(
        (c) => c.ref.registry === ref.registry && c.ref.repository === ref.repository,
      );
      if (carried) return this.carriedWhy(carried.mirror.replace(/[:@].*$/, ""));
      return this.missingWhy(`${ref.registry}/${ref.repository}`, "its tag is templated; ");
    }
    if (lastSlash < 0) return undefined;
    const first = prefix.slice(0, prefix.indexOf("/"));
    const registry = looksLikeHost(first) ? first : DOCKER_HUB;
    if (this.inside(registry)) return undefined;
    return (
      `hard-coded registry ${registry} (the rest of the reference is templated): the image is pulled from ` +
      `outside the site; point it at the site registry (${this.site.registryHost})`
    );
  }

  private inside(registry: string): boolean {
    return registry !== DOCKER_HUB && isInsideSite(hostnameOf(registry), this.site);
  }

  private carriedWhy(mirror: string): string {
    return (
      `carried in the bundle but referenced by its upstream name; point it at the mirror ` +
      `${this.site.registryHost}/${mirror}`
    );
  }

  private missingWhy(name: string, note = ""): string {
    return (
      `${name} is neither on the site registry (${this.site.registryHost}) nor carried in the bundle ` +
      `(${note}add it to the bundle's images and point this reference at the mirror)`
    );
  }
}

/** The parsed reference, or undefined for text that is none. */
export function parseOrUndefined(s: string): ImageRef | undefined {
  try {
    return parseImageRef(s);
  } catch {
    return undefined;
  }
}

function sameImage(carried: ImageRef, ref: ImageRef, digests: Set<string>): boolean {
  if (carried.registry !== ref.registry || carried.repository !== ref.repository) return false;
  if (ref.digest) return digests.has(ref.digest) || carried.digest === ref.digest;
  return carried.tag === ref.tag;
}

/** Docker's rule for the first path component: a '.', a ':' or `localhost` makes it a host. */
function looksLikeHost(s: string): boolean {
  return s.includes(".") || s.includes(":") || s === "localhost" || s.startsWith("[");
}

/** A parsed YAML or JSON file: its documents as plain data, its image references, each line's key path. */
export interface ValuesFile {
  data: unknown[];
  images: ImageCandidate[];
  /** 1-based line → the key path of the value written on it. */
  linePaths: Map<number, ValuePath>;
}

/**
 * Parses `text` as YAML (JSON included); undefined when it is not valid YAML (a Helm template,
 * a script). `registryPrefix` is what the chart puts before every `imageName`
 * (`docker.registry.name`); undefined means this file's own `docker.registry.name`.
 */
export function parseValuesFile(text: string, registryPrefix?: string): ValuesFile | undefined {
  const lineCounter = new LineCounter();
  let docs;
  try {
    docs = parseAllDocuments(text, { lineCounter, uniqueKeys: false });
  } catch {
    return undefined;
  }
  if (!Array.isArray(docs) || docs.some((d) => d.errors.length > 0)) return undefined;
  const pos = (offset: number) => lineCounter.linePos(offset);
  const out: ValuesFile = { data: [], images: [], linePaths: new Map() };
  for (const doc of docs) {
    const data: unknown = doc.toJS();
    out.data.push(data);
    const prefix = registryPrefix ?? registryNameOf(data) ?? "";
    walk(doc.contents, [], undefined, { out, pos, prefix });
  }
  return out;
}

/** `docker.registry.name` of a values document, as the OpenWhisk chart prefixes every `imageName`. */
export function registryNameOf(data: unknown): string | undefined {
  const name = (
    ((data as Record<string, unknown> | null)?.docker as Record<string, unknown> | undefined)?.registry as
      Record<string, unknown> | undefined
  )?.name;
  return typeof name === "string" ? name : undefined;
}

interface WalkContext {
  out: ValuesFile;
  pos: (offset: number) => { line: number; col: number };
  prefix: string;
}

function walk(node: unknown, path: ValuePath, parentKey: string | undefined, ctx: WalkContext): void {
  if (isScalar(node)) {
    recordLines(node, path, ctx);
    return;
  }
  if (isSeq(node)) {
    node.items.forEach((item, i) => walk(item, [...path, i], parentKey, ctx));
    return;
  }
  if (!isMap(node)) return;
  const get = (key: string): unknown =>
    node.items.find((p) => isScalar(p.key) && String(p.key.value) === key)?.value;
  const add = (text: string, at: unknown, key: string) => {
    const range = (at as Node).range;
    if (!range) return;
    const { line, col } = ctx.pos(range[0]);
    ctx.out.images.push({ text, line, col, path: [...path, key] });
  };

  // `image: {prefix, name, tag}` in runtimes manifests, and their `blackboxes` entries.
  const prefix = scalarText(get("prefix"));
  const name = scalarText(get("name"));
  if ((parentKey === "image" || parentKey === "blackboxes") && prefix !== undefined && name) {
    const tag = scalarText(get("tag"));
    add(
      `${prefix ? `${prefix.replace(/\/+$/, "")}/` : ""}${name}${tag ? `:${tag}` : ""}`,
      get("prefix"),
      "prefix",
    );
  }
  // `image: {registry, repository, tag}` (Bitnami and many other charts).
  const repository = scalarText(get("repository"));
  if (parentKey === "image" && repository) {
    const registry = scalarText(get("registry"));
    const tag = scalarText(get("tag"));
    const digest = scalarText(get("digest"));
    add(
      `${registry ? `${registry.replace(/\/+$/, "")}/` : ""}${repository}${tag ? `:${tag}` : ""}${digest ? `@${digest}` : ""}`,
      get("repository"),
      "repository",
    );
  }
  // `image: name[:tag]`, with a sibling `imageTag` or `tag` when the name has none.
  const image = get("image");
  const imageText = scalarText(image);
  if (imageText) {
    const tag = scalarText(get("imageTag")) ?? scalarText(get("tag"));
    const hasTag = /[@]|:[^/]*$/.test(imageText);
    add(!hasTag && tag ? `${imageText}:${tag}` : imageText, image, "image");
  }
  // `imageName` + `imageTag`, rendered as `{{docker.registry.name}}{{imageName}}:{{imageTag}}`.
  const imageName = get("imageName");
  const imageNameText = scalarText(imageName);
  if (imageNameText) {
    const tag = scalarText(get("imageTag"));
    add(`${ctx.prefix}${imageNameText}${tag ? `:${tag}` : ""}`, imageName, "imageName");
  }

  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
    if (key === undefined) continue;
    walk(pair.value, [...path, key], key, ctx);
  }
}

/** A scalar's text as written: `4.0` stays `4.0`, not `4`. */
function scalarText(node: unknown): string | undefined {
  if (!isScalar(node)) return undefined;
  const v = node.value;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "bigint") return node.source ?? String(v);
  return undefined;
}

function recordLines(node: Node, path: ValuePath, ctx: WalkContext): void {
  if (!node.range) return;
  const start = ctx.pos(node.range[0]).line;
  const end = ctx.pos(Math.max(node.range[0], node.range[1] - 1)).line;
  for (let line = start; line <= end; line++) {
    if (!ctx.out.linePaths.has(line)) ctx.out.linePaths.set(line, path);
  }
}
