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
