import { createHash, type Hash } from "node:crypto";
import type { Readable } from "node:stream";
import { WorkError } from "./errors.js";

/** Reads a small stream whole (manifests, configs), refusing more than `limit` bytes. */
export async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      stream.destroy();
      throw new WorkError(`refusing to read more than ${limit} bytes into memory`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * What a stream's bytes must be: at most `size` (exactly, at its end), or at most `max` when the
 * size is not known, and, when given, this sha256.
 */
export interface ExpectedBytes {
  size?: number;
  max?: number;
  /** Lowercase hex. */
  sha256?: string;
}

/** What went through: its size and sha256 (lowercase hex). */
export interface StreamedBytes {
  size: number;
  sha256: string;
}

export interface CheckedMore {
  onBytes?: (n: number) => void;
  /** Bytes that came before the source (a partial file resumed), already hashed into `hash`. */
  after?: { hash: Hash; size: number };
}

export interface CheckFailures {
  over(): Error;
  differ(size: number, sha256: string): Error;
}

/**
 * Passes `source`'s bytes through while counting and hashing them: past `want.size` (or
 * `want.max`) it fails at once with `over()`, and at its end with `differ(size, sha256hex)`
 * unless both agree with `want`; it returns what went through. One check for every "hash while
 * streaming, stop at the declared size" reader and writer.
 */
export async function* checkedBytes(
  source: AsyncIterable<unknown> | Iterable<unknown>,
  want: ExpectedBytes,
  fail: CheckFailures,
  more: CheckedMore = {},
): AsyncGenerator<Buffer, StreamedBytes> {
  const hash = more.after?.hash ?? createHash("sha256");
  const cap = want.size ?? want.max;
  const onBytes = more.onBytes;
  let size = more.after?.size ?? 0;
  for await (const chunk of source) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array | string);
    size += buf.length;
    if (cap !== undefined && size > cap) throw fail.over();
    hash.update(buf);
    onBytes?.(buf.length);
    yield buf;
  }
  const got = hash.digest("hex");
  if ((want.size !== undefined && size !== want.size) || (want.sha256 !== undefined && got !== want.sha256))
    throw fail.differ(size, got);
  return { size, sha256: got };
}
