/** The OCI content model: descriptors, manifests and indexes, and digests. */
import { createHash } from "node:crypto";

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  "os.version"?: string;
}

export interface Descriptor {
  mediaType: string;
  /** `sha256:<64 hex>` */
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
  /** OCI 1.1: what kind of artifact the manifest it points at is (in a referrers list). */
  artifactType?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
  /** OCI 1.1: an artifact's type, and the manifest it is about. */
  artifactType?: string;
  subject?: Descriptor;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
  artifactType?: string;
  subject?: Descriptor;
}

/** A manifest as stored and sent: its exact bytes, which its digest is the hash of. */
export interface RawManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
  /** Where it was read, for messages about what it says (src/oci/parse.ts). */
  origin?: Origin;
}

/** Where a document was read, for messages, and whose fault a bad one is. */
export interface Origin {
  /** A file (`…/images/index.json`, `images/blobs/sha256/… in x.tar`) or a URL. */
  where: string;
  /** True for a file of a bundle or layout the user gave: a bad one is exit 2, else exit 1. */
  bundleFile: boolean;
}

export const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** `linux/arm64/v8` from a descriptor's platform. */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

/**
 * Whether a wanted platform (`linux/arm64`) matches an offered one. A wanted platform without
 * a variant matches any variant, as `docker pull --platform` does (`linux/arm64` takes `v8`).
 */
export function platformMatches(wanted: string, offered: Platform): boolean {
  const [os, arch, variant] = wanted.split("/");
  return os === offered.os && arch === offered.architecture && (!variant || variant === offered.variant);
}

/** The hex part of a digest, used as a file name. */
export function digestHex(digest: string): string {
  if (!DIGEST_PATTERN.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
  return digest.slice("sha256:".length);
}

/** What a HEAD of a manifest says: enough to tell whether a tag moved, without the body. */
export interface ManifestHead {
  digest: string;
  mediaType: string;
  size: number;
}
