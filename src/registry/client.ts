/**
 * A Docker Registry HTTP API v2 / OCI distribution client for one registry: manifests byte for
 * byte, blobs streamed both ways, cross-repository mounts. Every operation retries transient
 * faults (5xx, 429, dropped connections); everything else fails at once with a WorkError that
 * names the image and the registry.
 */
import type { Readable } from "node:stream";
import {
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  MANIFEST_TYPES,
  OCI_INDEX,
  OCI_MANIFEST,
  isSchema1,
} from "../oci/mediaTypes.js";
import { sha256Digest, type Descriptor, type RawManifest } from "../oci/types.js";
import type { ManifestHead } from "../oci/types.js";
import { WorkError } from "../util/errors.js";
import type { RetryOptions } from "../util/retry.js";
import { Authenticator, repositoryScope, type TokenRequester } from "./auth.js";
import type { CredentialSource, Credentials } from "./credentials.js";
import { downloadBlob } from "./download.js";
import { resolveEndpoint, type RegistryEndpoint } from "./endpoint.js";
import { isDigest, manifestNotFound, notFoundCode, unexpectedStatus, type ManifestWhere } from "./errors.js";
import {
  createHttpStack,
  header,
  MAX_SMALL_BODY,
  retryAfterMs,
  type HttpStack,
  type HttpTimeouts,
} from "./http.js";
import { Transport, type Exchange } from "./transport.js";
import { DEFAULT_TUNING, uploadBlob, type BlobOpener, type UploadTuning } from "./upload.js";

export { NotFoundError } from "./errors.js";

export interface RegistryClientOptions {
  /** Accept TLS certificates that do not verify (`--insecure`). */
  insecure?: boolean;
  /** PEM file of extra CAs (`--ca-file`). */
  caFile?: string;
  /** Where credentials come from (a lookup by host), or fixed credentials for this registry. */
  credentials?: CredentialSource | Credentials;
  retry?: RetryOptions;
  userAgent?: string;
  /** Blobs up to this size are uploaded in one PUT; default 32 MiB. */
  monolithicMaxBytes?: number;
  /** PATCH size of chunked uploads; default: the whole blob in one (DEFAULT_TUNING). */
  chunkBytes?: number;
  /** Sockets per host; default 16. */
  maxSockets?: number;
  timeouts?: HttpTimeouts;
}

const ACCEPT = MANIFEST_TYPES.join(", ");

export class RegistryClient {
  readonly endpoint: RegistryEndpoint;
  private readonly http: HttpStack;
  private readonly transport: Transport;
  private readonly tuning: UploadTuning;
  /** Set by the first 404, 405 or 501 from the referrers API: the tag schema is used from then on. */
  private noReferrersApi = false;

  constructor(registry: string | RegistryEndpoint, opts: RegistryClientOptions = {}) {
    this.endpoint = typeof registry === "string" ? resolveEndpoint(registry) : registry;
    this.http = createHttpStack(opts);
    const auth = new Authenticator({
      host: this.endpoint.host,
      credentials: memoCredentials(this.endpoint.host, opts.credentials),
      requestToken: this.tokenRequester(),
    });
    this.transport = new Transport(this.endpoint, this.http, auth, opts.retry ?? {});
    this.tuning = {
      monolithicMaxBytes: opts.monolithicMaxBytes ?? DEFAULT_TUNING.monolithicMaxBytes,
      chunkBytes: opts.chunkBytes ?? DEFAULT_TUNING.chunkBytes,
    };
  }

  get host(): string {
    return this.endpoint.host;
  }

  /** Frees the keep-alive sockets. The client must not be used afterwards. */
  close(): void {
    this.http.close();
  }

  /** Checks that the registry answers and accepts our credentials (GET /v2/). */
  async ping(): Promise<void> {
    const url = `${this.endpoint.baseUrl}/v2/`;
    const res = await this.transport.retrying(`cannot reach registry ${this.host}`, () =>
      this.transport.send({ method: "GET", url: "/v2/", scopes: [] }),
    );
    if (res.status !== 200) throw unexpectedStatus(`registry ${this.host} at ${url}`, res);
  }

  /** The manifest or index `reference` names, with its exact bytes; `name` says how messages call the image. */
  async getManifest(
    repo: string,
    reference: string,
    name = this.imageName(repo, reference),
  ): Promise<RawManifest> {
    const where = { name, repo, reference, host: this.host };
    return this.transport.retrying(`get manifest of ${name} from registry ${this.host}`, async () => {
      const res = await this.transport.send({
        method: "GET",
        url: manifestPath(repo, reference),
        scopes: [repositoryScope(repo, ["pull"])],
        headers: { accept: ACCEPT },
      });
      if (res.status === 404) throw manifestNotFound(where, res, await this.repositoryMissing(repo, res));
      if (res.status !== 200)
        throw unexpectedStatus(`get manifest of ${name} from registry ${this.host}`, res);
      const url = `${this.endpoint.baseUrl}${manifestPath(repo, reference)}`;
      return {
        ...checkedManifest(where, res),
        origin: { where: `image ${name} from ${url}`, bundleFile: false },
      };
    });
  }

  /** Digest, media type and size of what `reference` names, or undefined when it does not exist. */
  async headManifest(
    repo: string,
    reference: string,
    name = this.imageName(repo, reference),
  ): Promise<ManifestHead | undefined> {
    const res = await this.transport.retrying(`check manifest of ${name} at registry ${this.host}`, () =>
      this.transport.send({
        method: "HEAD",
        url: manifestPath(repo, reference),
        scopes: [repositoryScope(repo, ["pull"])],
        headers: { accept: ACCEPT },
      }),
    );
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw unexpectedStatus(`check manifest of ${name} at registry ${this.host}`, res);
    const digest = header(res, "docker-content-digest");
    // Without the digest header only the body tells; fetch it (rare: every common registry sends it).
    if (!digest) return headOf(await this.getManifest(repo, reference, name));
    return { digest, mediaType: mediaTypeOf(res) ?? "", size: Number(header(res, "content-length") ?? 0) };
  }

  /** Stores `m` under `reference` (a tag, or its digest) and checks the registry computed the same digest. */
  async putManifest(
    repo: string,
    reference: string,
    m: RawManifest,
    name = this.imageName(repo, reference),
  ): Promise<void> {
    const what = `push manifest ${m.digest} of ${name} to registry ${this.host}`;
    const res = await this.transport.retrying(what, () =>
      this.transport.send({
        method: "PUT",
        url: manifestPath(repo, reference),
        scopes: [repositoryScope(repo, ["pull", "push"])],
        headers: { "content-type": m.mediaType },
        body: m.bytes,
      }),
    );
    if (res.status !== 201 && res.status !== 200) throw unexpectedStatus(what, res);
    const stored = header(res, "docker-content-digest");
    if (stored !== undefined && stored !== m.digest)
      throw new WorkError(`${what}: the registry stored it as ${stored}`);
  }

  /**
   * The OCI 1.1 referrers API's answer for `digest`: the body of the index listing what refers
   * to it, or undefined when the registry has no such API: it answers 404, as the spec says and
   * Distribution 2.8 does (405 and 501 from registries that route the path but do not implement
   * it). A registry with the API answers an empty index for a subject nothing refers to.
   */
  async referrers(
    repo: string,
    digest: string,
    name = this.imageName(repo, digest),
  ): Promise<Buffer | undefined> {
    // The spec forbids a 404 from a registry with the API: one answer says it for every repository.
    if (this.noReferrersApi) return undefined;
    const what = `list referrers of ${name} at registry ${this.host}`;
    const res = await this.transport.retrying(what, () =>
      this.transport.send({
        method: "GET",
        url: `/v2/${repo}/referrers/${digest}`,
        scopes: [repositoryScope(repo, ["pull"])],
        headers: { accept: OCI_INDEX },
      }),
    );
    if ([404, 405, 501].includes(res.status)) {
      this.noReferrersApi = true;
      return undefined;
    }
    if (res.status !== 200) throw unexpectedStatus(what, res);
    return res.body;
  }

  /**
   * The repository's tags when one page of `n` holds them all, so that a caller can skip asking
   * for tags that are not there (cosign's, the tag schema's); undefined when the list is longer
   * (a `Link` to a next page), refused or not understood: then the caller asks tag by tag.
   */
  async tagsIfFew(repo: string, name: string, n = 1000): Promise<Set<string> | undefined> {
    const what = `list tags of ${name} at registry ${this.host}`;
    const res = await this.transport.retrying(what, () =>
      this.transport.send({
        method: "GET",
        url: `/v2/${repo}/tags/list?n=${n}`,
        scopes: [repositoryScope(repo, ["pull"])],
      }),
    );
    if (res.status !== 200 || header(res, "link") !== undefined) return undefined;
    let tags: unknown;
    try {
      tags = (JSON.parse(res.body.toString("utf8")) as { tags?: unknown }).tags ?? [];
    } catch {
      return undefined;
    }
    if (!Array.isArray(tags) || tags.length >= n || !tags.every((t) => typeof t === "string"))
      return undefined;
    return new Set(tags as string[]);
  }

  /** The blob's size when the repository holds it (0 if the registry does not say), else undefined. */
  async headBlob(repo: string, digest: string): Promise<number | undefined> {
    const what = `check blob ${digest} in ${repo} at registry ${this.host}`;
    const res = await this.transport.retrying(what, () =>
      this.transport.send({
        method: "HEAD",
        url: `/v2/${repo}/blobs/${digest}`,
        scopes: [repositoryScope(repo, ["pull"])],
      }),
    );
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw unexpectedStatus(what, res);
    return Number(header(res, "content-length") ?? 0);
  }

  /**
   * The blob's bytes from `offset` on, streamed. Faults on the way are retried from the last
   * byte delivered; what cannot be recovered is an error of the stream, never an early end.
   * With `size`, the descriptor's, nothing past it is read.
   */
  getBlob(
    repo: string,
    digest: string,
    offset = 0,
    name = `${this.host}/${repo}@${digest}`,
    size?: number,
  ): Promise<Readable> {
    return downloadBlob(
      this.transport,
      { repo, digest, name, ...(size !== undefined ? { size } : {}) },
      offset,
    );
  }

  /** Links a blob `fromRepo` holds into `repo` without sending it; false when the registry would not. */
  async mountBlob(repo: string, digest: string, fromRepo: string): Promise<boolean> {
    const what = `mount blob ${digest} from ${fromRepo} into ${repo} at registry ${this.host}`;
    const query = new URLSearchParams({ mount: digest, from: fromRepo });
    const res = await this.transport.retrying(what, () =>
      this.transport.send({
        method: "POST",
        url: `/v2/${repo}/blobs/uploads/?${query.toString()}`,
        scopes: [repositoryScope(repo, ["pull", "push"]), repositoryScope(fromRepo, ["pull"])],
      }),
    );
    if (res.status === 201) return true;
    if (res.status === 202) await this.cancelUpload(repo, res);
    return false;
  }

  /** Uploads a blob read through `open` (called again with an offset to resume after a fault). */
  uploadBlob(
    repo: string,
    desc: Descriptor,
    open: BlobOpener,
    onBytes?: (n: number) => void,
    name = `${this.host}/${repo}`,
  ): Promise<void> {
    return uploadBlob(this.transport, { repo, name }, desc, open, onBytes, this.tuning);
  }

  /** `127.0.0.1:5000/a/b:tag` or `…@sha256:…`, for messages. */
  imageName(repo: string, reference: string): string {
    return `${this.host}/${repo}${isDigest(reference) ? "@" : ":"}${reference}`;
  }

  /**
   * Whether a 404 on a manifest means the whole repository is unknown: the tag list says
   * NAME_UNKNOWN then. Only asked on the error path, and any doubt means "it exists".
   */
  private async repositoryMissing(repo: string, res: Exchange): Promise<boolean> {
    if (notFoundCode(res) !== "MANIFEST_UNKNOWN") return false;
    try {
      const tags = await this.transport.send({
        method: "GET",
        url: `/v2/${repo}/tags/list?n=1`,
        scopes: [repositoryScope(repo, ["pull"])],
      });
      return tags.status === 404 && notFoundCode(tags) === "NAME_UNKNOWN";
    } catch {
      return false;
    }
  }

  /** A mount the registry refused opened an upload session instead: close it, it is of no use. */
  private async cancelUpload(repo: string, res: Exchange): Promise<void> {
    const location = header(res, "location");
    if (!location) return;
    try {
      const url = new URL(location, res.url).toString();
      await this.transport.send({ method: "DELETE", url, scopes: [repositoryScope(repo, ["pull", "push"])] });
    } catch {
      // Best effort: the registry expires abandoned sessions by itself.
    }
  }

  /** Token requests go through the same agents and TLS settings, without registry auth or retries of their own. */
  private tokenRequester(): TokenRequester {
    return async (req) => {
      const res = await this.http.request(req.url, {
        method: req.method,
        headers: req.headers,
        ...(req.body !== undefined ? { body: req.body } : {}),
        maxBytes: MAX_SMALL_BODY,
      });
      return { status: res.statusCode, body: res.body, retryAfterMs: retryAfterMs(res) };
    };
  }
}

function manifestPath(repo: string, reference: string): string {
  return `/v2/${repo}/manifests/${reference}`;
}

function memoCredentials(
  host: string,
  source: CredentialSource | Credentials | undefined,
): () => Promise<Credentials | undefined> {
  let found: Promise<Credentials | undefined> | undefined;
  return () => (found ??= typeof source === "function" ? source(host) : Promise.resolve(source));
}

function mediaTypeOf(res: Exchange): string | undefined {
  return header(res, "content-type")?.split(";")[0]?.trim() || undefined;
}

function headOf(m: RawManifest): ManifestHead {
  return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length };
}

/** The manifest as received, after checking it is the one asked for and one we can carry. */
function checkedManifest(w: ManifestWhere, res: Exchange): RawManifest {
  const bytes = res.body;
  const mediaType = manifestMediaType(res, bytes);
  if (isSchema1(mediaType)) {
    throw new WorkError(
      `image ${w.name} at ${w.host} has a schema 1 manifest (${mediaType}): schema 1 manifests are deprecated; ` +
        `push the image again with a current docker/buildx`,
    );
  }
  const digest = sha256Digest(bytes);
  if (isDigest(w.reference) && digest !== w.reference) {
    throw new WorkError(
      `manifest of image ${w.name} from ${w.host} has digest ${digest}, not the ${w.reference} asked for`,
    );
  }
  const announced = header(res, "docker-content-digest");
  if (announced?.startsWith("sha256:") && announced !== digest) {
    throw new WorkError(
      `manifest of image ${w.name} from ${w.host} was damaged in transit: it hashes to ${digest}, the registry announced ${announced}`,
    );
  }
  return { bytes, mediaType, digest };
}

/**
 * The manifest's media type: the Content-Type the registry sent, or when that is generic, the
 * body's own `mediaType` (or its shape: old OCI manifests may omit the field).
 */
function manifestMediaType(res: Exchange, bytes: Buffer): string {
  const declared = mediaTypeOf(res);
  if (declared && declared !== "application/json" && declared !== "text/plain") return declared;
  let body: { mediaType?: unknown; schemaVersion?: unknown; manifests?: unknown; signatures?: unknown };
  try {
    body = (JSON.parse(bytes.toString("utf8")) as typeof body | null) ?? {};
  } catch {
    throw new WorkError(`the registry sent a manifest that is not JSON (Content-Type ${declared ?? "none"})`);
  }
  if (typeof body.mediaType === "string") return body.mediaType;
  if (body.schemaVersion === 1) return body.signatures ? DOCKER_SCHEMA1_SIGNED : DOCKER_SCHEMA1;
  return Array.isArray(body.manifests) ? OCI_INDEX : OCI_MANIFEST;
}
