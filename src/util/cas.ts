/**
 * Content addressing in one place, as npm's cacache keeps its path.js and write.js: where a
 * digest lives in an image layout (`blobs/sha256/<hex>`, the only digest → path map), and how a
 * file is written so that a reader sees nothing, the old file or the whole new one: a temporary
 * name opened exclusively, the bytes hashed and counted as they pass (and checked when the caller
 * knows what they must be), then a rename. Every write of streamed or downloaded content goes
 * through `writeVerified`, or `writeResumable` for a download that keeps a partial file to resume.
 */
import { createHash, type Hash } from "node:crypto";
import { close, createReadStream, openSync, write, writeSync } from "node:fs";
import { chmod, open, rename, rm, stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import { performance } from "node:perf_hooks";
import { InputError, WorkError } from "./errors.js";
import {
  ByteCheck,
  type CheckedMore,
  type CheckFailures,
  type ExpectedBytes,
  type StreamedBytes,
} from "./streams.js";

/** The folder of a layout holding its blobs, relative to the layout. */
export const BLOBS_DIR = "blobs/sha256";

const DIGEST = /^sha256:([a-f0-9]{64})$/;

/** `blobs/sha256/<hex>` for `sha256:<hex>`; anything else is refused, never joined to a path. */
export function blobRel(digest: string): string {
  const hex = DIGEST.exec(digest)?.[1];
  if (hex === undefined) throw new InputError(`${JSON.stringify(digest)} is not a sha256 digest`);
  return `${BLOBS_DIR}/${hex}`;
}

export interface VerifiedWrite {
  /** What the bytes must be; without it they are only hashed and counted. */
  want?: ExpectedBytes;
  /** The errors for bytes past the size and for a size or sha256 that differs; default WorkErrors. */
  fail?: CheckFailures;
  onBytes?: (n: number) => void;
  /** The file's mode, set with chmod too (the umask trims what open sets). */
  mode?: number;
  /** fsync before the rename: for files a running server publishes (the file server's uploads). */
  durable?: boolean;
  /** Where the bytes go first; default beside the file, on its filesystem, so the rename is atomic. */
  temp?: string;
  /** Puts the checked temporary file in place; default a rename to the file. */
  publish?: (temp: string, written: StreamedBytes) => Promise<void>;
}

/**
 * Writes `source` to `file` as described above; the temporary file is removed on any failure,
 * so nothing half-written or unverified is ever left under either name. Returns size and sha256.
 */
export async function writeVerified(
  file: string,
  source: AsyncIterable<unknown> | Iterable<unknown>,
  opts: VerifiedWrite = {},
): Promise<StreamedBytes> {
  const tmp = opts.temp ?? `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const fail = opts.fail ?? defaultFailures(file, opts.want);
  let created = false;
  try {
    // `wx`: a name that exists is someone else's file, never written over (nor removed below).
    // Opened synchronously, and the loop below starts at once: a source's error (a file that
    // does not open, a server that breaks off) must find it listening, and an await between
    // would let the error fire with no one to hear it.
    const out = openFor(source, tmp, "wx", opts.mode);
    created = true;
    const written = await streamInto(out, source, opts.want ?? {}, fail, {
      ...(opts.onBytes ? { onBytes: opts.onBytes } : {}),
    });
    if (opts.mode !== undefined) await chmod(tmp, opts.mode);
    if (opts.durable) await fsync(tmp);
    await (opts.publish ? opts.publish(tmp, written) : rename(tmp, file));
    created = false;
    return written;
  } finally {
    // After the rename there is nothing left to remove; before it, a refused or broken write.
    if (created) await rm(tmp, { force: true });
  }
}

/**
 * A download that outlives a fault or a killed run: its bytes go to `partial`, a name of its own
 * that stays after a failure `keep` accepts, so the next attempt asks only for the rest (Range)
 * and appends it, hashed after what the partial already held. Whole and checked, it is renamed
 * to `file`; on any other failure the partial is removed. Not `wx`: the partial is the resume state.
 */
export interface ResumableWrite {
  partial: string;
  /** Opens the content from `offset`; `from` is where its bytes start: `offset`, or 0 when it could not skip. */
  open(offset: number): Promise<{ stream: AsyncIterable<unknown>; from: number }>;
  want: ExpectedBytes;
  fail: CheckFailures;
  keep(err: unknown): boolean;
  onBytes?: (n: number) => void;
}

export async function writeResumable(file: string, w: ResumableWrite): Promise<StreamedBytes> {
  try {
    const held = await heldBytes(w.partial, w.want.size);
    const { stream, from } = await w.open(held.size);
    const after = from > 0 ? held : { hash: createHash("sha256"), size: 0 };
    // Synchronously, as in writeVerified: the response flows from here on.
    const out = openFor(stream, w.partial, from > 0 ? "a" : "w");
    const written = await streamInto(out, stream, w.want, w.fail, {
      after,
      ...(w.onBytes ? { onBytes: w.onBytes } : {}),
    });
    await rename(w.partial, file);
    return written;
  } catch (err) {
    if (!w.keep(err)) await rm(w.partial, { force: true });
    throw err;
  }
}

/** What a partial file holds, hashed; nothing when it is empty or not shorter than the whole. */
async function heldBytes(partial: string, size: number | undefined): Promise<{ hash: Hash; size: number }> {
  const hash = createHash("sha256");
  const s = await stat(partial).catch(() => undefined);
  if (!s || s.size === 0 || (size !== undefined && s.size >= size)) return { hash, size: 0 };
  for await (const chunk of createReadStream(partial)) hash.update(chunk as Buffer);
  return { hash, size: s.size };
}

/**
 * Writes `source` through a ByteCheck to `out`, one chunk at a time, and closes it; resolves with
 * what went through once it is all written.
 */
async function streamInto(
  out: number,
  source: AsyncIterable<unknown> | Iterable<unknown>,
  want: ExpectedBytes,
  fail: CheckFailures,
  more: CheckedMore,
): Promise<StreamedBytes> {
  const check = new ByteCheck(want, fail, more);
  try {
    // A check that throws ends the loop, and with it the source (a download is aborted).
    for await (const chunk of source) await writeChunk(out, check.take(chunk));
    return check.end();
  } finally {
    await closeFile(out);
  }
}

/**
 * Past this, a write is the disk pushing back (the kernel throttles writers to a slow medium, a
 * USB stick): after a few such writes (one may be the scheduler's doing), later ones go through
 * libuv's threadpool, so sockets, timers and the progress display never wait for the disk.
 */
const SLOW_WRITE_MS = 20;
const SLOW_WRITES = 3;
let slowWrites = 0;

/**
 * Writes a chunk from this thread while the disk keeps up: 64 KiB into the page cache takes
 * microseconds, and a round trip through the threadpool costs more than the write itself. Over
 * 300 MB of blobs downloaded and hashed, writing this way took 1.42 s of CPU against 1.83 s for
 * a WriteStream (medians of 3, the same GETs; 1.27 s without writing at all), and a prepare of
 * 20 images 3.13 → 2.29 s (medians of 5). Writes at the file's position; `chunk` may be reused
 * once the promise settles.
 */
export async function writeChunk(out: number, chunk: Buffer): Promise<void> {
  if (slowWrites >= SLOW_WRITES) {
    for (let at = 0; at < chunk.length;) at += await writeAt(out, chunk, at);
    return;
  }
  const started = performance.now();
  for (let at = 0; at < chunk.length;) at += writeSync(out, chunk, at);
  if (performance.now() - started > SLOW_WRITE_MS) slowWrites++;
}

const writeAt = promisify(
  (fd: number, buf: Buffer, at: number, done: (err: Error | null, n: number) => void) =>
    write(fd, buf, at, buf.length - at, null, done),
);
const closeFile = promisify(close);

/** Opens the file to write, or stops the source (a response, a file read) that was to fill it. */
function openFor(source: unknown, file: string, flags: string, mode?: number): number {
  try {
    return openSync(file, flags, mode);
  } catch (err) {
    if (source instanceof Readable) source.destroy();
    throw err;
  }
}

/** Writes a whole buffer or text the same way: readers see the old or the new file. */
export async function writeAtomic(file: string, data: string | Buffer, mode?: number): Promise<void> {
  await writeVerified(file, [Buffer.from(data)], mode !== undefined ? { mode } : {});
}

function defaultFailures(file: string, want: ExpectedBytes | undefined): CheckFailures {
  const limit = want?.size ?? want?.max;
  return {
    over: () => new WorkError(`${file}: more than the ${limit} bytes expected; nothing was kept`),
    differ: (size, sha256) =>
      new WorkError(
        `${file}: expected ${want?.size ?? "any number of"} bytes with sha256 ${want?.sha256 ?? "any"}, ` +
          `got ${size} bytes with sha256 ${sha256}; nothing was kept`,
      ),
  };
}

async function fsync(file: string): Promise<void> {
  const handle = await open(file, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
