/** Writes schema/bundle.schema.json from the TypeBox schema the loader validates with. */
import { writeFile } from "node:fs/promises";
import { publishedSchema } from "../src/config/schema.js";

const target = new URL("../../schema/bundle.schema.json", import.meta.url);
await writeFile(target, publishedSchema());
console.log(`wrote ${target.pathname}`);
