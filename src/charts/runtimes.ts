/**
 * OpenWhisk runtime manifests (`runtimes.json`): `runtimes.<language>[].image` and
 * `blackboxes[]`, each image written as `{registry?, prefix, name, tag}`. OpenWhisk's
 * ExecManifest.ImageName resolves one as `[registry/][prefix/]name[:tag]`, where a missing
 * `registry` falls back to the invoker's runtimes registry (the chart sets that from
 * `docker.registry.name`).
 */
import type { KeyPath } from "../config/yamlSource.js";
import { isTree, type Tree } from "./values.js";

export interface RuntimeImage {
  /** Path inside the manifest: `["runtimes", "nodejs", 0, "image"]` or `["blackboxes", 0]`. */
  path: KeyPath;
  /** The reference as OpenWhisk resolves it with no runtimes registry. */
  ref: string;
}

/** Is `v` a runtime manifest at all (a `runtimes` map or a `blackboxes` list)? */
export function isRuntimeManifest(v: unknown): v is Tree {
  return isTree(v) && (isTree(v.runtimes) || Array.isArray(v.blackboxes));
}

export function runtimeImages(manifest: Tree): RuntimeImage[] {
  const out: RuntimeImage[] = [];
  const add = (path: KeyPath, image: unknown): void => {
    const ref = isTree(image) ? imageNameRef(image) : undefined;
    if (ref) out.push({ path, ref });
  };
  if (isTree(manifest.runtimes)) {
    for (const [lang, kinds] of Object.entries(manifest.runtimes)) {
      if (!Array.isArray(kinds)) continue;
      kinds.forEach((kind, i) => add(["runtimes", lang, i, "image"], isTree(kind) ? kind.image : undefined));
    }
  }
  if (Array.isArray(manifest.blackboxes)) manifest.blackboxes.forEach((b, i) => add(["blackboxes", i], b));
  return out;
}

/** `{prefix: "openwhisk", name: "java8action", tag: "1.17.0"}` → `openwhisk/java8action:1.17.0`. */
export function imageNameRef(image: Tree): string | undefined {
  if (typeof image.name !== "string" || image.name === "") return undefined;
  const registry = typeof image.registry === "string" ? image.registry.replace(/\/+$/, "") : "";
  const prefix = typeof image.prefix === "string" ? image.prefix : "";
  const tag = typeof image.tag === "string" || typeof image.tag === "number" ? String(image.tag) : "";
  return [registry, prefix, image.name].filter(Boolean).join("/") + (tag ? `:${tag}` : "");
}

/**
 * Points one manifest image at `prefix/name:tag`, keeping its other keys. `registry` is dropped
 * because it would win over the runtimes registry the chart passes to the invoker.
 */
export function pointImageAt(image: Tree, target: { prefix: string; name: string; tag: string }): void {
  delete image.registry;
  image.prefix = target.prefix;
  image.name = target.name;
  image.tag = target.tag;
}
