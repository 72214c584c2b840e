/**
 * Schemas of the files a bundle holds, `bundle.lock.json` and an archive's `bundle-index.json`:
 * what they say is checked before any of it names a file, a folder or a helm argument. Only
 * `npm run schema` and the tests load this module: it writes the schemas and ajv's standalone
 * validators (schema/bundle-lock.schema.validate.cjs), which src/bundle/parse.ts runs, so that no
 * command loads TypeBox or compiles ajv.
 *
 * Names match their grammar (Helm's release-name rule, a Kubernetes namespace, a plain chart
 * name, the OCI repository grammar for mirrors), digests are `sha256:<64 hex>`, paths are
 * relative and normalised (no `..`, `.`, empty segment or backslash) under the folder their kind
 * lives in, sizes and offsets are non-negative integers; modes keep only their permission bits.
 */
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import type { Lock } from "./lock.js";
import type { ArchiveIndex } from "./archive.js";

/** One path segment: not `.` or `..`, no `/`, backslash or NUL. */
const SEG = String.raw`(?!\.\.?(?:/|$))[^/\\\x00]+`;
const REL = `${SEG}(?:/${SEG})*`;

const relPath = (description = "a relative path without .. (e.g. tools/x.tgz)") =>
  Type.String({ pattern: `^${REL}$`, description });
const under = (folder: string) =>
  Type.String({
    pattern: `^${folder}/${REL}$`,
    description: `a relative path under ${folder}/ without ..`,
  });

const Size = Type.Integer({ minimum: 0, description: "a non-negative whole number" });
const Sha256 = Type.String({ pattern: "^[a-f0-9]{64}$", description: "64 lowercase hex digits" });
const Digest = Type.String({
  pattern: "^sha256:[a-f0-9]{64}$",
  description: "a digest sha256:<64 lowercase hex digits>",
});
const Commit = Type.String({ pattern: "^[a-f0-9]{40}$", description: "a full 40-hex git commit" });
const Platform = Type.String({
  pattern: "^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$",
  description: "a platform os/arch[/variant]",
});
/** A file mode; the parser keeps only its permission bits (no setuid, setgid or sticky bit). */
const Mode = Type.Integer({ minimum: 0, maximum: 0o7777, description: "a file mode (0 to 0o7777)" });
/** A plain name: one path segment of letters, digits, `.`, `_`, `-` (src/util/paths.ts segmentName). */
const PlainName = (what: string) =>
  Type.String({
    pattern: "^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$",
    description: `${what} (letters, digits, ., _, -, not starting with a dot)`,
  });
/** Helm's rule for release names: a DNS-1123 subdomain of at most 53 characters. */
const ReleaseName = Type.String({
  pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
  maxLength: 53,
  description: "a Helm release name (lower-case letters, digits, - and ., at most 53)",
});
const Namespace = Type.String({
  pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
  maxLength: 63,
  description: "a Kubernetes namespace (lower-case letters, digits and -, at most 63)",
});
const COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
/** The OCI distribution grammar: `repo/path:tag`, `@sha256:…` or both. */
const Mirror = Type.String({
  pattern: `^(?=[^:@]*[:@])${COMPONENT}(?:/${COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`,
  description: "an OCI repository name with a tag or digest (e.g. teleinfra/redis:4.0)",
});

/** A subchart prepare fetched into `charts/<chart>/charts/<name>-<version>.tgz`, pinned. */
const ChartDependency = Type.Object({
  name: Type.String({ minLength: 1 }),
  version: Type.String({ minLength: 1 }),
  repository: Type.String({ minLength: 1 }),
  sha256: Sha256,
  digest: Type.Optional(Digest),
  parent: Type.Optional(Type.String({ minLength: 1 })),
});

const LockSchema = Type.Object({
  lockVersion: Type.Literal(1),
  name: PlainName("a bundle name"),
  tool: Type.Object({ name: Type.Literal("bundle"), version: Type.String() }),
  platforms: Type.Array(Platform),
  images: Type.Array(
    Type.Object({
      ref: Type.String({ minLength: 1 }),
      source: Type.Union([Type.Literal("registry"), Type.Literal("docker")]),
      digest: Digest,
      mediaType: Type.String(),
      size: Size,
      platforms: Type.Array(
        Type.Object({ platform: Platform, digest: Digest, mediaType: Type.String(), size: Size }),
      ),
      missingPlatforms: Type.Array(Platform),
      mirror: Mirror,
      mirrorDigest: Digest,
      blobs: Type.Array(Type.Object({ digest: Digest, size: Size, mediaType: Type.String() })),
      bytes: Size,
      // Issue 13, prepare --verify-key: the cosign signature checked before the image was carried.
      verified: Type.Optional(
        Type.Object({
          key: Type.String({ pattern: "^[a-f0-9]{16}$", description: "the key's id (sha256 of its DER)" }),
          signature: Digest,
        }),
      ),
      referrers: Type.Optional(
        Type.Array(
          Type.Object({
            subject: Digest,
            digest: Digest,
            mediaType: Type.String(),
            size: Size,
            artifactType: Type.Optional(Type.String()),
            annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
            tag: Type.Optional(
              Type.String({
                pattern: "^sha256-[a-f0-9]{64}\\.(sig|att|sbom)$",
                description: "a cosign tag sha256-<64 hex>.sig, .att or .sbom",
              }),
            ),
            manifests: Type.Optional(
              Type.Array(Type.Object({ digest: Digest, mediaType: Type.String(), size: Size })),
            ),
            blobs: Type.Array(Type.Object({ digest: Digest, size: Size, mediaType: Type.String() })),
          }),
        ),
      ),
    }),
  ),
  git: Type.Array(
    Type.Object({
      url: Type.String({ minLength: 1 }),
      commit: Commit,
      archive: relPath("a relative path under files/ without .."),
      size: Size,
      sha256: Sha256,
    }),
  ),
  files: Type.Array(
    Type.Object({
      path: relPath("a relative path under files/ without .."),
      size: Size,
      sha256: Sha256,
      url: Type.Optional(Type.String()),
    }),
  ),
  npm: Type.Optional(
    Type.Array(
      Type.Object({
        git: relPath("a relative path under files/ without .."),
        path: relPath("a relative path under files/ without .."),
        dirs: Type.Array(
          Type.Object({
            dir: Type.String({
              pattern: `^(?:\\.|${REL})$`,
              description: "a folder of the git tree, relative, without ..",
            }),
            packageJson: Sha256,
            lockfileGiven: Type.Boolean(),
            packageLock: Sha256,
            packages: Size,
          }),
        ),
        key: Sha256,
        size: Size,
        sha256: Sha256,
      }),
    ),
  ),
  charts: Type.Array(
    Type.Object({
      name: PlainName("a chart name"),
      path: under("charts"),
      files: Type.Optional(
        Type.Array(
          Type.Object({
            path: relPath("a relative path inside the chart without .."),
            size: Size,
            sha256: Sha256,
            mode: Mode,
          }),
        ),
      ),
      // Issue 13, chart sources: the chart's version, its original archive and where it came from.
      version: Type.Optional(Type.String({ minLength: 1 })),
      archive: Type.Optional(Type.Object({ path: under("charts"), size: Size, sha256: Sha256 })),
      origin: Type.Optional(
        Type.Union([
          Type.Object({
            kind: Type.Literal("repo"),
            url: Type.String({ minLength: 1 }),
            name: Type.String({ minLength: 1 }),
            version: Type.String({ minLength: 1 }),
            sha256: Sha256,
            dependencies: Type.Optional(Type.Array(ChartDependency)),
          }),
          Type.Object({
            kind: Type.Literal("oci"),
            ref: Type.String({ pattern: "^oci://" }),
            version: Type.String({ minLength: 1 }),
            digest: Digest,
            sha256: Sha256,
            dependencies: Type.Optional(Type.Array(ChartDependency)),
          }),
        ]),
      ),
      mirror: Type.Optional(Mirror),
    }),
  ),
  releases: Type.Array(
    Type.Object({
      name: ReleaseName,
      chart: PlainName("a chart name"),
      namespace: Namespace,
      valuesFiles: Type.Array(relPath("a relative path under files/ or charts/<chart>/ without ..")),
    }),
    { default: [] },
  ),
  templates: Type.Array(
    Type.Object({
      dest: Type.String({
        pattern: `^(?:files|charts)/${REL}$`,
        description: "a relative path under files/ or charts/ without ..",
      }),
      source: under("templates"),
      syntax: Type.Union([Type.Literal("handlebars"), Type.Literal("dollar")]),
      mode: Mode,
      sha256: Sha256,
      origin: Type.Object({ file: Type.String(), line: Size, col: Size }),
      siteValues: Type.Array(Type.String()),
    }),
  ),
  values: under("templates"),
  valuesSize: Type.Optional(Size),
  valuesSha256: Type.Optional(Sha256),
  siteValues: Type.Array(Type.String()),
  update: Type.Optional(
    Type.Object({
      since: Sha256,
      omittedBlobs: Type.Array(Digest),
      omittedFiles: Type.Array(relPath("a relative path under files/ without ..")),
    }),
  ),
});

const MemberSchema = Type.Object({
  path: relPath("a relative path inside the bundle without .."),
  size: Size,
  offset: Size,
  mode: Type.Integer({ minimum: 0, description: "a file mode" }),
  sha256: Type.Optional(Sha256),
});

const IndexSchema = Type.Object({
  format: Type.Literal("bundle-archive"),
  version: Type.Literal(1),
  members: Type.Array(MemberSchema),
  totalBytes: Size,
});

// What the schemas accept is what the code's types promise.
const lockFits = (x: Static<typeof LockSchema>): Lock => x;
const indexFits = (x: Static<typeof IndexSchema>): ArchiveIndex => x;
void lockFits;
void indexFits;

/** The schemas of the files a bundle holds, published beside the definition's (`npm run schema`). */
export function bundleFileSchemas(): Record<BundleFileSchema, TSchema> {
  return { "bundle-lock.schema.json": LockSchema, "bundle-index.schema.json": IndexSchema };
}

export type BundleFileSchema = "bundle-lock.schema.json" | "bundle-index.schema.json";
