/** Mirror names on the private registry (SPEC.md "Mirror names"). */
import {
  DOCKER_HUB,
  formatImageRef,
  isRepositoryPath,
  isTag,
  lastSegment,
  type ImageRef,
} from "./imageRef.js";
import type { ImageItem, MirrorConfig, MirrorName } from "./model.js";
import type { Diagnostic } from "../util/errors.js";
import { formatPos } from "../util/errors.js";

export const DEFAULT_MIRROR: MirrorConfig = { prefix: "teleinfra", naming: "last-segment" };

/**
 * `docker.io/wurstmeister/kafka:2.12-2.3.1` → `teleinfra/kafka:2.12-2.3.1` (Telego's naming), or
 * with `full-path`, `teleinfra/wurstmeister/kafka:…`; a registry other than Docker Hub then
 * stays in the path (`teleinfra/quay.io/coreos/etcd`) so equal paths on two registries differ.
 */
export function mirrorName(ref: ImageRef, cfg: MirrorConfig): MirrorName {
  const path =
    cfg.naming === "last-segment"
      ? lastSegment(ref)
      : ref.registry === DOCKER_HUB
        ? ref.repository
        : `${ref.registry.toLowerCase().replace(/[:[\]]/g, "-")}/${ref.repository}`;
  const repository = cfg.prefix ? `${cfg.prefix}/${path}` : path;
  return { repository, ...(ref.tag ? { tag: ref.tag } : {}), ...(ref.digest ? { digest: ref.digest } : {}) };
}

/**
 * Where upload pushes a chart's archive, as images go under the same prefix:
 * `teleinfra/charts/<name>:<version>`. A tag cannot hold SemVer's `+`, so `_` stands for it,
 * as `helm push` and `helm pull --version` write it. Undefined when the name or version makes
 * no OCI repository or tag (e.g. upper-case letters).
 */
export function chartMirror(name: string, version: string, cfg: MirrorConfig): string | undefined {
  const repository = `${cfg.prefix ? `${cfg.prefix}/` : ""}charts/${name}`;
  const tag = version.replaceAll("+", "_");
  return isRepositoryPath(repository) && isTag(tag) ? `${repository}:${tag}` : undefined;
}

export function formatMirror(m: MirrorName, registry?: string): string {
  return `${registry ? `${registry}/` : ""}${m.repository}${m.tag ? `:${m.tag}` : ""}${m.digest ? `@${m.digest}` : ""}`;
}

/** The inverse of formatMirror: repository paths hold no ':' or '@', so the split is unambiguous. */
export function parseMirror(text: string): MirrorName {
  const [nameAndTag = "", digest] = text.split("@");
  const colon = nameAndTag.indexOf(":");
  const repository = colon < 0 ? nameAndTag : nameAndTag.slice(0, colon);
  const tag = colon < 0 ? undefined : nameAndTag.slice(colon + 1);
  return { repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** Two images may not land on the same mirror name, nor may one image be listed twice. */
export function checkMirrorCollisions(images: ImageItem[]): Diagnostic[] {
  const byName = new Map<string, ImageItem>();
  const out: Diagnostic[] = [];
  for (const img of images) {
    const key = formatMirror(img.mirror);
    const first = byName.get(key);
    if (!first) {
      byName.set(key, img);
      continue;
    }
    const a = formatImageRef(first.ref);
    const b = formatImageRef(img.ref);
    out.push({
      pos: img.at,
      path: "",
      message:
        a === b
          ? `image ${b} is listed twice (first at ${formatPos(first.at)})`
          : `images ${a} (${formatPos(first.at)}) and ${b} would both be mirrored as ${key}; ` +
            `set mirror.naming: full-path or rename one`,
    });
  }
  return out;
}
