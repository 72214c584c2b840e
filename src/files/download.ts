/**
 * Pinned downloads (`url` items): streamed to a partial file while hashed, checked against the
 * pinned sha256, then renamed into place. A partial left by a killed run is resumed with Range.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import got from "got";
import { InputError, WorkError } from "../util/errors.js";
import { countingHasher } from "../util/streams.js";
import { TransientError, withRetry, type RetryOptions } from "../util/retry.js";

export interface Downloaded {
  size: number;
  sha256: string;
}

export async function download(
  url: string,
  file: string,
  opts: { sha256?: string; partialDir: string; retry?: RetryOptions; onBytes?: (n: number) => void },
): Promise<Downloaded> {
  const partial = path.join(opts.partialDir, createHash("sha256").update(file).digest("hex").slice(0, 32));
  await mkdir(opts.partialDir, { recursive: true });
  const result = await withRetry(() => fetchInto(url, partial, opts.onBytes), opts.retry);
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

/** One attempt: resumes after what the partial file holds when the server honours Range. */
async function fetchInto(url: string, partial: string, onBytes?: (n: number) => void): Promise<Downloaded> {
  const have = (await stat(partial).catch(() => undefined))?.size ?? 0;
  const hash = createHash("sha256");
  if (have > 0) for await (const chunk of createReadStream(partial)) hash.update(chunk as Buffer);
  const stream = got.stream(url, {
    headers: have > 0 ? { range: `bytes=${have}-` } : {},
    retry: { limit: 0 },
    throwHttpErrors: false,
  });
  const response = await new Promise<{ statusCode: number }>((resolve, reject) => {
    stream.once("response", resolve);
    stream.once("error", reject);
  }).catch((err: unknown) => {
    throw new TransientError(`${url}: ${(err as Error).message}`);
  });
  const status = response.statusCode;
  if (status >= 500 || status === 429) throw new TransientError(`${url}: the server answered ${status}`);
  if (status === 404) throw new InputError(`${url}: not found (404)`);
  if (status !== 200 && status !== 206) throw new WorkError(`${url}: the server answered ${status}`);
  const resumed = status === 206;
  // A server that ignores Range sends it all again: hash and write from the start.
  const fresh = resumed ? hash : createHash("sha256");
  const counter = countingHasher(fresh, onBytes);
  try {
    await pipeline(stream, counter.stream, createWriteStream(partial, { flags: resumed ? "a" : "w" }));
  } catch (err) {
    throw new TransientError(`${url}: download interrupted: ${(err as Error).message}`);
  }
  return { size: (resumed ? have : 0) + counter.bytes(), sha256: fresh.digest("hex") };
}
