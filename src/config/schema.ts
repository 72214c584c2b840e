/**
 * JSON Schemas of both definition formats, written once with TypeBox. TypeScript derives the
 * raw types from them; `npm run schema` writes them to schema/*.schema.json, which editors read
 * and the loader validates with (loading TypeBox itself would cost every run ~90 ms). A test
 * keeps the files equal to what this module generates.
 */
import { Type, type Static } from "@sinclair/typebox";
import { Ajv } from "ajv";
import standalone from "ajv/dist/standalone/index.js";

const Platform = Type.String({
  pattern: "^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$",
  description: "os/arch or os/arch/variant, e.g. linux/arm64",
});
const Sha256 = Type.String({ pattern: "^[a-f0-9]{64}$", description: "64 lowercase hex digits" });
const Commit = Type.String({ pattern: "^[a-f0-9]{40}$", description: "a full 40-hex git commit" });
const Mode = Type.Union([Type.String({ pattern: "^0?[0-7]{3,4}$" }), Type.Integer({ minimum: 0 })], {
  description: 'file mode in octal digits, e.g. "0644" or "755"',
});
const RelPath = Type.String({ minLength: 1, description: "a relative path" });

const ValueSchema = Type.Recursive(
  (Self) =>
    Type.Union([
      Type.String(),
      Type.Number(),
      Type.Boolean(),
      Type.Null(),
      Type.Array(Self),
      Type.Record(Type.String(), Self),
    ]),
  { $id: "Value" },
);

const strict = { additionalProperties: false } as const;

const NativeImage = Type.Union([
  Type.String({ description: "an image reference, e.g. redis:4.0 or docker-daemon:myapp:1.0" }),
  Type.Object(
    {
      ref: Type.String({ description: "the image reference" }),
      platforms: Type.Optional(Type.Array(Platform, { minItems: 1 })),
      allowMissingPlatforms: Type.Optional(
        Type.Boolean({ description: "record platforms the source lacks instead of failing" }),
      ),
      from: Type.Optional(Type.Union([Type.Literal("registry"), Type.Literal("docker")])),
    },
    strict,
  ),
]);

const NativeGit = Type.Object(
  {
    url: Type.String({ minLength: 1, description: "clone URL; the user's git configuration applies" }),
    commit: Type.Optional(Commit),
    ref: Type.Optional(
      Type.String({ minLength: 1, description: "a tag or branch, resolved once at prepare" }),
    ),
    archive: Type.Optional(
      Type.String({ pattern: "^[^/]+\\.tar\\.gz$", description: "file name under files/" }),
    ),
    submodules: Type.Optional(Type.Boolean()),
    chart: Type.Optional(
      Type.Union([
        RelPath,
        Type.Object({ path: RelPath, name: Type.Optional(Type.String({ minLength: 1 })) }, strict),
      ]),
    ),
  },
  strict,
);

const NativeFile = Type.Object(
  {
    url: Type.String({ pattern: "^https?://", description: "an http(s) URL" }),
    sha256: Type.Optional(Sha256),
    path: Type.Optional(RelPath),
    extract: Type.Optional(Type.Boolean()),
  },
  strict,
);

const NpmDir = Type.Union([
  Type.String({ minLength: 1, description: "a folder of the git tree with a package.json" }),
  Type.Object(
    {
      dir: RelPath,
      packageJson: Type.Optional(
        Type.String({
          pattern: "^[^/\\\\]+\\.json$",
          description: "the package.json's file name in the folder, e.g. alarmWeb_package.json",
        }),
      ),
    },
    strict,
  ),
]);

const NativeNpm = Type.Object(
  {
    git: Type.String({
      minLength: 1,
      description: "the git item whose tree holds the folders: its url or its archive name",
    }),
    dirs: Type.Array(NpmDir, { minItems: 1 }),
    path: Type.Optional(
      Type.String({ pattern: "^[^/].*\\.tar\\.gz$", description: "file under files/, ending in .tar.gz" }),
    ),
  },
  strict,
);

const NativeTemplate = Type.Object(
  {
    source: RelPath,
    dest: Type.String({
      pattern: "^(files|charts/[^/]+)/.+",
      description: "bundle path: files/<path> (served) or charts/<chart>/<path> (an overlay)",
    }),
    mode: Type.Optional(Mode),
  },
  strict,
);

/**
 * One object with every key optional rather than a union of three shapes (a folder, a Helm
 * repository, an OCI registry), as for Telego's items: ajv then names an unknown key as such, and
 * the loader checks which keys go together.
 */
const NativeChart = Type.Object(
  {
    name: Type.Optional(
      Type.String({ minLength: 1, description: "folder name under charts/; with repo: the chart's name" }),
    ),
    path: Type.Optional(RelPath),
    repo: Type.Optional(Type.String({ pattern: "^https?://", description: "a Helm repository's URL" })),
    oci: Type.Optional(
      Type.String({
        pattern: "^oci://[^/]+/.+",
        description: "oci://host/path/chart, as helm pull takes it",
      }),
    ),
    version: Type.Optional(Type.String({ minLength: 1, description: "the chart's exact version" })),
    sha256: Type.Optional(Sha256),
    digest: Type.Optional(
      Type.String({ pattern: "^sha256:[a-f0-9]{64}$", description: "the OCI manifest's digest" }),
    ),
  },
  strict,
);

const NativeRelease = Type.Object(
  {
    name: Type.String({ pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 53 }),
    chart: Type.String({ minLength: 1 }),
    namespace: Type.Optional(Type.String({ pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" })),
    values: Type.Optional(Type.Array(Type.String({ pattern: "^(files|charts/[^/]+)/.+" }))),
  },
  strict,
);

export const NativeSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    name: Type.Optional(Type.String({ pattern: "^[a-zA-Z0-9][a-zA-Z0-9._-]*$" })),
    description: Type.Optional(Type.String()),
    platforms: Type.Optional(Type.Array(Platform, { minItems: 1 })),
    mirror: Type.Optional(
      Type.Object(
        {
          prefix: Type.Optional(
            Type.String({ pattern: "^([a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*)?$" }),
          ),
          naming: Type.Optional(Type.Union([Type.Literal("last-segment"), Type.Literal("full-path")])),
        },
        strict,
      ),
    ),
    values: Type.Optional(Type.Record(Type.String(), ValueSchema)),
    images: Type.Optional(Type.Array(NativeImage)),
    git: Type.Optional(Type.Array(NativeGit)),
    files: Type.Optional(Type.Array(NativeFile)),
    npm: Type.Optional(Type.Array(NativeNpm)),
    charts: Type.Optional(Type.Array(NativeChart)),
    templates: Type.Optional(Type.Array(NativeTemplate)),
    releases: Type.Optional(Type.Array(NativeRelease)),
  },
  { ...strict, title: "bundle definition", $id: "https://bundle.invalid/schema/bundle.schema.json" },
);
export type NativeRaw = Static<typeof NativeSchema>;

/**
 * One object with every key optional rather than a union of four shapes: ajv then reports an
 * unknown key as just that (with a did-you-mean), and the loader checks that exactly one of
 * image / git / url / filemap is there.
 */
const TelegoPrepareItem = Type.Object(
  {
    image: Type.Optional(Type.String({ minLength: 1 })),
    git: Type.Optional(Type.String({ minLength: 1 })),
    url: Type.Optional(Type.String({ pattern: "^https?://" })),
    as: Type.Optional(RelPath),
    filemap: Type.Optional(
      Type.Object({ content: Type.String(), path: RelPath, mode: Type.Optional(Mode) }, strict),
    ),
  },
  strict,
);

export const TelegoSchema = Type.Object(
  {
    comment: Type.Optional(Type.String()),
    local_values: Type.Optional(
      Type.Record(
        Type.String(),
        Type.Union([
          Type.String(),
          Type.Number(),
          Type.Boolean(),
          Type.Object({ read_from_file: RelPath }, strict),
        ]),
      ),
    ),
    prepare: Type.Optional(Type.Array(TelegoPrepareItem)),
    helms: Type.Optional(
      Type.Record(
        Type.String({ pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" }),
        Type.Object(
          {
            "helm-dir": RelPath,
            "overwrite-config": Type.Optional(RelPath),
            namespace: Type.Optional(Type.String()),
          },
          strict,
        ),
      ),
    ),
  },
  strict,
);
export type TelegoRaw = Static<typeof TelegoSchema>;

/** The schema files as published: file name → content. */
export function publishedSchemas(): Record<string, string> {
  return schemaFiles(
    { "bundle.schema.json": NativeSchema, "telego.schema.json": TelegoSchema },
    VALIDATOR_OPTIONS,
  );
}

/**
 * Each schema as a JSON Schema file, and beside it ajv's standalone validator for it
 * (`NAME.validate.cjs`), compiled with `options`.
 */
export function schemaFiles(schemas: Record<string, object>, options: object): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, schema] of Object.entries(schemas)) {
    const text = `${JSON.stringify({ $schema: "http://json-schema.org/draft-07/schema#", ...schema }, null, 2)}\n`;
    out[name] = text;
    out[name.replace(/\.json$/, ".validate.cjs")] = validatorSource(text, options);
  }
  return out;
}

/**
 * The options the loader validates with (src/config/validate.ts turns the errors into sentences).
 * A CommonJS module of ajv's standalone code: compiling the schema at run time cost every
 * command ~100–300 ms of loading and compiling ajv.
 */
export const VALIDATOR_OPTIONS = { allErrors: true, verbose: true, strict: false } as const;

function validatorSource(schemaText: string, options: object): string {
  const ajv = new Ajv({ ...options, code: { source: true } });
  const fn = ajv.compile(JSON.parse(schemaText) as object);
  return `// Generated by \`npm run schema\` (ajv standalone code) from the schema next to it: do not edit.\n${standalone.default(ajv, fn)}\n`;
}
