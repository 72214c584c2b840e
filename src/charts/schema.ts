/**
 * Schemas of a chart's Chart.yaml and Chart.lock as Helm reads them (chart.Metadata and
 * chart.Lock). Only `npm run schema` and the tests load this module: it writes the schemas and
 * ajv's standalone validators (schema/chart-yaml.schema.validate.cjs), which
 * src/charts/metadata.ts runs.
 *
 * The files are read with YAML's failsafe schema, as Helm's YAML-to-JSON step keeps a scalar's
 * text for a string field (`version: 1.10` is "1.10"): every scalar is a string, and a key
 * written with no value (or `~`, `null`) is left out, as Helm leaves the field empty. Unknown
 * keys pass, as Helm ignores them; `name` and `version` may be missing here, since a chart without
 * them is still carried (it is just not packaged).
 */
import { Type, type Static, type TSchema } from "@sinclair/typebox";

const Text = Type.String();
const Texts = Type.Array(Type.String());

const Dependency = Type.Object({
  name: Type.String({ minLength: 1, description: "a chart name" }),
  version: Type.Optional(Text),
  repository: Type.Optional(Text),
  condition: Type.Optional(Text),
  tags: Type.Optional(Texts),
  enabled: Type.Optional(Text),
  "import-values": Type.Optional(Type.Array(Type.Union([Text, Type.Record(Type.String(), Text)]))),
  alias: Type.Optional(Text),
});

export const ChartYamlSchema = Type.Object({
  apiVersion: Type.Optional(Text),
  name: Type.Optional(Text),
  version: Type.Optional(Text),
  kubeVersion: Type.Optional(Text),
  description: Type.Optional(Text),
  type: Type.Optional(Text),
  keywords: Type.Optional(Texts),
  home: Type.Optional(Text),
  sources: Type.Optional(Texts),
  maintainers: Type.Optional(
    Type.Array(
      Type.Object({ name: Type.Optional(Text), email: Type.Optional(Text), url: Type.Optional(Text) }),
    ),
  ),
  icon: Type.Optional(Text),
  appVersion: Type.Optional(Text),
  deprecated: Type.Optional(Text),
  condition: Type.Optional(Text),
  tags: Type.Optional(Text),
  annotations: Type.Optional(Type.Record(Type.String(), Text)),
  dependencies: Type.Optional(Type.Array(Dependency)),
});

export const ChartLockSchema = Type.Object({
  generated: Type.Optional(Text),
  digest: Type.Optional(Text),
  dependencies: Type.Optional(
    Type.Array(
      Type.Object({
        name: Type.String({ minLength: 1, description: "a chart name" }),
        version: Type.String({ minLength: 1, description: "a version" }),
        repository: Type.Optional(Text),
      }),
    ),
  ),
});

export type ChartYaml = Static<typeof ChartYamlSchema>;
export type ChartDependency = Static<typeof Dependency>;
export type ChartLock = Static<typeof ChartLockSchema>;

export type ChartSchemaName = "chart-yaml.schema.json" | "chart-lock.schema.json";

export function chartSchemas(): Record<ChartSchemaName, TSchema> {
  return { "chart-yaml.schema.json": ChartYamlSchema, "chart-lock.schema.json": ChartLockSchema };
}
