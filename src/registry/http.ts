/**
 * The HTTP layer under the registry client: one `got` instance per client with keep-alive
 * agents, TLS settings and timeouts, and the translation of what goes wrong into the two
 * kinds of failure the rest of the code knows: TransientError (worth retrying) or WorkError.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import got, { type Got, type Response } from "got";
import { BundleError, InputError, WorkError } from "../util/errors.js";
import { isTransient, TransientError } from "../util/retry.js";
import { fsReason } from "../util/files.js";

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
 * Bodies may take hours, so there is no total timeout: only connecting, waiting for the
 * answer's headers, and a socket idle for too long fail a request.
 */
export interface HttpTimeouts {
  connectMs?: number;
  responseMs?: number;
  idleMs?: number;
}

export interface HttpStack {
  got: Got;
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
  const t = opts.timeouts ?? {};
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
      connect: t.connectMs ?? 30_000,
      secureConnect: t.connectMs ?? 30_000,
      response: t.responseMs ?? 300_000,
      socket: t.idleMs ?? 120_000,
    },
  });
  return {
    got: instance,
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
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
