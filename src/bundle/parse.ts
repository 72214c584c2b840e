/**
 * The one parser of each file a bundle holds: `bundle.lock.json` and an archive's
 * `bundle-index.json`, checked against their schemas (src/bundle/schema.ts) by ajv's standalone
 * code, then for what one field says about another. A bad value is an InputError naming the
 * file, the field and the value.
 */
import { schemaValidator } from "../config/schemaFiles.js";
import { InputError } from "../util/errors.js";
import { checkData, show } from "../util/schema.js";
import type { ArchiveIndex } from "./archive.js";
import type { Lock } from "./lock.js";
import type { BundleFileSchema } from "./schema.js";

const check = <T>(schema: BundleFileSchema, data: unknown, file: string): T =>
  checkData<T>(schemaValidator(schema), data, file, (m) => new InputError(m));

/** A lock's parsed JSON, checked: its fields, then what one field says about another. */
export function checkLockData(data: unknown, file: string): Lock {
  const lock = check<Lock>("bundle-lock.schema.json", data, file);
  for (const [i, c] of lock.charts.entries())
    if (c.path !== `charts/${c.name}`)
      throw new InputError(
        `${file}: charts[${i}].path: expected ${JSON.stringify(`charts/${c.name}`)}, got ${show(c.path)}`,
      );
  // A chart archive is a file of its own beside the chart folders, never a file inside one.
  for (const [i, c] of lock.charts.entries())
    if (c.archive && !/^charts\/[^/]+\.tgz$/.test(c.archive.path))
      throw new InputError(
        `${file}: charts[${i}].archive.path: expected charts/<file>.tgz, got ${show(c.archive.path)}`,
      );
  for (const t of lock.templates) t.mode &= 0o777;
  for (const c of lock.charts) for (const f of c.files ?? []) f.mode &= 0o777;
  for (const [i, r] of lock.releases.entries())
    for (const [j, v] of r.valuesFiles.entries())
      if (!v.startsWith("files/") && !v.startsWith(`charts/${r.chart}/`))
        throw new InputError(
          `${file}: releases[${i}].valuesFiles[${j}]: expected a path under files/ or charts/${r.chart}/, got ${show(v)}`,
        );
  return lock;
}

/** An archive index's parsed JSON, checked; each member's mode keeps only its permission bits. */
export function checkIndexData(data: unknown, file: string): ArchiveIndex {
  const index = check<ArchiveIndex>("bundle-index.schema.json", data, file);
  for (const m of index.members) m.mode &= 0o777;
  return index;
}
