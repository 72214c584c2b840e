/**
 * The main node's file server (`bundle serve`): what Telego did with an unauthenticated
 * `python3 -m http.server` run as root, done properly. fastify does the HTTP; `send` (the engine
 * of express.static) does GET/HEAD with Range, conditional requests and Content-Length. `send`
 * rather than @fastify/static: @fastify/send always makes its own weak ETag and checks
 * If-None-Match and If-Range against that alone, where `send` honours the strong sha256 ETag
 * set here. Uploads are PUTs with a bearer token, verified against a declared sha256 and
 * stored atomically (upload.ts). Every path goes through paths.ts, so nothing outside root is
 * read or written.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { mkdir, realpath, stat } from "node:fs/promises";
import type { Stats } from "node:fs";
import type { Readable } from "node:stream";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import send from "send";
import { TokenCheck } from "./auth.js";
import { DigestStore, FileChanging, sameVersion } from "./digests.js";
import { listBundle } from "./list.js";
import {
  logSafePath,
  parseUrlPath,
  PathRejected,
  relativeTo,
  resolveForRead,
  resolveForWrite,
} from "./paths.js";
import { storeUpload, sweepTempDir, UploadRefused } from "./upload.js";

export const DEFAULT_PORT = 8003;
export const DEFAULT_HOST = "0.0.0.0";
/** Large enough for any bundle file; a bound on how much disk one authorised upload can fill. */
export const DEFAULT_MAX_UPLOAD_BYTES = 64 * 2 ** 30;
const DEFAULT_CLOSE_TIMEOUT_MS = 30_000;
/** A connection silent this long is dropped: a stalled client must not hold a slot forever. */
const IDLE_TIMEOUT_MS = 120_000;
export const CHECKSUM_HEADER = "x-checksum-sha256";

export interface FileServerOptions {
  /** The folder served; created when missing. */
  root: string;
  /** Default 0.0.0.0: the cluster's nodes download from it. */
  host?: string;
  /** Default 8003; 0 picks a free port. */
  port?: number;
  /** Bearer token for uploads; without one every upload is refused with 403. */
  token?: string;
  /** Larger bodies are refused with 413; default 64 GiB. */
  maxUploadBytes?: number;
  /** One access-log line per request; default stderr. */
  log?: (line: string) => void;
  /** How long close() lets running requests finish before cutting them; default 30 s. */
  closeTimeoutMs?: number;
}

export interface FileServer {
  /** Base URL, e.g. `http://127.0.0.1:8003` (a wildcard host is shown as loopback). */
  url: string;
  port: number;
  /** Stops accepting, lets running requests finish (bounded wait), then closes. */
  close(): Promise<void>;
}

interface ByteCount {
  in: number;
  out?: number;
}

interface Context {
  root: string;
  digests: DigestStore;
  tokens: TokenCheck;
  maxUploadBytes: number;
  /** Body bytes of each request: received (PUT) and sent (GET's file), for the access log. */
  bytes: WeakMap<IncomingMessage, ByteCount>;
  log: (line: string) => void;
}

export async function startFileServer(opts: FileServerOptions): Promise<FileServer> {
  const log = opts.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const ctx = await openRoot(opts, log);
  const app = Fastify({
    logger: false,
    // Uploads of many GiB take long: no bound on a whole request, only on silence.
    requestTimeout: 0,
    connectionTimeout: IDLE_TIMEOUT_MS,
    return503OnClosing: true,
  });
  let closing: Promise<void> | undefined;
  addAccessLog(app, ctx, () => closing !== undefined);
  addRoutes(app, ctx);
  const port = opts.port ?? DEFAULT_PORT;
  const host = opts.host ?? DEFAULT_HOST;
  await app.listen({ host, port }).catch(async (err: unknown) => {
    await app.close();
    throw err;
  });
  const address = app.server.address();
  const actualPort = typeof address === "object" && address ? address.port : port;
  return {
    url: `http://${displayHost(host)}:${actualPort}`,
    port: actualPort,
    close: () => (closing ??= closeGracefully(app, opts.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS)),
  };
}

async function openRoot(opts: FileServerOptions, log: (line: string) => void): Promise<Context> {
  await mkdir(opts.root, { recursive: true });
  // Every containment check compares real paths: a root reached through a symlink is fine.
  const root = await realpath(opts.root);
  const digests = new DigestStore(root);
  await digests.init();
  await sweepTempDir(root);
  return {
    root,
    digests,
    tokens: new TokenCheck(opts.token),
    maxUploadBytes: opts.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES,
    bytes: new WeakMap(),
    log,
  };
}

function addRoutes(app: FastifyInstance, ctx: Context): void {
  // Bodies are streams for the upload handler to read: no parser may buffer or decode one.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_req, _payload, done) => done(null));
  app.setErrorHandler((err, request, reply) => sendError(ctx, request, reply, err));
  app.route({
    method: ["GET", "HEAD"],
    url: "/_list/*",
    exposeHeadRoute: false,
    handler: (request, reply) => listHandler(ctx, request, reply),
  });
  app.route({
    method: ["GET", "HEAD"],
    url: "/*",
    exposeHeadRoute: false,
    handler: (request, reply) => fileHandler(ctx, request, reply),
  });
  app.put("/*", (request, reply) => uploadHandler(ctx, request, reply));
}

async function listHandler(ctx: Context, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const segments = parseUrlPath(request.raw.url ?? "");
  if (segments.length !== 2) throw new PathRejected(400, "list a bundle with /_list/<bundle>");
  const dir = await resolveForRead(ctx.root, segments.slice(1));
  const dirStat = dir === undefined ? undefined : await stat(dir).catch(() => undefined);
  if (dir === undefined || !dirStat?.isDirectory()) throw new PathRejected(404, `no bundle ${segments[1]}`);
  const files = await listBundle(ctx.root, dir, ctx.digests);
  await reply.header("cache-control", "no-store").send({ files });
}

async function fileHandler(ctx: Context, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const file = await resolveForRead(ctx.root, parseUrlPath(request.raw.url ?? ""));
  const version = file === undefined ? undefined : await stat(file).catch(() => undefined);
  const rel = file === undefined ? undefined : relativeTo(ctx.root, file);
  if (file === undefined || !version?.isFile() || rel === undefined) throw new PathRejected(404, "not found");
  const sha256 = await ctx.digests.digestOf(rel, file, version);
  reply.hijack();
  streamFile(ctx, request.raw, reply.raw, rel, version, sha256);
}

/** Hands the file to `send`, with the strong ETag of its sha256 set for every check it makes. */
function streamFile(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
  rel: string,
  hashed: Stats,
  sha256: string,
): void {
  res.setHeader("ETag", `"${sha256}"`);
  res.setHeader(CHECKSUM_HEADER, sha256);
  const encoded = `/${rel.split("/").map(encodeURIComponent).join("/")}`;
  send(req, encoded, { root: ctx.root, dotfiles: "allow", index: false })
    .on("headers", (out: ServerResponse, _path: string, sent: Stats) => {
      // Replaced since it was hashed (an upload landed): no digest beats a wrong one.
      if (!sameVersion(hashed, sent)) {
        out.removeHeader("ETag");
        out.removeHeader(CHECKSUM_HEADER);
      }
    })
    .on("stream", (stream: Readable) => {
      const count = countOf(ctx, req);
      count.out = 0;
      stream.on("data", (chunk: Buffer) => void (count.out = (count.out ?? 0) + chunk.length));
    })
    .pipe(res);
}

async function uploadHandler(ctx: Context, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (!authorized(ctx, request, reply)) return;
  const segments = parseUrlPath(request.raw.url ?? "");
  const sha256 = declaredDigest(request.headers[CHECKSUM_HEADER]);
  const length = Number(request.headers["content-length"] ?? 0);
  if (length > ctx.maxUploadBytes)
    throw new UploadRefused(413, `the body is larger than the limit of ${ctx.maxUploadBytes} bytes`);
  const target = await resolveForWrite(ctx.root, segments);
  const stored = await storeUpload(request.raw, {
    root: ctx.root,
    target,
    sha256,
    maxBytes: ctx.maxUploadBytes,
    onBytes: (n) => void (countOf(ctx, request.raw).in += n),
    // Recorded before the rename, so no reader ever has to hash the new file itself.
    beforeRename: async (file, version) => {
      const rel = relativeTo(ctx.root, file);
      if (rel !== undefined) await ctx.digests.record(rel, version, sha256);
    },
  });
  await reply.code(201).send({ path: segments.slice(1).join("/"), size: stored.version.size, sha256 });
}

/** Answers 403/401 itself and returns false when the request may not upload. */
function authorized(ctx: Context, request: FastifyRequest, reply: FastifyReply): boolean {
  const result = ctx.tokens.check(request.headers.authorization);
  if (result === "ok") return true;
  if (result === "no-token-configured") {
    void refuse(reply, 403, "this server takes no uploads: it was started without --token-file");
  } else {
    reply.header("www-authenticate", 'Bearer realm="bundle"');
    void refuse(reply, 401, result === "missing" ? "a bearer token is required" : "the token is not valid");
  }
  return false;
}

function declaredDigest(value: string | string[] | undefined): string {
  const digest = Array.isArray(value) ? undefined : value?.trim().toLowerCase();
  if (!digest || !/^[0-9a-f]{64}$/.test(digest))
    throw new UploadRefused(
      400,
      `the ${CHECKSUM_HEADER} header with the body's sha256 (64 hex digits) is required`,
    );
  return digest;
}

function sendError(ctx: Context, request: FastifyRequest, reply: FastifyReply, err: unknown) {
  if (err instanceof PathRejected || err instanceof UploadRefused)
    return refuse(reply, err.status, err.message);
  if (err instanceof FileChanging) {
    reply.header("retry-after", "5");
    return refuse(reply, 503, err.message);
  }
  const status = (err as { statusCode?: number }).statusCode;
  // fastify's own client errors (a malformed URL, say) keep their status and message.
  if (status !== undefined && status >= 400 && status < 500)
    return refuse(reply, status, (err as Error).message);
  // The client learns nothing of the server's insides; the operator reads them in the log.
  ctx.log(`error: ${request.method} ${request.raw.url ?? ""}: ${(err as Error).message ?? String(err)}`);
  return refuse(reply, 500, "internal error");
}

/**
 * An error answer. Its request's body may be unread (a refused upload): the connection closes
 * after the answer, so the rest of a large body is not read for nothing.
 */
function refuse(reply: FastifyReply, status: number, message: string) {
  if (!reply.request.raw.complete) reply.header("connection", "close");
  return reply.code(status).send({ error: message });
}

function addAccessLog(app: FastifyInstance, ctx: Context, closing: () => boolean) {
  app.addHook("onRequest", (request, reply, done) => {
    const started = process.hrtime.bigint();
    const res = reply.raw;
    res.once("close", () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      ctx.log(accessLine(request.raw, res, ctx.bytes.get(request.raw), ms));
      // A connection whose last request ends while closing would otherwise idle until keep-alive expires.
      if (closing()) setImmediate(() => app.server.closeIdleConnections());
    });
    done();
  });
  // fastify's own answers (JSON, errors); streamed files are counted as they go.
  app.addHook("onSend", (request, _reply, payload, done) => {
    if (typeof payload === "string" || Buffer.isBuffer(payload))
      countOf(ctx, request.raw).out = request.method === "HEAD" ? 0 : Buffer.byteLength(payload);
    done(null, payload);
  });
}

function countOf(ctx: Context, req: IncomingMessage): ByteCount {
  let count = ctx.bytes.get(req);
  if (!count) ctx.bytes.set(req, (count = { in: 0 }));
  return count;
}

/**
 * `time remote METHOD path status in=BYTES out=BYTES ms`: body bytes received and sent.
 * Never a header, so never a token.
 */
function accessLine(
  req: IncomingMessage,
  res: ServerResponse,
  count: ByteCount | undefined,
  ms: number,
): string {
  const safe = logSafePath(req.url ?? "");
  const status = res.writableFinished ? String(res.statusCode) : `${res.statusCode}-aborted`;
  const remote = req.socket.remoteAddress ?? "-";
  return `${new Date().toISOString()} ${remote} ${req.method ?? "-"} ${safe} ${status} in=${count?.in ?? 0} out=${count?.out ?? 0} ${ms.toFixed(1)}ms`;
}

async function closeGracefully(app: FastifyInstance, timeoutMs: number): Promise<void> {
  const force = setTimeout(() => app.server.closeAllConnections(), timeoutMs);
  try {
    await app.close();
  } finally {
    clearTimeout(force);
  }
}

function displayHost(host: string): string {
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}
