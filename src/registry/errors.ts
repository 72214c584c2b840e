/** Registry answers as errors that name the image, the repository and the registry. */
import { WorkError } from "../util/errors.js";
import { describeErrorBody, registryErrors } from "./http.js";
import type { Exchange } from "./transport.js";

/** What a 404 said is missing: the repository, a manifest, a blob (registry error codes). */
export type NotFoundKind = "NAME_UNKNOWN" | "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN";

/** The registry does not have it. A mirror falls back to the origin on this error only. */
export class NotFoundError extends WorkError {
  override name = "NotFoundError";
  constructor(
    message: string,
    readonly kind: NotFoundKind,
  ) {
    super(message);
  }
}

/** The registry's error code in a 404, if it gave one. */
export function notFoundCode(res: Exchange): string | undefined {
  return registryErrors(res.body)[0]?.code;
}

export function isDigest(reference: string): boolean {
  return reference.startsWith("sha256:");
}

export interface ManifestWhere {
  name: string;
  repo: string;
  reference: string;
  host: string;
}

/**
 * A 404 on a manifest: an unknown repository, or an unknown tag or digest in a known one.
 * `repositoryMissing` is what the caller found out otherwise: registries with filesystem
 * storage say MANIFEST_UNKNOWN for both, but NAME_UNKNOWN when asked for the tag list.
 */
export function manifestNotFound(w: ManifestWhere, res: Exchange, repositoryMissing = false): NotFoundError {
  if (repositoryMissing || notFoundCode(res) === "NAME_UNKNOWN") {
    return new NotFoundError(
      `image ${w.name} not found: repository ${w.repo} does not exist at ${w.host} (NAME_UNKNOWN)`,
      "NAME_UNKNOWN",
    );
  }
  const ref = isDigest(w.reference) ? `digest ${w.reference}` : `tag ${w.reference}`;
  return new NotFoundError(
    `image ${w.name} not found: manifest unknown for ${ref} in repository ${w.repo} at ${w.host}`,
    "MANIFEST_UNKNOWN",
  );
}

export function blobNotFound(digest: string, w: Omit<ManifestWhere, "reference">): NotFoundError {
  return new NotFoundError(
    `blob ${digest} of image ${w.name} not found in repository ${w.repo} at ${w.host} (BLOB_UNKNOWN)`,
    "BLOB_UNKNOWN",
  );
}

/** Any other answer we did not expect, with the registry's own explanation. */
export function unexpectedStatus(what: string, res: Exchange): WorkError {
  const why = describeErrorBody(res.body);
  return new WorkError(`${what}: HTTP ${res.status}${why ? ` (${why})` : ""}`);
}
