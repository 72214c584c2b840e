/**
 * Schemas of the OCI and Docker data a store reads: a layout's `index.json`, image manifests and
 * indexes (Docker's schema 2 list and manifest too), the fields of an image config we use, and
 * the `manifest.json` of a `docker save` archive. Only `npm run schema` and the tests load this
 * module; src/oci/parse.ts runs the standalone validators generated from it.
 *
 * Digests are `sha256:<64 hex>` (they become file names), sizes non-negative safe integers
 * (blobs are cut off at them), media types and platform fields strings; other fields are let
 * through as the specs allow.
 */
import { Type, type Static } from "@sinclair/typebox";
import type { Descriptor, ImageIndex, ImageManifest } from "./types.js";

const Digest = Type.String({
  pattern: "^sha256:[a-f0-9]{64}$",
  description: "a digest sha256:<64 lowercase hex digits>",
});
const Size = Type.Integer({
  minimum: 0,
  maximum: Number.MAX_SAFE_INTEGER,
  description: "a non-negative whole number of bytes",
});
const Annotations = Type.Record(Type.String(), Type.String());

const PlatformSchema = Type.Object({
  os: Type.String(),
  architecture: Type.String(),
  variant: Type.Optional(Type.String()),
  "os.version": Type.Optional(Type.String()),
});

const DescriptorSchema = Type.Object({
  mediaType: Type.String(),
  digest: Digest,
  size: Size,
  platform: Type.Optional(PlatformSchema),
  annotations: Type.Optional(Annotations),
  urls: Type.Optional(Type.Array(Type.String())),
});

export const ManifestSchema = Type.Object({
  schemaVersion: Type.Literal(2),
  mediaType: Type.Optional(Type.String()),
  config: DescriptorSchema,
  layers: Type.Array(DescriptorSchema),
  annotations: Type.Optional(Annotations),
});

/** An image index or manifest list; a layout's `index.json` is one too. */
export const IndexSchema = Type.Object({
  schemaVersion: Type.Literal(2),
  mediaType: Type.Optional(Type.String()),
  manifests: Type.Array(DescriptorSchema),
  annotations: Type.Optional(Annotations),
});

/**
 * A platform word as the lock's platforms allow it (`linux`, `amd64`, `v8`); empty is "none",
 * as some configs say it (the platform is then unknown, or has no variant).
 */
const word = (what: string, chars: string) =>
  Type.String({ pattern: `^[${chars}]*$`, description: `${what} (lower-case letters, digits)` });

/** The fields of an image config we use: its platform (a lock entry) and its layers' diff_ids. */
export const ConfigSchema = Type.Object({
  os: Type.Optional(word("an OS name", "a-z0-9")),
  architecture: Type.Optional(word("an architecture", "a-z0-9_")),
  variant: Type.Optional(word("a variant", "a-z0-9")),
  rootfs: Type.Optional(Type.Object({ diff_ids: Type.Optional(Type.Array(Digest)) })),
});

/** One segment: not `.` or `..`, no `/`, backslash or NUL (as src/bundle/schema.ts). */
const SEG = String.raw`(?!\.\.?(?:/|$))[^/\\\x00]+`;
const ArchivePath = Type.String({
  pattern: `^${SEG}(?:/${SEG})*$`,
  description: "a relative path inside the archive without ..",
});

/** `docker save`'s `manifest.json`: the images of the archive, each a config file and layer files. */
export const DockerArchiveSchema = Type.Array(
  Type.Object({
    Config: ArchivePath,
    RepoTags: Type.Union([Type.Null(), Type.Array(Type.String())]),
    Layers: Type.Array(ArchivePath),
  }),
);

export type ImageConfig = Static<typeof ConfigSchema>;
export type DockerArchiveEntry = Static<typeof DockerArchiveSchema>[number];

/** The schemas as published (`npm run schema` writes each with its standalone validator). */
export function ociSchemas(): Record<OciSchemaName, object> {
  return {
    "oci-index.schema.json": IndexSchema,
    "oci-manifest.schema.json": ManifestSchema,
    "oci-config.schema.json": ConfigSchema,
    "docker-archive.schema.json": DockerArchiveSchema,
  };
}

export type OciSchemaName =
  | "oci-index.schema.json"
  | "oci-manifest.schema.json"
  | "oci-config.schema.json"
  | "docker-archive.schema.json";

// What the schemas accept is what the code's types promise.
const fits = [
  (x: Static<typeof DescriptorSchema>): Descriptor => x,
  (x: Static<typeof ManifestSchema>): ImageManifest => x,
  (x: Static<typeof IndexSchema>): ImageIndex => x,
];
void fits;
