/**
 * Parse, don't cast: every OCI or Docker document a store reads goes through one of these before
 * any of it names a file, a blob or a tag. A bad one is an error naming where it came from, the
 * field and the value: exit 2 when it is a file the user handed us (a bundle's), exit 1 when a
 * registry or a daemon sent it. The schemas (src/oci/schema.ts) are checked by
 * ajv's standalone code that `npm run schema` generates from them.
 */
import { schemaValidator } from "../config/schemaFiles.js";
import { checkData } from "../util/schema.js";
import { InputError, WorkError, type BundleError } from "../util/errors.js";
import { isImageManifest, isIndex, isSchema1 } from "./mediaTypes.js";
import type { ImageIndex, ImageManifest, Origin, RawManifest } from "./types.js";
import type { DockerArchiveEntry, ImageConfig, OciSchemaName } from "./schema.js";

export type { DockerArchiveEntry, ImageConfig, Origin };

function failure(origin: Origin): (message: string) => BundleError {
  return (m) => (origin.bundleFile ? new InputError(m) : new WorkError(m));
}

function json(bytes: Buffer | string, origin: Origin): unknown {
  try {
    return JSON.parse(bytes.toString());
  } catch (err) {
    throw failure(origin)(`${origin.where}: not valid JSON (${(err as Error).message})`);
  }
}

function checked<T>(schema: OciSchemaName, data: unknown, origin: Origin): T {
  return checkData<T>(schemaValidator(schema), data, origin.where, failure(origin));
}

/** An OCI layout's `index.json`. */
export async function parseIndexFile(bytes: Buffer | string, origin: Origin): Promise<ImageIndex> {
  return checked<ImageIndex>("oci-index.schema.json", json(bytes, origin), origin);
}

/**
 * A manifest or an index, by its media type (or, without one, by its shape, as old OCI
 * manifests may omit it). `name` is the image, for messages; `raw.origin` says where it was read.
 */
export async function parseManifest(name: string, raw: RawManifest): Promise<ImageIndex | ImageManifest> {
  const origin = raw.origin ?? { where: `manifest ${raw.digest} of ${name}`, bundleFile: false };
  const fail = failure(origin);
  if (isSchema1(raw.mediaType))
    throw fail(
      `${name}: schema 1 manifests are deprecated and not supported; push the image again with a current docker or buildx`,
    );
  const doc = json(raw.bytes, origin) as { mediaType?: unknown; manifests?: unknown; config?: unknown };
  const type = raw.mediaType || (typeof doc?.mediaType === "string" ? doc.mediaType : "");
  if (isIndex(type) || (!type && doc?.manifests !== undefined))
    return checked<ImageIndex>("oci-index.schema.json", doc, origin);
  if (isImageManifest(type) || (!type && doc?.config !== undefined))
    return checked<ImageManifest>("oci-manifest.schema.json", doc, origin);
  throw fail(`${origin.where}: ${name}: unsupported manifest type ${JSON.stringify(type)} (${raw.digest})`);
}

/** The fields of an image config we use (platform, diff_ids). */
export async function parseConfig(bytes: Buffer | string, origin: Origin): Promise<ImageConfig> {
  return checked<ImageConfig>("oci-config.schema.json", json(bytes, origin), origin);
}

/** A `docker save` archive's `manifest.json`. */
export async function parseDockerArchive(
  bytes: Buffer | string,
  origin: Origin,
): Promise<DockerArchiveEntry[]> {
  return checked<DockerArchiveEntry[]>("docker-archive.schema.json", json(bytes, origin), origin);
}
