/**
 * Referrers: artifacts (signatures, SBOMs, attestations) about a manifest, found by its digest.
 * The OCI 1.1 referrers API lists them; registries without it use the tag schema, an index under
 * the tag `sha256-<hex>`; cosign stores its artifacts under `sha256-<hex>.sig`, `.att`, `.sbom`.
 */
import { OCI_INDEX } from "./mediaTypes.js";
import { digestHex, sha256Digest, type Descriptor, type RawManifest } from "./types.js";

/** cosign's tags next to an image: signatures, attestations, attached SBOMs. */
export const COSIGN_SUFFIXES = ["sig", "att", "sbom"] as const;

/** The tag schema's tag for a subject: `sha256-<hex>`. */
export function referrersTag(subject: string): string {
  return `sha256-${digestHex(subject)}`;
}

/** What a manifest or index says of itself that a referrers list repeats. */
interface ArtifactFields {
  artifactType?: unknown;
  config?: { mediaType?: unknown };
  annotations?: unknown;
}

/**
 * The descriptor a referrers list holds for a manifest: its artifactType (or, as the OCI spec
 * says, its config's media type when it names none) and its annotations.
 */
export function referrerDescriptor(raw: RawManifest, doc: ArtifactFields): Descriptor {
  const artifactType =
    typeof doc.artifactType === "string"
      ? doc.artifactType
      : typeof doc.config?.mediaType === "string"
        ? doc.config.mediaType
        : undefined;
  const annotations = isStringRecord(doc.annotations) ? doc.annotations : undefined;
  return {
    mediaType: raw.mediaType,
    digest: raw.digest,
    size: raw.bytes.length,
    ...(artifactType ? { artifactType } : {}),
    ...(annotations ? { annotations } : {}),
  };
}

/** The tag schema's index: the descriptors, sorted by digest so equal sets give equal bytes. */
export function referrersIndex(referrers: Descriptor[]): RawManifest {
  const manifests = [...new Map(referrers.map((d) => [d.digest, d])).values()].sort((a, b) =>
    a.digest < b.digest ? -1 : 1,
  );
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  return { bytes, mediaType: OCI_INDEX, digest: sha256Digest(bytes) };
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return (
    typeof v === "object" &&
    v !== null &&
    !Array.isArray(v) &&
    Object.values(v).every((x) => typeof x === "string")
  );
}
