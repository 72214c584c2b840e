/**
 * The HTTP layer under the registry client: one `got` instance per client with keep-alive
 * agents, TLS settings and timeouts, and the translation of what goes wrong into the two
 * kinds of failure the rest of the code knows: TransientError (worth retrying) or WorkError.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import type { IncomingHttpHeaders } from "node:http";
import type { Readable, Writable } from "node:stream";
import got, { type Got, type Method, type NormalizedOptions, type Request, type Response } from "got";
import { BundleError, InputError, WorkError } from "../util/errors.js";
import { Attempts, isTransient, TransientError, withRetry, type RetryOptions } from "../util/retry.js";
import { fsReason } from "../util/files.js";
import { sameOrigin } from "./endpoint.js";

export interface HttpOptions {
  /** Accept TLS certificates that do not verify (`--insecure`). */
  insecure?: boolean;
  /** A PEM file of extra CAs to trust besides the system's (`--ca-file`). */
  caFile?: string;
  userAgent?: string;
  /** Sockets per host, per agent; default 16. */
  maxSockets?: number;
  timeouts?: HttpTimeouts;
}

/**
 * Bodies may take hours, so there is no total timeout: connecting, waiting for the answer's
 * headers, a socket idle for too long, and a body moving slower than `minBytesPerSecond` over
 * `rateWindowMs` fail a request. DEFAULT_TIMEOUTS says why each default is what it is.
 */
export interface HttpTimeouts {
  connectMs?: number;
  responseMs?: number;
  idleMs?: number;
  /** 0 turns the rate check off. */
  minBytesPerSecond?: number;
  rateWindowMs?: number;
}

export const DEFAULT_TIMEOUTS: Required<HttpTimeouts> = {
  // A LAN or the internet connects in well under a second; 30 s allows for a slow VPN.
  connectMs: 30_000,
  // A registry answers a blob's final PUT only once it has moved (or re-hashed) the whole blob.
  responseMs: 300_000,
  idleMs: 120_000,
  // Far below any working link, so only a stalled or hostile server trips it.
  minBytesPerSecond: 1024,
  rateWindowMs: 30_000,
};

/** Manifests, configs, token answers and error bodies: Distribution refuses manifests over 4 MiB too. */
export const MAX_SMALL_BODY = 4 << 20;

/** A request's answer with its body read whole (bounded by `maxBytes`). */
export interface BufferedResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface BufferedRequest {
  method: Method;
  headers?: Record<string, string>;
  body?: Buffer | string | Readable | BodyWriter;
  /** A longer answer is refused: at once when its Content-Length says so, else at that byte. */
  maxBytes: number;
  onUpload?: (transferred: number) => void;
}

/**
 * A body written by its sender into the request: it learns from each write's callback when the
 * bytes have left (util/fileRange.ts reuses its buffers so). Unlike a stream, it can be sent again.
 */
export type BodyWriter = (to: Writable) => Promise<void>;

export interface StreamRequest {
  method: Method;
  headers?: Record<string, string>;
  /**
   * For downloads, which carry no credentials or only `authorization`: the registry client
   * follows its redirects itself.
   */
  followRedirect?: boolean;
  /** An Authorization header sent only to `origin`, on redirects too: a hop elsewhere goes without. */
  authorization?: OriginAuthorization;
}

export interface OriginAuthorization {
  /** `http://host:port`, as URL.origin writes it. */
  origin: string;
  header: string;
}

export interface HttpStack {
  got: Got;
  /** A request whose answer is read whole, up to `maxBytes`, under the rate check. */
  request(url: string, req: BufferedRequest): Promise<BufferedResponse>;
  /** A GET or HEAD whose body is streamed, under the rate check. */
  stream(url: string, req: StreamRequest): Request;
  close(): void;
}

const DEFAULT_USER_AGENT = "bundle (air-gapped bundle builder)";

export function createHttpStack(opts: HttpOptions): HttpStack {
  const ca = opts.caFile ? [...tls.rootCertificates, readCaFile(opts.caFile)] : undefined;
  const rejectUnauthorized = !opts.insecure;
  const maxSockets = opts.maxSockets ?? 16;
  const agentOpts = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: "lifo" as const };
  const httpAgent = new http.Agent(agentOpts);
  const httpsAgent = new https.Agent({ ...agentOpts, rejectUnauthorized, ...(ca ? { ca } : {}) });
  const t = withDefaults(opts.timeouts);
  const instance = got.extend({
    agent: { http: httpAgent, https: httpsAgent },
    https: { rejectUnauthorized, ...(ca ? { certificateAuthority: ca } : {}) },
    headers: { "user-agent": opts.userAgent ?? DEFAULT_USER_AGENT },
    // Retries, redirects and status handling are ours: retries resume uploads, and redirects
    // must not carry the registry's Authorization to blob storage elsewhere.
    retry: { limit: 0 },
    followRedirect: false,
    throwHttpErrors: false,
    // Manifests and blobs are hashed as sent: never let anything decode them.
    decompress: false,
    strictContentLength: true,
    timeout: {
      connect: t.connectMs,
      secureConnect: t.connectMs,
      response: t.responseMs,
      socket: t.idleMs,
    },
  });
  return {
    got: instance,
    request: (url, req) => bufferedRequest(instance, t, url, req),
    stream(url, req) {
      const auth = req.authorization;
      const stream = instance.stream(url, {
        method: req.method,
        headers: {
          ...req.headers,
          ...(auth && sameOrigin(url, auth.origin) ? { authorization: auth.header } : {}),
        },
        followRedirect: req.followRedirect ?? false,
        ...(auth ? { hooks: { beforeRedirect: [(next) => keepToOrigin(next, auth)] } } : {}),
      });
      const stop = watchRate(
        stream,
        t,
        `${req.method} ${url}`,
        (err) => stream.destroy(err),
        // got's streams buffer nothing of their own (highWaterMark 0): bytes waiting are unread.
        () => stream.readableLength > 0,
      );
      stream.once("close", stop);
      return stream;
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

/**
 * Before each redirect: the header goes only to its origin. got drops it on a change of host or
 * port, but not of scheme (https to http on the same host would send it in the clear).
 */
function keepToOrigin(next: Pick<NormalizedOptions, "url" | "headers">, auth: OriginAuthorization): void {
  if (next.url !== undefined && sameOrigin(next.url, auth.origin)) next.headers.authorization = auth.header;
  else delete next.headers.authorization;
}

function readCaFile(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new InputError(`--ca-file ${file}: ${fsReason(err)}`);
  }
}

/** A request that could not be made at all (TLS, DNS): not worth a retry, and said in context. */
export class NetworkError extends WorkError {
  override name = "NetworkError";
}

const TLS_CODES =
  /^(?:CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|ERR_TLS_CERT_ALTNAME_INVALID|HOSTNAME_MISMATCH|ERR_SSL_)/;

/**
 * A failed request (got's error, or ours thrown from a body stream) as TransientError or
 * WorkError. `what` says what was being done, e.g. `GET http://h/v2/`.
 */
export function classifyError(err: unknown, what: string): Error {
  if (err instanceof BundleError || err instanceof TransientError) return err;
  const cause = (err as { cause?: unknown }).cause;
  // got wraps errors of a request body stream: ours (a digest mismatch of the source) keep their kind.
  if (cause instanceof BundleError || cause instanceof TransientError) return cause;
  // The data to send could not be read (a file of the bundle, say): sending again won't help.
  if ((err as Error).name === "UploadError" && cause instanceof Error && !isTransient(cause)) {
    return new WorkError(`${what}: reading the data to send failed: ${cause.message}`);
  }
  const code = (err as { code?: string }).code ?? "";
  const message = (err as Error).message ?? String(err);
  const timeout = (err as Error).name === "TimeoutError" ? timeoutMessage(err as Error) : undefined;
  if (timeout) return new TransientError(`${what}: ${timeout}`, undefined, { cause: new Error(message) });
  // got's errors carry the request options, Authorization included: keep only code and message.
  const plain = Object.assign(new Error(message), { code });
  if (TLS_CODES.test(code)) {
    return new NetworkError(
      `${what}: TLS certificate not trusted (${code}); add its CA with --ca-file, or use --insecure`,
      {
        cause: plain,
      },
    );
  }
  if (code === "EPROTO" || /wrong version number/i.test(message)) {
    return new NetworkError(`${what}: TLS handshake failed (${code}); is it plain HTTP? then write http://`, {
      cause: plain,
    });
  }
  if (code === "ENOTFOUND") return new NetworkError(`${what}: host not found (${code})`, { cause: plain });
  const suffix = code && !message.includes(code) ? ` (${code})` : "";
  return new TransientError(`${what}: ${message}${suffix}`, undefined, { cause: plain });
}

/**
 * `fn` under withRetry, its failures classified: the one loop of a request's owner (util/retry.ts
 * says who that is). What escapes is a BundleError that names `what`.
 */
export async function retryRequest<T>(
  what: string,
  fn: () => Promise<T>,
  retry: RetryOptions | Attempts,
): Promise<T> {
  try {
    return await withRetry(
      async () => {
        try {
          return await fn();
        } catch (err) {
          throw classifyError(err, what);
        }
      },
      retry,
      what,
    );
  } catch (err) {
    if (err instanceof BundleError && !(err instanceof NetworkError)) throw err;
    const message = (err as Error).message;
    throw new WorkError(message.startsWith(what) ? message : `${what}: ${message}`, { cause: err });
  }
}

export function header(res: Pick<Response, "headers">, name: string): string | undefined {
  const value = res.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(", ") : value;
}

/** Retry-After in ms (seconds or an HTTP date), capped so a server cannot stall us for long. */
export function retryAfterMs(res: Pick<Response, "headers">): number | undefined {
  const value = header(res, "retry-after");
  if (value === undefined) return undefined;
  const seconds = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  if (!Number.isFinite(seconds)) return undefined;
  return Math.min(Math.max(0, seconds), 60) * 1000;
}

export interface RegistryErrorBody {
  code: string;
  message: string;
}

/** The `errors` of a registry's JSON error answer; empty when the body is something else. */
export function registryErrors(body: Buffer | undefined): RegistryErrorBody[] {
  if (!body || body.length === 0) return [];
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { errors?: { code?: unknown; message?: unknown }[] };
    return (parsed.errors ?? []).map((e) => ({
      code: String(e.code ?? ""),
      message: String(e.message ?? ""),
    }));
  } catch {
    return [];
  }
}

/** `MANIFEST_INVALID: manifest invalid` or a clipped raw body, for messages. */
export function describeErrorBody(body: Buffer | undefined): string {
  const errors = registryErrors(body);
  if (errors.length > 0) return errors.map((e) => `${e.code}: ${e.message}`).join("; ");
  return body ? body.toString("utf8", 0, 200).trim() : "";
}

/** 5xx and 429 are worth another try; the server may say when. */
export function isTransientStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

export function transientStatusError(
  what: string,
  res: Pick<Response, "headers" | "statusCode">,
): TransientError {
  return new TransientError(`${what}: HTTP ${res.statusCode}`, retryAfterMs(res));
}

/** Our defaults, with what the caller set (undefined leaves the default). */
function withDefaults(given: HttpTimeouts | undefined): Required<HttpTimeouts> {
  const t = { ...DEFAULT_TIMEOUTS };
  for (const [key, value] of Object.entries(given ?? {}) as [keyof HttpTimeouts, number | undefined][])
    if (value !== undefined) t[key] = value;
  return t;
}

/** A body moving slower than the floor: the server stalls (or means to). Worth another try. */
export class SlowTransferError extends TransientError {
  override name = "SlowTransferError";
}

/** An answer larger than we accept: refused, not retried. */
export class TooLargeError extends WorkError {
  override name = "TooLargeError";
}

/**
 * Through got's stream, not its promise: the promise layer costs about 0.25 ms of CPU per request
 * on top (measured over 1,000 HEADs against Distribution), and an upload makes hundreds. The
 * body is read here, bounded: an answer that announces or sends more than `maxBytes` is refused.
 */
async function bufferedRequest(
  instance: Got,
  t: Required<HttpTimeouts>,
  url: string,
  req: BufferedRequest,
): Promise<BufferedResponse> {
  const what = `${req.method} ${url}`;
  const stream = instance.stream(url, {
    method: req.method,
    headers: req.headers ?? {},
    ...(req.body !== undefined && typeof req.body !== "function" ? { body: req.body } : {}),
  });
  let reason: Error | undefined;
  const abort = (err: Error) => {
    reason ??= err;
    stream.destroy(err);
  };
  // Without a body option got's stream waits for one to be written to it.
  if (req.body === undefined) stream.end();
  else if (typeof req.body === "function") writeBody(stream, req.body, abort);
  const stop = watchRate(stream, t, what, abort, () => stream.readableLength > 0);
  if (req.onUpload)
    stream.on("uploadProgress", (p: { transferred: number }) => req.onUpload?.(p.transferred));
  try {
    const res = await responseOf(stream);
    // A HEAD's Content-Length is that of the resource, not of a body we read.
    const length = req.method === "HEAD" ? undefined : res.headers["content-length"];
    const body = await readBounded(
      stream,
      what,
      length === undefined ? undefined : Number(length),
      req.maxBytes,
    );
    return { statusCode: res.statusCode, headers: res.headers, body };
  } catch (err) {
    throw reason ?? err;
  } finally {
    stop();
  }
}

/**
 * Runs a body writer into got's request stream, then ends it. A writer that fails before the
 * answer fails the request; after it (the server answered early), the answer stands.
 */
function writeBody(stream: Request, write: BodyWriter, abort: (err: Error) => void): void {
  write(stream).then(
    () => stream.end(),
    (err: unknown) => {
      if (stream.response === undefined) abort(err instanceof Error ? err : new Error(String(err)));
    },
  );
}

/** The whole body, or a TooLargeError as soon as it is announced or read past `max` bytes. */
async function readBounded(
  stream: Readable,
  what: string,
  declared: number | undefined,
  max: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = tooLarge(what, declared, 0, max);
  if (!over) {
    for await (const chunk of stream) {
      size += (chunk as Buffer).length;
      over = tooLarge(what, undefined, size, max);
      if (over) break;
      chunks.push(chunk as Buffer);
    }
  }
  if (!over) return Buffer.concat(chunks, size);
  stream.destroy();
  throw over;
}

/** The response head of a got stream; on failure the stream is destroyed and its later errors ignored. */
export async function responseOf(
  req: Readable,
): Promise<{ statusCode: number; headers: IncomingHttpHeaders }> {
  let onError: (err: Error) => void = () => undefined;
  try {
    return await new Promise((resolve, reject) => {
      onError = reject;
      req.once("response", resolve);
      req.once("error", onError);
    });
  } catch (err) {
    req.on("error", () => undefined);
    req.destroy();
    throw err;
  } finally {
    req.off("error", onError);
  }
}

/** The error for an answer announced or read past `max` bytes, else undefined. */
export function tooLarge(
  what: string,
  declared: number | undefined,
  read: number,
  max: number,
): TooLargeError | undefined {
  if (declared !== undefined && declared > max)
    return new TooLargeError(
      `${what}: the answer announces ${declared} bytes, more than the ${max} accepted`,
    );
  if (read > max)
    return new TooLargeError(`${what}: the answer goes on past ${max} bytes, more than accepted`);
  return undefined;
}

interface ProgressEmitter {
  on(
    event: "uploadProgress" | "downloadProgress",
    fn: (p: { transferred: number; percent: number }) => void,
  ): unknown;
}

/**
 * Fails a transfer whose body (sent or received) moves slower than the floor over a whole
 * window. Waiting for the answer's headers is not counted: the response timeout covers it.
 * Returns the function that stops the watch.
 */
export function watchRate(
  req: ProgressEmitter,
  t: Required<HttpTimeouts>,
  what: string,
  abort: (err: Error) => void,
  readerBehind: () => boolean = () => false,
): () => void {
  if (t.minBytesPerSecond <= 0 || t.rateWindowMs <= 0) return () => undefined;
  let sent = 0;
  let received = 0;
  let moving = false;
  let answered = false;
  let mark = { at: 0, bytes: 0 };
  const start = () => {
    moving = true;
    mark = { at: Date.now(), bytes: sent + received };
  };
  req.on("uploadProgress", (p) => {
    sent = p.transferred;
    if (answered) return;
    if (p.percent >= 1) moving = false;
    else if (!moving && p.transferred > 0) start();
  });
  // The first download progress comes with the answer's headers ('response' comes after the
  // whole body when got buffers it).
  req.on("downloadProgress", (p) => {
    received = p.transferred;
    if (!answered) start();
    answered = true;
    // All there: what the reader does with it is not the server's speed.
    if (p.percent >= 1) moving = false;
  });
  const every = Math.max(50, Math.min(1000, t.rateWindowMs / 4));
  let ticked = Date.now();
  const timer = setInterval(() => {
    const late = Date.now() - ticked > 2 * every;
    ticked = Date.now();
    // A reader that is behind holds the server back: that time does not count against it.
    // Nor does time this process was not running (a write waiting for a slow disk, a
    // suspended machine): the bytes may be waiting in the socket, unread.
    if (moving && (late || readerBehind())) return start();
    const elapsed = Date.now() - mark.at;
    if (!moving || elapsed < t.rateWindowMs) return;
    const moved = sent + received - mark.bytes;
    if (moved < (t.minBytesPerSecond * elapsed) / 1000) {
      abort(new SlowTransferError(`${what}: ${slowMessage(moved, elapsed, t)}`));
      return;
    }
    mark = { at: Date.now(), bytes: sent + received };
  }, every);
  timer.unref();
  return () => clearInterval(timer);
}

function slowMessage(moved: number, elapsedMs: number, t: Required<HttpTimeouts>): string {
  return (
    `slower than ${formatRate(t.minBytesPerSecond)} for ${seconds(t.rateWindowMs)} ` +
    `(${moved} bytes in ${seconds(elapsedMs)}); raise --rate-window or lower --min-rate for a link this slow`
  );
}

function formatRate(bytesPerSecond: number): string {
  return bytesPerSecond % 1024 === 0 ? `${bytesPerSecond / 1024} KiB/s` : `${bytesPerSecond} B/s`;
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/** got's TimeoutError in words, naming the flag that raises it. */
function timeoutMessage(err: { event?: string; message: string }): string | undefined {
  const ms = /for (\d+)ms/.exec(err.message)?.[1];
  const after = ms ? ` within ${seconds(Number(ms))}` : "";
  switch (err.event) {
    case "lookup":
    case "connect":
    case "secureConnect":
      return `no connection${after} (raise it with --connect-timeout)`;
    case "response":
      return `no answer${after} (raise it with --response-timeout)`;
    case "socket":
      return `the connection stayed silent${ms ? ` for ${seconds(Number(ms))}` : ""}`;
    default:
      return undefined;
  }
}
