/**
 * The published JSON Schemas (schema/*.schema.json, generated from src/config/schema.ts), read
 * once when first needed from the package's schema folder.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Validator } from "../util/schema.js";
import { PACKAGE_ROOT } from "../version.js";

/** The definition dialects', the bundle files' (src/bundle/schema.ts), the OCI data's (src/oci/schema.ts) and a chart's (src/charts/schema.ts). */
export type SchemaName =
  | "bundle.schema.json"
  | "telego.schema.json"
  | "bundle-lock.schema.json"
  | "bundle-index.schema.json"
  | "oci-index.schema.json"
  | "oci-manifest.schema.json"
  | "oci-config.schema.json"
  | "docker-archive.schema.json"
  | "chart-yaml.schema.json"
  | "chart-lock.schema.json";

const cache = new Map<string, object>();

export function schemaFile(name: SchemaName): object {
  let schema = cache.get(name);
  if (!schema) {
    schema = JSON.parse(readFileSync(`${PACKAGE_ROOT}schema/${name}`, "utf8")) as object;
    cache.set(name, schema);
  }
  return schema;
}

const load = createRequire(PACKAGE_ROOT);

/**
 * The schema's validator: ajv's standalone code, generated with the schema by `npm run schema`
 * (schema/*.schema.validate.cjs), so that no run loads or compiles ajv.
 */
export function schemaValidator(name: SchemaName): Validator {
  return load(`./schema/${name.replace(/\.json$/, ".validate.cjs")}`) as Validator;
}
