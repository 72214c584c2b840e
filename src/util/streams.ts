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
 * The check of a stream's bytes, chunk by chunk: past `want.size` (or `want.max`) `take` fails at
 * once with `over()`, and `end` with `differ(size, sha256hex)` unless both agree with `want`.
 * One check for every "hash while streaming, stop at the declared size" reader and writer.
 */
export class ByteCheck {
  private readonly hash: Hash;
  private readonly cap: number | undefined;
  private size: number;

  constructor(
    private readonly want: ExpectedBytes,
    private readonly fail: CheckFailures,
    private readonly more: CheckedMore = {},
  ) {
    this.hash = more.after?.hash ?? createHash("sha256");
    this.cap = want.size ?? want.max;
    this.size = more.after?.size ?? 0;
  }

  take(chunk: unknown): Buffer {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array | string);
    this.size += buf.length;
    if (this.cap !== undefined && this.size > this.cap) throw this.fail.over();
    this.hash.update(buf);
    this.more.onBytes?.(buf.length);
    return buf;
  }

  end(): StreamedBytes {
    const got = this.hash.digest("hex");
    const { size, sha256 } = this.want;
    if ((size !== undefined && this.size !== size) || (sha256 !== undefined && got !== sha256))
      throw this.fail.differ(this.size, got);
    return { size: this.size, sha256: got };
  }
}

/** `source`'s bytes through a ByteCheck, for readers that iterate; returns what went through. */
export async function* checkedBytes(
  source: AsyncIterable<unknown> | Iterable<unknown>,
  want: ExpectedBytes,
  fail: CheckFailures,
  more: CheckedMore = {},
): AsyncGenerator<Buffer, StreamedBytes> {
  const check = new ByteCheck(want, fail, more);
  for await (const chunk of source) yield check.take(chunk);
  return check.end();
}
