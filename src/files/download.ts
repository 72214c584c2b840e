/**
 * Pinned downloads (`url` items): streamed to a partial file while hashed, checked against the
 * pinned sha256, then renamed into place. A partial left by a killed run is resumed with Range.
 * A download stops at its limit (the size an earlier run recorded, else `--max-download`), and
 * runs under the same connect, response and rate limits as every other HTTP transfer.
 */
import { createHash } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { sameOrigin } from "../registry/endpoint.js";
import { classifyError, createHttpStack, type HttpStack, type HttpTimeouts } from "../registry/http.js";
import { writeResumable, type ResumableWrite } from "../util/cas.js";
import { BundleError, InputError, WorkError } from "../util/errors.js";
import { GaveUpError, TransientError, withRetry, type RetryOptions } from "../util/retry.js";

export interface Downloaded {
  size: number;
  sha256: string;
}

/** `--max-download`'s default: larger than any tool archive a site carries, far from filling a disk. */
export const DEFAULT_MAX_DOWNLOAD = 4 * 1024 ** 3;

export interface DownloadLimits {
  timeouts?: HttpTimeouts;
  retry?: RetryOptions;
  /** Bytes a download may have when its size is not known; default DEFAULT_MAX_DOWNLOAD. */
  maxBytes?: number;
}

export interface DownloadOptions extends DownloadLimits {
  sha256?: string;
  /** The size an earlier run recorded with the pin: the download stops there. */
  size?: number;
  partialDir: string;
  onBytes?: (n: number) => void;
  /** Credentials for one origin (a Helm repository's); a download has none otherwise. */
  auth?: DownloadAuth;
}

export interface DownloadAuth {
  /** `http://host:port`: only requests to it carry `header`, redirects included. */
  origin: string;
  header?: string;
  /** Said after a 401 or 403 from that origin: which credentials were sent, or how to give some. */
  denied: string;
}

export async function download(url: string, file: string, opts: DownloadOptions): Promise<Downloaded> {
  const partial = path.join(opts.partialDir, createHash("sha256").update(file).digest("hex").slice(0, 32));
  await mkdir(opts.partialDir, { recursive: true });
  await mkdir(path.dirname(file), { recursive: true });
  const limit = opts.size ?? opts.maxBytes ?? DEFAULT_MAX_DOWNLOAD;
  const why = opts.size !== undefined ? "the size recorded with its pin" : "--max-download";
  const http = createHttpStack({ ...(opts.timeouts ? { timeouts: opts.timeouts } : {}) });
  const write: ResumableWrite = {
    partial,
    open: (have) => request(http, url, have, { limit, why }, opts.auth),
    want: { max: limit, ...(opts.sha256 ? { sha256: opts.sha256 } : {}) },
    fail: {
      over: () => tooLarge(url, { limit, why }, "it goes on past that"),
      differ: (size, sha256) =>
        new WorkError(
          `${url}: expected sha256 ${opts.sha256}, got ${sha256} (${size} bytes); nothing was kept`,
        ),
    },
    // A partial is kept to resume after a fault; one refused (too large, not found) is junk.
    keep: (err) => err instanceof TransientError,
    ...(opts.onBytes ? { onBytes: opts.onBytes } : {}),
  };
  try {
    // The one retry loop of a download: each attempt resumes from what the partial file holds.
    return await withRetry(() => resumeInto(file, write, url), opts.retry);
  } catch (err) {
    if (!(err instanceof GaveUpError)) await rm(partial, { force: true });
    throw err;
  } finally {
    http.close();
  }
}

interface Limit {
  limit: number;
  /** What sets it, for the message. */
  why: string;
}

/** One attempt; a stream cut off, slowed or timed out is said in words and worth another try. */
async function resumeInto(file: string, write: ResumableWrite, url: string): Promise<Downloaded> {
  try {
    return await writeResumable(file, write);
  } catch (err) {
    if (err instanceof BundleError || err instanceof TransientError) throw err;
    throw asTransient(err, url, "download interrupted: ");
  }
}

/** Asks for the bytes from `have` on; a server that ignores Range sends them all (`from` 0). */
async function request(http: HttpStack, url: string, have: number, limit: Limit, auth?: DownloadAuth) {
  // Redirects (to a release's storage, say) are followed; credentials stay with their origin.
  const stream = http.stream(url, {
    method: "GET",
    headers: have > 0 ? { range: `bytes=${have}-` } : {},
    followRedirect: true,
    ...(auth?.header ? { authorization: { origin: auth.origin, header: auth.header } } : {}),
  });
  const response = await new Promise<{ statusCode: number; headers: Record<string, unknown>; url: string }>(
    (resolve, reject) => {
      stream.once("response", resolve);
      stream.once("error", reject);
    },
  ).catch((err: unknown) => {
    stream.destroy();
    throw asTransient(err, url);
  });
  const status = response.statusCode;
  const fail = (err: Error) => {
    stream.destroy();
    return err;
  };
  if (status >= 500 || status === 429)
    throw fail(new TransientError(`${url}: the server answered ${status}`));
  if (status === 404) throw fail(new InputError(`${url}: not found (404)`));
  if ((status === 401 || status === 403) && auth && sameOrigin(response.url, auth.origin))
    throw fail(new WorkError(`${url}: the server answered ${status}; ${auth.denied}`));
  if (status !== 200 && status !== 206) throw fail(new WorkError(`${url}: the server answered ${status}`));
  const from = status === 206 ? have : 0;
  const declared = Number(response.headers["content-length"]);
  if (Number.isSafeInteger(declared) && from + declared > limit.limit)
    throw fail(tooLarge(url, limit, `it announces ${from + declared} bytes`));
  return { stream, from };
}

function tooLarge(url: string, limit: Limit, detail: string): WorkError {
  return new WorkError(
    `${url}: larger than ${limit.limit} bytes (${limit.why}); ${detail}; nothing was kept` +
      (limit.why === "--max-download" ? ", raise --max-download if the file is that large" : ""),
  );
}

/** A timeout or a slow or broken transfer, said in words, worth another try. */
function asTransient(err: unknown, url: string, prefix = ""): Error {
  const e = classifyError(err, url);
  if (!(e instanceof TransientError)) return e;
  return new TransientError(prefix ? e.message.replace(`${url}: `, `${url}: ${prefix}`) : e.message);
}
