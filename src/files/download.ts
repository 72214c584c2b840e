/**
 * Pinned downloads (`url` items): streamed to a partial file while hashed, checked against the
 * pinned sha256, then renamed into place. A partial left by a killed run is resumed with Range.
 * A download stops at its limit (the size an earlier run recorded, else `--max-download`), and
 * runs under the same connect, response and rate limits as every other HTTP transfer.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { classifyError, createHttpStack, type HttpStack, type HttpTimeouts } from "../registry/http.js";
import { InputError, WorkError } from "../util/errors.js";
import { countingHasher } from "../util/streams.js";
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
}

export async function download(url: string, file: string, opts: DownloadOptions): Promise<Downloaded> {
  const partial = path.join(opts.partialDir, createHash("sha256").update(file).digest("hex").slice(0, 32));
  await mkdir(opts.partialDir, { recursive: true });
  const limit = opts.size ?? opts.maxBytes ?? DEFAULT_MAX_DOWNLOAD;
  const why = opts.size !== undefined ? "the size recorded with its pin" : "--max-download";
  const http = createHttpStack({ ...(opts.timeouts ? { timeouts: opts.timeouts } : {}) });
  let result: Downloaded;
  try {
    // The one retry loop of a download: each attempt resumes from what the partial file holds.
    result = await withRetry(() => fetchInto(http, url, partial, { limit, why }, opts.onBytes), opts.retry);
  } catch (err) {
    // A partial is kept to resume after a fault; one refused (too large, not found) is junk.
    if (!(err instanceof GaveUpError)) await rm(partial, { force: true });
    throw err;
  } finally {
    http.close();
  }
  if (opts.sha256 && result.sha256 !== opts.sha256) {
    await rm(partial, { force: true });
    throw new WorkError(
      `${url}: expected sha256 ${opts.sha256}, got ${result.sha256} (${result.size} bytes); nothing was kept`,
    );
  }
  await mkdir(path.dirname(file), { recursive: true });
  await rename(partial, file);
  return result;
}

interface Limit {
  limit: number;
  /** What sets it, for the message. */
  why: string;
}

/** One attempt: resumes after what the partial file holds when the server honours Range. */
async function fetchInto(
  http: HttpStack,
  url: string,
  partial: string,
  limit: Limit,
  onBytes?: (n: number) => void,
): Promise<Downloaded> {
  const have = (await stat(partial).catch(() => undefined))?.size ?? 0;
  const hash = createHash("sha256");
  if (have > 0) for await (const chunk of createReadStream(partial)) hash.update(chunk as Buffer);
  // A download carries no credentials: redirects (to a release's storage, say) are followed.
  const stream = http.stream(url, {
    method: "GET",
    headers: have > 0 ? { range: `bytes=${have}-` } : {},
    followRedirect: true,
  });
  const response = await new Promise<{ statusCode: number; headers: Record<string, unknown> }>(
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
  if (status !== 200 && status !== 206) throw fail(new WorkError(`${url}: the server answered ${status}`));
  const resumed = status === 206;
  const start = resumed ? have : 0;
  const declared = Number(response.headers["content-length"]);
  if (Number.isSafeInteger(declared) && start + declared > limit.limit)
    throw fail(tooLarge(url, limit, `it announces ${start + declared} bytes`));
  // A server that ignores Range sends it all again: hash and write from the start.
  const fresh = resumed ? hash : createHash("sha256");
  const counter = countingHasher(fresh, onBytes);
  try {
    await pipeline(
      stream,
      capped(limit.limit - start, () => tooLarge(url, limit, "it goes on past that")),
      counter.stream,
      createWriteStream(partial, { flags: resumed ? "a" : "w" }),
    );
  } catch (err) {
    if (err instanceof WorkError) throw err;
    throw asTransient(err, url, "download interrupted: ");
  }
  return { size: start + counter.bytes(), sha256: fresh.digest("hex") };
}

function tooLarge(url: string, limit: Limit, detail: string): WorkError {
  return new WorkError(
    `${url}: larger than ${limit.limit} bytes (${limit.why}); ${detail}; nothing was kept` +
      (limit.why === "--max-download" ? ", raise --max-download if the file is that large" : ""),
  );
}

/** Passes at most `max` bytes; one more is the error `over` makes. */
function capped(max: number, over: () => Error): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      cb(seen > max ? over() : null, seen > max ? undefined : chunk);
    },
  });
}

/** A timeout or a slow or broken transfer, said in words, worth another try. */
function asTransient(err: unknown, url: string, prefix = ""): Error {
  const e = classifyError(err, url);
  if (!(e instanceof TransientError)) return e;
  return new TransientError(prefix ? e.message.replace(`${url}: `, `${url}: ${prefix}`) : e.message);
}
