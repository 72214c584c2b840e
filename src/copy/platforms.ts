/**
 * Choosing an image's platforms: which children of an index to carry, and the index a registry
 * receives when not all of them are carried.
 */
import { InputError } from "../util/errors.js";
import {
  formatPlatform,
  platformMatches,
  sha256Digest,
  type Descriptor,
  type ImageIndex,
  type RawManifest,
} from "../oci/types.js";

export interface Selection {
  chosen: Descriptor[];
  /** Requested platforms the image does not have. */
  missing: string[];
}

/**
 * Picks, for each wanted platform, the first child that matches it. Children without a real
 * platform (build attestations, `unknown/unknown`) are never chosen.
 */
export function selectPlatforms(
  imageName: string,
  index: ImageIndex,
  wanted: string[],
  allowMissing: boolean,
): Selection {
  const chosen: Descriptor[] = [];
  const missing: string[] = [];
  for (const w of wanted) {
    const child = index.manifests.find((d) => d.platform && platformMatches(w, d.platform));
    if (!child) missing.push(w);
    else if (!chosen.includes(child)) chosen.push(child);
  }
  if (missing.length > 0 && !allowMissing) {
    throw new InputError(
      `${imageName} has no ${missing.join(", ")} image; it has ${offered(index) || "no platforms"}. ` +
        `Request only those platforms, or allow missing ones for this image (allowMissingPlatforms: true)`,
    );
  }
  return { chosen, missing };
}

export function offered(index: ImageIndex): string {
  return index.manifests
    .map((d) => (d.platform ? formatPlatform(d.platform) : undefined))
    .filter((p) => p && p !== "unknown/unknown")
    .join(", ");
}

/**
 * The index of the carried children only, in the source's order and otherwise unchanged.
 * A registry refuses an index whose children it lacks, so this is what a mirror receives when
 * some platforms stay behind; it is a pure function of the source index, so prepare can record
 * its digest and upload produces the same bytes.
 */
export function reducedIndex(source: RawManifest, index: ImageIndex, chosen: Descriptor[]): RawManifest {
  if (chosen.length === index.manifests.length) return source;
  const keep = new Set(chosen.map((d) => d.digest));
  const reduced = { ...index, manifests: index.manifests.filter((d) => keep.has(d.digest)) };
  const bytes = Buffer.from(JSON.stringify(reduced));
  return { bytes, mediaType: source.mediaType, digest: sha256Digest(bytes) };
}
