/**
 * The OCI Distribution pull API over a RegistryCatalog (`bundle serve --registry-port`): `/v2/`,
 * manifests by tag and digest, blobs with Range, tags/list, _catalog and referrers, GET and
 * HEAD only; every write is 405 with the OCI error body, since a bundle is read-only. Blobs are
 * streamed from the bundle file by file position, so memory stays flat however large they are
 * and however many clients read one at once. Plain node:http, not fastify: there is nothing to
 * parse but the path, and the answers are exactly the headers below.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import { pipeline } from "node:stream/promises";
import { isRepositoryPath, isTag } from "../config/imageRef.js";
import { DIGEST_PATTERN } from "../oci/types.js";
import { OCI_INDEX } from "../oci/mediaTypes.js";
import type { RegistryCatalog, ServedBlob } from "./catalog.js";
import { logSafePath, parseUrlPath, PathRejected } from "./paths.js";

export const DEFAULT_REGISTRY_PORT = 5000;
const CLOSE_TIMEOUT_MS = 30_000;
const IDLE_TIMEOUT_MS = 120_000;

export interface RegistryServerOptions {
  catalog: RegistryCatalog;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** PEM certificate and key: HTTPS instead of plain HTTP. */
  tls?: { cert: Buffer; key: Buffer };
  log: (line: string) => void;
}

export interface RegistryServer {
  /** `http://127.0.0.1:5000` (a wildcard host is shown as loopback). */
  url: string;
  port: number;
  close(): Promise<void>;
}

class OciError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export async function startRegistryServer(opts: RegistryServerOptions): Promise<RegistryServer> {
  const handler = (req: IncomingMessage, res: ServerResponse) => void handle(opts, req, res);
  const server = opts.tls ? https.createServer(opts.tls, handler) : http.createServer(handler);
  server.requestTimeout = 0;
  server.setTimeout(IDLE_TIMEOUT_MS, (socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  const shown = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host;
  return {
    url: `${opts.tls ? "https" : "http"}://${shown.includes(":") ? `[${shown}]` : shown}:${port}`,
    port,
    close: () => closeServer(server),
  };
}

async function closeServer(server: http.Server): Promise<void> {
  const force = setTimeout(() => server.closeAllConnections(), CLOSE_TIMEOUT_MS);
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  await closed;
  clearTimeout(force);
}

async function handle(opts: RegistryServerOptions, req: IncomingMessage, res: ServerResponse) {
  res.once("close", () => opts.log(accessLine(req, res)));
  res.setHeader("Docker-Distribution-API-Version", "registry/2.0");
  try {
    await route(opts.catalog, req, res);
  } catch (err) {
    if (err instanceof OciError) return void ociError(res, err);
    if (err instanceof PathRejected)
      return void ociError(res, new OciError(400, "NAME_INVALID", err.message));
    // A client that went away is no error; a blob that failed its check while sent is one.
    const gone = (err as NodeJS.ErrnoException).code === "ERR_STREAM_PREMATURE_CLOSE";
    if (!gone)
      opts.log(`error: ${req.method ?? ""} ${logSafePath(req.url ?? "")}: ${(err as Error).message}`);
    // Headers gone out: only a cut connection tells the client the body is not whole.
    if (res.headersSent) return void res.destroy();
    ociError(res, new OciError(500, "UNKNOWN", "internal error"));
  }
}

/** The path's segments; `/v2/` is the one path with a trailing slash. */
function segments(url: string): string[] {
  const pathname = url.split("?", 1)[0];
  return pathname === "/v2/" || pathname === "/v2" ? ["v2"] : parseUrlPath(url);
}

async function route(catalog: RegistryCatalog, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // Before the path is parsed: an upload's path (`…/blobs/uploads/`) need not be one we serve.
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("Allow", "GET, HEAD");
    throw new OciError(405, "UNSUPPORTED", `${req.method ?? ""}: this registry serves bundles, read-only`);
  }
  const seg = segments(req.url ?? "");
  if (seg[0] !== "v2") throw new OciError(404, "NOT_FOUND", "not a registry path");
  if (seg.length === 1) return json(req, res, 200, {});
  if (seg.length === 2 && seg[1] === "_catalog")
    return json(req, res, 200, { repositories: catalog.repositories() });
  if (seg.length < 4) throw new OciError(404, "NOT_FOUND", "not a registry path");
  const [kind, ref] = seg.slice(-2) as [string, string];
  const name = repositoryName(catalog, seg.slice(1, -2));
  if (kind === "tags" && ref === "list") return json(req, res, 200, { name, tags: catalog.tags(name) ?? [] });
  if (kind === "manifests") return manifest(catalog, req, res, name, ref);
  if (kind === "blobs") return blob(req, res, await servedBlob(catalog, name, ref));
  if (kind === "referrers") return referrers(catalog, req, res, name, digestOf(ref, "DIGEST_INVALID"));
  throw new OciError(404, "NOT_FOUND", "not a registry path");
}

/** The carried referrers of a subject (none for a subject nothing refers to), `?artifactType=` applied. */
function referrers(
  catalog: RegistryCatalog,
  req: IncomingMessage,
  res: ServerResponse,
  name: string,
  subject: string,
): void {
  const artifactType = new URL(req.url ?? "", "http://x").searchParams.get("artifactType") ?? undefined;
  if (artifactType !== undefined) res.setHeader("OCI-Filters-Applied", "artifactType");
  const manifests = catalog.referrers(name, subject, artifactType);
  return json(req, res, 200, { schemaVersion: 2, mediaType: OCI_INDEX, manifests }, OCI_INDEX);
}

function repositoryName(catalog: RegistryCatalog, parts: string[]): string {
  const name = parts.join("/");
  if (!isRepositoryPath(name)) throw new OciError(400, "NAME_INVALID", `invalid repository name "${name}"`);
  if (!catalog.has(name)) throw new OciError(404, "NAME_UNKNOWN", `repository ${name} is not served`);
  return name;
}

function digestOf(ref: string, code: string): string {
  if (!DIGEST_PATTERN.test(ref)) throw new OciError(400, code, `"${ref}" is not a sha256 digest`);
  return ref;
}

async function manifest(
  catalog: RegistryCatalog,
  req: IncomingMessage,
  res: ServerResponse,
  name: string,
  ref: string,
): Promise<void> {
  if (!ref.startsWith("sha256:") && !isTag(ref))
    throw new OciError(400, "TAG_INVALID", `invalid tag "${ref}"`);
  if (ref.startsWith("sha256:")) digestOf(ref, "DIGEST_INVALID");
  const m = await catalog.manifest(name, ref);
  if (!m) throw new OciError(404, "MANIFEST_UNKNOWN", `manifest ${name}:${ref} is not served`);
  res.writeHead(200, {
    "Content-Type": m.mediaType,
    "Content-Length": m.bytes.length,
    "Docker-Content-Digest": m.digest,
    ETag: `"${m.digest}"`,
  });
  res.end(req.method === "HEAD" ? undefined : m.bytes);
}

async function servedBlob(catalog: RegistryCatalog, name: string, ref: string): Promise<ServedBlob> {
  const found = await catalog.blob(name, digestOf(ref, "DIGEST_INVALID"));
  if (!found) throw new OciError(404, "BLOB_UNKNOWN", `blob ${ref} is not served in ${name}`);
  return found;
}

/** The whole blob (200) or the one range asked (206), streamed from its place in the bundle. */
async function blob(req: IncomingMessage, res: ServerResponse, b: ServedBlob): Promise<void> {
  const range = parseRange(req.headers.range, b.size);
  const headers = {
    "Content-Type": "application/octet-stream",
    "Docker-Content-Digest": b.digest,
    ETag: `"${b.digest}"`,
    "Accept-Ranges": "bytes",
  };
  if (range === "unsatisfiable") {
    res.writeHead(416, { ...headers, "Content-Range": `bytes */${b.size}`, "Content-Length": 0 });
    res.end();
    return;
  }
  const length = range ? range.end - range.start + 1 : b.size;
  res.writeHead(range ? 206 : 200, {
    ...headers,
    "Content-Length": length,
    ...(range ? { "Content-Range": `bytes ${range.start}-${range.end}/${b.size}` } : {}),
  });
  if (req.method === "HEAD" || length === 0) return void res.end();
  await pipeline(b.open(range), res);
}

/**
 * One `bytes=` range of `Range`, clamped to the blob; undefined (the whole blob) when there is
 * none or it is not one we read (several ranges: a registry client never asks for those).
 */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  const m = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    return suffix === 0 || size === 0
      ? "unsatisfiable"
      : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  return start >= size || start > end ? "unsatisfiable" : { start, end };
}

function json(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  body: unknown,
  type = "application/json",
): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { "Content-Type": type, "Content-Length": bytes.length });
  res.end(req.method === "HEAD" ? undefined : bytes);
}

/** The error body of the distribution spec: `{"errors":[{"code","message","detail"}]}`. */
function ociError(res: ServerResponse, err: OciError): void {
  const bytes = Buffer.from(
    JSON.stringify({ errors: [{ code: err.code, message: err.message, detail: {} }] }),
  );
  // A refused write's body is read and dropped, then the connection closes: closing with the
  // body unread would reset it, and the client could lose the answer.
  if (!res.req.complete) {
    res.req.resume();
    res.setHeader("Connection", "close");
  }
  res.writeHead(err.status, { "Content-Type": "application/json", "Content-Length": bytes.length });
  res.end(res.req.method === "HEAD" ? undefined : bytes);
}

/** `time remote METHOD path status out=BYTES` (the body's length); the path's control characters escaped. */
function accessLine(req: IncomingMessage, res: ServerResponse): string {
  const sent = req.method === "HEAD" ? 0 : Number(res.getHeader("content-length") ?? 0);
  const path = logSafePath(req.url ?? "");
  const status = res.writableFinished ? String(res.statusCode) : `${res.statusCode}-aborted`;
  return `${new Date().toISOString()} ${req.socket.remoteAddress ?? "-"} ${req.method ?? "-"} ${path} ${status} out=${sent} (registry)`;
}
