/** Writes schema/*.schema.json from the TypeBox schemas in src/config/schema.ts. */
import { writeFile } from "node:fs/promises";
import { publishedSchemas } from "../src/config/schema.js";

for (const [name, text] of Object.entries(publishedSchemas())) {
  const target = new URL(`../../schema/${name}`, import.meta.url);
  await writeFile(target, text);
  console.log(`wrote ${target.pathname}`);
}
