/**
 * Writes schema/*.schema.json and their ajv standalone validators from the TypeBox schemas in
 * src/config/schema.ts (definitions), src/bundle/schema.ts (lock and archive index),
 * src/oci/schema.ts (OCI data) and src/charts/schema.ts (Chart.yaml and Chart.lock).
 */
import { writeFile } from "node:fs/promises";
import { publishedSchemas, schemaFiles } from "../src/config/schema.js";
import { bundleFileSchemas } from "../src/bundle/schema.js";
import { ociSchemas } from "../src/oci/schema.js";
import { chartSchemas } from "../src/charts/schema.js";
import { DATA_VALIDATOR_OPTIONS } from "../src/util/schema.js";

const files = {
  ...publishedSchemas(),
  ...schemaFiles({ ...bundleFileSchemas(), ...ociSchemas(), ...chartSchemas() }, DATA_VALIDATOR_OPTIONS),
};
for (const [name, text] of Object.entries(files)) {
  const target = new URL(`../../schema/${name}`, import.meta.url);
  await writeFile(target, text);
  console.log(`wrote ${target.pathname}`);
}
