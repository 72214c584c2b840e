/**
 * Content addressing in one place, as npm's cacache keeps its path.js and write.js: where a
 * digest lives in an image layout (`blobs/sha256/<hex>`, the only digest → path map), and how a
 * file is written so that a reader sees nothing, the old file or the whole new one: a temporary
 * name opened exclusively, the bytes hashed and counted as they pass (and checked when the caller
 * knows what they must be), then a rename. Every write of streamed or downloaded content goes
 * through `writeVerified`; a resumable download keeps its own partial file (see layout, files).
 */
import { createWriteStream } from "node:fs";
import { chmod, open, rename, rm } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { InputError, WorkError } from "./errors.js";
import { checkedBytes, type CheckFailures, type ExpectedBytes, type StreamedBytes } from "./streams.js";

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
  let written: StreamedBytes | undefined;
  let created = false;
  try {
    // `wx`: a name that exists is someone else's file, never written over (nor removed below).
    const out = createWriteStream(tmp, {
      flags: "wx",
      ...(opts.mode !== undefined ? { mode: opts.mode } : {}),
    });
    out.once("open", () => (created = true));
    await pipeline(
      source,
      async function* (bytes: AsyncIterable<unknown> | Iterable<unknown>) {
        written = yield* checkedBytes(bytes, opts.want ?? {}, fail, opts.onBytes);
      },
      out,
    );
    if (opts.mode !== undefined) await chmod(tmp, opts.mode);
    if (opts.durable) await fsync(tmp);
    const done = written as StreamedBytes;
    await (opts.publish ? opts.publish(tmp, done) : rename(tmp, file));
    return done;
  } finally {
    // After the rename there is nothing left to remove; before it, a refused or broken write.
    if (created) await rm(tmp, { force: true });
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
