/**
 * Receiving one upload: the body goes to its own temporary file under root (TEMP_DIR), hashed
 * and counted as it arrives; only bytes whose sha256 equals the declared one are renamed into
 * place. Each upload has its own temporary file and rename is atomic, so readers and
 * concurrent uploads of the same path always see one whole upload, never a mix.
 */
import { randomUUID } from "node:crypto";
import type { Stats } from "node:fs";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { writeVerified } from "../util/cas.js";
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
  await mkdir(tempDir(up.root), { recursive: true, mode: 0o700 }); // in case someone removed it
  let stored: StoredUpload | undefined;
  await writeVerified(up.target, detached(body), {
    temp: path.join(tempDir(up.root), randomUUID()),
    want: { sha256: up.sha256, max: up.maxBytes },
    fail: {
      over: () => new UploadRefused(413, `the body is larger than the limit of ${up.maxBytes} bytes`),
      differ: (_size, got) =>
        new UploadRefused(400, `sha256 mismatch: declared ${up.sha256}, received ${got}`),
    },
    mode: 0o644,
    // Made durable before the rename publishes them: the server answers 201 right after.
    durable: true,
    ...(up.onBytes ? { onBytes: up.onBytes } : {}),
    publish: async (temp) => {
      stored = await publish(temp, up);
    },
  });
  return stored as StoredUpload;
}

/**
 * The body as a stream of its own: a refusal ends this one, not the request, whose socket must
 * stay open for the 413 (pipeline(body, …) would destroy it). `pipe` only unpipes, leaving the
 * body unread.
 */
function detached(body: Readable): PassThrough {
  const pass = new PassThrough();
  body.pipe(pass);
  finished(body).catch((err: Error) => pass.destroy(err));
  return pass;
}

/** Renames the checked bytes to the target, whose folder may have changed since it was checked. */
async function publish(temp: string, up: UploadTarget): Promise<StoredUpload> {
  const version = await stat(temp);
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
