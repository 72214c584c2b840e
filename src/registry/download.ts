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
  return new BlobBody(t, w, offset, first, attempts, what);
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

/**
 * The blob's bytes from `offset`, reopening at the current position after a transient fault.
 * Each response's chunks are pushed on as they arrive, the response paused while the reader is
 * behind: an async generator here (a promise per chunk, twice) cost more CPU than the copy.
 */
class BlobBody extends Readable {
  private source: Readable | undefined;
  /** Bytes of the current response to drop first (a server that ignored our Range). */
  private skip = 0;
  private total: number | undefined;
  private posAtFailure = -1;

  constructor(
    private readonly t: Transport,
    private readonly w: BlobWhere,
    private pos: number,
    first: Opened,
    private readonly attempts: Attempts,
    private readonly what: string,
  ) {
    super();
    this.attach(first);
  }

  override _read(): void {
    this.source?.resume();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.detach();
    done(err);
  }

  private attach(opened: Opened): void {
    const source = opened.stream;
    this.source = source;
    this.skip = opened.skip;
    this.total = opened.total;
    source.on("data", this.onData);
    source.on("end", this.onEnd);
    source.on("error", this.onError);
  }

  /** Stops listening to the current response and drops it; its later errors are of no interest. */
  private detach(): void {
    const source = this.source;
    if (!source) return;
    this.source = undefined;
    source.off("data", this.onData);
    source.off("end", this.onEnd);
    source.off("error", this.onError);
    source.on("error", () => undefined);
    source.destroy();
  }

  private readonly onData = (raw: unknown): void => {
    let chunk = raw as Buffer;
    if (this.skip > 0) {
      const dropped = Math.min(this.skip, chunk.length);
      this.skip -= dropped;
      chunk = chunk.subarray(dropped);
      if (chunk.length === 0) return;
    }
    this.pos += chunk.length;
    if (this.w.size !== undefined && this.pos > this.w.size)
      return this.fault(pastSize(this.what, this.w.size));
    if (!this.push(chunk)) this.source?.pause();
  };

  private readonly onEnd = (): void => {
    try {
      checkComplete(this.what, this.pos, this.total);
    } catch (err) {
      return this.fault(err);
    }
    this.detach();
    this.push(null);
  };

  private readonly onError = (err: unknown): void => this.fault(err);

  private fault(err: unknown): void {
    this.detach();
    this.reopen(err).catch((e: unknown) => this.destroy(e as Error));
  }

  private async reopen(err: unknown): Promise<void> {
    // Bytes got through since the last fault: the connection works, start counting anew.
    if (this.pos > this.posAtFailure) this.attempts.progressed();
    this.posAtFailure = this.pos;
    await this.attempts.failed(classifyError(err, this.what));
    if (this.destroyed) return;
    const next = await this.t.retrying(this.what, () => request(this.t, this.w, this.pos), this.attempts);
    if (this.destroyed) next.stream.destroy();
    else this.attach(next);
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
