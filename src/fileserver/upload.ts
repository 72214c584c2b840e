/**
 * Receiving one upload: the body goes to its own temporary file under root (TEMP_DIR), hashed
 * and counted as it arrives; only bytes whose sha256 equals the declared one are renamed into
 * place. Each upload has its own temporary file and rename is atomic, so readers and
 * concurrent uploads of the same path always see one whole upload, never a mix.
 */
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream, type Stats } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Transform, type Readable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import { checkParent, PathRejected, TEMP_DIR } from "./paths.js";

/** An upload refused for what it sent (its digest, its size): the status and what the client is told. */
export class UploadRefused extends Error {
  override name = "UploadRefused";
  constructor(
    readonly status: 400 | 413,
    message: string,
  ) {
    super(message);
  }
}

export interface UploadTarget {
  root: string;
  /** Where the file goes, as resolveForWrite returned it. */
  target: string;
  /** The sha256 the client declared, lower-case hex. */
  sha256: string;
  maxBytes: number;
  onBytes?: (n: number) => void;
  /** Called with the final path and the verified bytes' stat, just before they are published. */
  beforeRename?: (file: string, version: Stats) => Promise<void>;
}

export interface StoredUpload {
  /** The real path the file was renamed to. */
  file: string;
  /** The stat of the stored bytes, for the digest record. */
  version: Stats;
}

export function tempDir(root: string): string {
  return path.join(root, TEMP_DIR);
}

/** Streams `body` to a temporary file, checks it, and renames it to the target. */
export async function storeUpload(body: Readable, up: UploadTarget): Promise<StoredUpload> {
  const temp = path.join(tempDir(up.root), randomUUID());
  await mkdir(tempDir(up.root), { recursive: true, mode: 0o700 }); // in case someone removed it
  try {
    const sha256 = await receive(body, temp, up);
    if (sha256 !== up.sha256)
      throw new UploadRefused(400, `sha256 mismatch: declared ${up.sha256}, received ${sha256}`);
    const version = await flush(temp);
    await mkdir(path.dirname(up.target), { recursive: true }).catch((err: NodeJS.ErrnoException) => {
      // Another upload put a file where this one needs a folder since the path was checked.
      if (err.code === "EEXIST" || err.code === "ENOTDIR")
        throw new PathRejected(409, "a file stands where the path needs a folder");
      throw err;
    });
    const file = await checkParent(up.root, up.target);
    await up.beforeRename?.(file, version);
    await rename(temp, file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "EISDIR" || err.code === "ENOTEMPTY" || err.code === "ENOTDIR")
        throw new PathRejected(409, "a folder stands where the file should go");
      throw err;
    });
    return { file, version };
  } finally {
    // After the rename there is nothing left to remove; before it, a refused or cut-off upload.
    await rm(temp, { force: true });
  }
}

/** Writes the body to `temp`, stopping at maxBytes; resolves with the sha256 of what came. */
async function receive(body: Readable, temp: string, up: UploadTarget): Promise<string> {
  const hash = createHash("sha256");
  let received = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      received += chunk.length;
      if (received > up.maxBytes)
        return done(new UploadRefused(413, `the body is larger than the limit of ${up.maxBytes} bytes`));
      hash.update(chunk);
      up.onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
  const written = pipeline(meter, createWriteStream(temp, { flags: "wx", mode: 0o644 }));
  // Not pipeline(body, …): on a refusal it would destroy the request, and the socket with it,
  // before the 413 could be sent. `pipe` only unpipes, leaving the body unread.
  body.pipe(meter);
  finished(body).catch((err: Error) => meter.destroy(err));
  await written;
  return hash.digest("hex");
}

/** Makes the bytes durable before the rename publishes them, and returns their stat. */
async function flush(temp: string): Promise<Stats> {
  const handle = await open(temp, "r+");
  try {
    await handle.sync();
    return await handle.stat();
  } finally {
    await handle.close();
  }
}

/**
 * Removes temporary files a killed server left behind. Only those untouched for `olderThanMs`:
 * another server process on the same root may be receiving into the others right now.
 */
export async function sweepTempDir(root: string, olderThanMs = 3_600_000): Promise<void> {
  const dir = tempDir(root);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const name of await readdir(dir)) {
    const file = path.join(dir, name);
    const s = await stat(file).catch(() => undefined);
    if (s && Date.now() - s.mtimeMs > olderThanMs) await rm(file, { recursive: true, force: true });
  }
}
