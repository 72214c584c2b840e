/**
 * Blob downloads as one stream that survives dropped connections: when a transfer breaks, it
 * asks again with `Range` from the last byte delivered, so the reader sees each byte once
 * and in order. A stream that ends short of its Content-Length is an error, never an end.
 */
import { Readable } from "node:stream";
import { WorkError } from "../util/errors.js";
import { Attempts, TransientError } from "../util/retry.js";
import { repositoryScope } from "./auth.js";
import { blobNotFound, unexpectedStatus } from "./errors.js";
import { classifyError, header } from "./http.js";
import type { Transport } from "./transport.js";

export interface BlobWhere {
  repo: string;
  digest: string;
  /** The image, for messages. */
  name: string;
  /** The descriptor's size: no byte past it is read. */
  size?: number;
}

/** An open response: bytes from absolute position `start + skip` on, of a blob of `total` bytes. */
interface Opened {
  stream: Readable;
  /** Bytes to drop first: a server that ignored our Range sends from 0. */
  skip: number;
  total: number | undefined;
}

export async function downloadBlob(t: Transport, w: BlobWhere, offset: number): Promise<Readable> {
  const what = `download blob ${w.digest} of ${w.name} from registry ${t.endpoint.host}`;
  // One count for the whole download: the first request, every break and every reopen.
  const attempts = new Attempts(t.retry, what);
  const first = await t.retrying(what, () => request(t, w, offset), attempts);
  return Readable.from(bytesFrom(t, w, offset, first, attempts, what), { objectMode: false });
}

async function request(t: Transport, w: BlobWhere, from: number): Promise<Opened> {
  const res = await t.open({
    method: "GET",
    url: `/v2/${w.repo}/blobs/${w.digest}`,
    scopes: [repositoryScope(w.repo, ["pull"])],
    headers: from > 0 ? { range: `bytes=${from}-` } : {},
  });
  if (res.status === 200 && res.stream) {
    const total = contentLength(res.headers);
    refuseLonger(res.stream, w, total, 0);
    return { stream: res.stream, skip: from, total };
  }
  if (res.status === 206 && res.stream) {
    const range = parseContentRange(header(res, "content-range"));
    if (range?.start !== from) {
      res.stream.destroy();
      throw new WorkError(
        `download blob ${w.digest}: asked for bytes from ${from}, got ${header(res, "content-range")}`,
      );
    }
    refuseLonger(res.stream, w, range.total, from + (contentLength(res.headers) ?? 0));
    return { stream: res.stream, skip: 0, total: range.total };
  }
  res.stream?.destroy();
  if (res.status === 404) {
    throw blobNotFound(w.digest, { name: w.name, repo: w.repo, host: t.endpoint.host });
  }
  throw unexpectedStatus(`download blob ${w.digest} of ${w.name} (from byte ${from})`, res);
}

/** Yields the blob's bytes from `offset`, reopening at the current position after a transient fault. */
async function* bytesFrom(
  t: Transport,
  w: BlobWhere,
  offset: number,
  first: Opened,
  attempts: Attempts,
  what: string,
) {
  let pos = offset;
  let current = first;
  let posAtFailure = -1;
  for (;;) {
    try {
      let skip = current.skip;
      for await (const raw of current.stream) {
        let chunk = raw as Buffer;
        if (skip > 0) {
          const dropped = Math.min(skip, chunk.length);
          skip -= dropped;
          chunk = chunk.subarray(dropped);
          if (chunk.length === 0) continue;
        }
        pos += chunk.length;
        if (w.size !== undefined && pos > w.size) throw pastSize(what, w.size);
        yield chunk;
      }
      checkComplete(what, pos, current.total);
      return;
    } catch (err) {
      // Bytes got through since the last fault: the connection works, start counting anew.
      if (pos > posAtFailure) attempts.progressed();
      posAtFailure = pos;
      await attempts.failed(classifyError(err, what));
      current = await t.retrying(what, () => request(t, w, pos), attempts);
    }
  }
}

/** A blob announced longer than its descriptor is refused before a byte of it is read. */
function refuseLonger(stream: Readable, w: BlobWhere, total: number | undefined, end: number): void {
  if (w.size === undefined || Math.max(total ?? 0, end) <= w.size) return;
  stream.destroy();
  throw pastSize(`download blob ${w.digest} of ${w.name}`, w.size, Math.max(total ?? 0, end));
}

function pastSize(what: string, size: number, announced?: number): WorkError {
  const got = announced === undefined ? "sends more" : `announces ${announced} bytes`;
  return new WorkError(`${what}: the registry ${got} than the ${size} bytes its descriptor says; dropped`);
}

function checkComplete(what: string, pos: number, total: number | undefined): void {
  if (total === undefined || pos === total) return;
  if (pos < total) throw new TransientError(`${what}: the connection ended after ${pos} of ${total} bytes`);
  throw new WorkError(`${what}: received ${pos} bytes, more than the ${total} announced`);
}

function contentLength(headers: Record<string, string | string[] | undefined>): number | undefined {
  const value = headers["content-length"];
  return typeof value === "string" && /^\d+$/.test(value) ? Number(value) : undefined;
}

/** `bytes 100-199/1000` → start 100, total 1000 (total undefined for `*`). */
export function parseContentRange(
  value: string | undefined,
): { start: number; total: number | undefined } | undefined {
  const m = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(value?.trim() ?? "");
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === "*" ? undefined : Number(m[3]) };
}
