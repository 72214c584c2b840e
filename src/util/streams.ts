import type { Hash } from "node:crypto";
import { Transform, type Readable } from "node:stream";
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

/** Passes bytes through while hashing and counting them. */
export function countingHasher(hash: Hash, onBytes?: (n: number) => void) {
  let total = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      total += chunk.length;
      onBytes?.(chunk.length);
      cb(null, chunk);
    },
  });
  return { stream, bytes: () => total };
}
