/**
 * The client `bundle upload` and `bundle deploy` use to talk to `bundle serve`: list a bundle's
 * files with their digests, ask for one file's digest, and upload a file with its declared
 * sha256. Transient faults (dropped connections, 5xx, 429) are retried; everything else is a
 * WorkError naming the URL. The token goes into the Authorization header and nowhere else: not
 * into a message, not into a log.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import type { Method } from "got";
import { InputError, WorkError } from "../util/errors.js";
import type { RetryOptions } from "../util/retry.js";
import {
  createHttpStack,
  header,
  isTransientStatus,
  MAX_SMALL_BODY,
  retryRequest,
  transientStatusError,
  type BufferedResponse,
  type HttpStack,
  type HttpTimeouts,
} from "../registry/http.js";
import { fsReason } from "../util/files.js";

export interface FileServerClientOptions {
  /** Bearer token for uploads (`--token-file`). */
  token?: string;
  /** Accept a TLS certificate that does not verify (a TLS proxy in front of the server). */
  insecure?: boolean;
  /** A PEM file of extra CAs to trust. */
  caFile?: string;
  retry?: RetryOptions;
  timeouts?: HttpTimeouts;
}

/**
 * Bytes to upload that need not be a file of their own: a member of a bundle archive, a template
 * rendered in memory. `open` is called again for each attempt.
 */
export interface FileBody {
  size: number;
  open(): Readable;
}

/** A file the server holds, as `GET /_list/<bundle>` tells. */
export interface RemoteFile {
  path: string;
  size: number;
  sha256: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** A listing of some 300,000 files; a longer answer is not one of ours. */
const MAX_LISTING = 64 << 20;
/** Error answers are read for their message only. */
const MAX_ERROR_TEXT = 300;

export class FileServerClient {
  private readonly base: string;
  private readonly http: HttpStack;

  constructor(
    baseUrl: string,
    private readonly opts: FileServerClientOptions = {},
  ) {
    this.base = normalizeBase(baseUrl);
    this.http = createHttpStack({
      ...(opts.insecure ? { insecure: true } : {}),
      ...(opts.caFile ? { caFile: opts.caFile } : {}),
      ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
    });
  }

  /** Where a bundle's file is served; each segment percent-encoded. */
  url(bundle: string, path: string): string {
    return `${this.base}/${encodeSegments(bundle, path)}`;
  }

  /** Every file of the bundle with size and sha256; [] when the server has no such bundle. */
  async list(bundle: string): Promise<RemoteFile[]> {
    const url = `${this.base}/_list/${encodeSegments(bundle)}`;
    const res = await this.retrying(`GET ${url}`, () => this.request("GET", url, MAX_LISTING));
    if (res.statusCode === 404) return [];
    if (res.statusCode !== 200) throw unexpected(`GET ${url}`, res);
    return parseListing(url, res.body);
  }

  /** Size and, when the server knows it, sha256 of one file; undefined when it is not there. */
  async head(bundle: string, path: string): Promise<{ size: number; sha256?: string } | undefined> {
    const url = this.url(bundle, path);
    const res = await this.retrying(`HEAD ${url}`, () => this.request("HEAD", url));
    if (res.statusCode === 404) return undefined;
    if (res.statusCode !== 200) throw unexpected(`HEAD ${url}`, res);
    const sha256 = header(res, "x-checksum-sha256")?.trim().toLowerCase();
    const size = Number(header(res, "content-length"));
    if (!Number.isSafeInteger(size))
      throw new WorkError(`HEAD ${url}: the answer has no valid Content-Length`);
    return sha256 && SHA256_HEX.test(sha256) ? { size, sha256 } : { size };
  }

  /**
   * Uploads `source` (a local file's path, or a body) as the bundle's `path`, declaring its
   * sha256: the server keeps it only if the bytes match. `onBytes` gets each increment sent; when a failed attempt is
   * retried, or the upload fails for good, it gets minus what that attempt had sent, so a running
   * total counts only what the server kept.
   */
  async put(
    bundle: string,
    path: string,
    source: string | FileBody,
    sha256: string,
    onBytes?: (n: number) => void,
  ): Promise<void> {
    const url = this.url(bundle, path);
    if (!SHA256_HEX.test(sha256)) throw new InputError(`${url}: "${sha256}" is not a sha256 in hex`);
    const body = typeof source === "string" ? await fileBody(source) : source;
    const size = body.size;
    let sent = 0;
    try {
      const res = await this.retrying(`PUT ${url}`, () => {
        if (sent > 0) onBytes?.(-sent);
        sent = 0;
        return this.send(url, body, sha256, (transferred) => {
          onBytes?.(transferred - sent);
          sent = transferred;
        });
      });
      checkPut(url, size, res, this.opts.token !== undefined);
    } catch (err) {
      // The server kept nothing of a refused or failed upload: its bytes were not moved.
      if (sent > 0) onBytes?.(-sent);
      throw err;
    }
  }

  /** Frees the client's sockets. */
  close(): void {
    this.http.close();
  }

  private send(
    url: string,
    body: FileBody,
    sha256: string,
    progress: (sent: number) => void,
  ): Promise<BufferedResponse> {
    return this.http.request(url, {
      method: "PUT",
      body: body.open(),
      headers: {
        ...this.authorization(),
        "content-type": "application/octet-stream",
        "content-length": String(body.size),
        "x-checksum-sha256": sha256,
      },
      maxBytes: MAX_SMALL_BODY,
      onUpload: progress,
    });
  }

  /** Reads need no token, so none is sent: it goes out only with uploads. */
  private request(method: Method, url: string, maxBytes = MAX_SMALL_BODY): Promise<BufferedResponse> {
    return this.http.request(url, { method, maxBytes });
  }

  private authorization(): Record<string, string> {
    return this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {};
  }

  /**
   * `fn` under withRetry, the one retry loop of a file-server request: its 5xx answers and
   * dropped connections retried. What escapes is a BundleError saying what was being done.
   */
  private retrying(what: string, fn: () => Promise<BufferedResponse>): Promise<BufferedResponse> {
    return retryRequest(
      what,
      async () => {
        const res = await fn();
        if (isTransientStatus(res.statusCode)) throw transientStatusError(what, res);
        return res;
      },
      this.opts.retry ?? {},
    );
  }
}

function normalizeBase(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new InputError(`--fileserver ${baseUrl}: not a URL; write e.g. http://10.0.0.5:8003`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new InputError(`--fileserver ${baseUrl}: only http:// and https:// URLs are served`);
  if (url.username || url.password)
    throw new InputError(`--fileserver: put no credentials in the URL; pass the token with --token-file`);
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

function encodeSegments(...parts: string[]): string {
  const segments = parts.flatMap((p) => p.split("/"));
  const bad = segments.find((s) => s === "" || s === "." || s === "..");
  if (bad !== undefined) throw new InputError(`${parts.join("/")}: not a valid file path on the file server`);
  return segments.map(encodeURIComponent).join("/");
}

async function fileBody(file: string): Promise<FileBody> {
  try {
    const { size } = await stat(file);
    return { size, open: () => createReadStream(file) };
  } catch (err) {
    throw new WorkError(`${file}: cannot read the file to upload: ${fsReason(err)}`);
  }
}

function checkPut(url: string, size: number, res: BufferedResponse, hasToken: boolean): void {
  const status = res.statusCode;
  if (status >= 200 && status < 300) return;
  const what = `PUT ${url}`;
  if (status === 401 || status === 403) {
    const hint = hasToken
      ? "pass --token-file with the file server's token"
      : "the file server needs a token: pass --token-file with the server's token";
    throw new WorkError(`${what}: upload refused (HTTP ${status}: ${errorText(res)}); ${hint}`);
  }
  if (status === 413)
    throw new WorkError(
      `${what}: the file (${size} bytes) is over the server's --max-upload-size (HTTP 413)`,
    );
  throw unexpected(what, res);
}

/** Any answer not foreseen: a WorkError with the status and the server's message. */
function unexpected(what: string, res: BufferedResponse): WorkError {
  return new WorkError(`${what}: HTTP ${res.statusCode}: ${errorText(res)}`);
}

/** The `error` of the server's JSON answer, or the start of whatever else it said. */
function errorText(res: BufferedResponse): string {
  const text = res.body?.toString("utf8", 0, 4096) ?? "";
  try {
    const parsed = JSON.parse(text) as { error?: unknown; message?: unknown };
    const message = parsed.message ?? parsed.error;
    if (typeof message === "string") return message.slice(0, MAX_ERROR_TEXT);
  } catch {
    // not JSON: shown as it is
  }
  return text.trim().slice(0, MAX_ERROR_TEXT) || "(no message)";
}

function parseListing(url: string, body: Buffer): RemoteFile[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    throw new WorkError(`GET ${url}: the answer is not JSON; is this a bundle file server?`);
  }
  const files = (parsed as { files?: unknown }).files;
  if (!Array.isArray(files) || !files.every(isRemoteFile))
    throw new WorkError(`GET ${url}: the answer is not a file listing; is this a bundle file server?`);
  return files;
}

function isRemoteFile(value: unknown): value is RemoteFile {
  const f = value as Partial<RemoteFile> | null;
  return (
    typeof f?.path === "string" &&
    typeof f.size === "number" &&
    typeof f.sha256 === "string" &&
    SHA256_HEX.test(f.sha256)
  );
}
