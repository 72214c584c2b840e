/**
 * The published JSON Schemas (schema/*.schema.json, generated from src/config/schema.ts), read
 * once when first needed. From dist/src/config the repository's schema folder is three up.
 */
import { readFileSync } from "node:fs";

const cache = new Map<string, object>();

export function schemaFile(name: "bundle.schema.json" | "telego.schema.json"): object {
  let schema = cache.get(name);
  if (!schema) {
    schema = JSON.parse(readFileSync(new URL(`../../../schema/${name}`, import.meta.url), "utf8")) as object;
    cache.set(name, schema);
  }
  return schema;
}
