/**
 * `GET /_list/<bundle>`: every file under root/<bundle>/ with its size and sha256, so a client
 * can tell in one request which files it still has to upload. Symlinks are followed only to
 * files that resolve inside root; the server's hidden folders never appear.
 */
import { readdir, realpath, stat } from "node:fs/promises";
import path from "node:path";
import pLimit from "p-limit";
import type { DigestStore } from "./digests.js";
import { relativeTo } from "./paths.js";

export interface ListedFile {
  /** Relative to the bundle's folder, `/`-separated. */
  path: string;
  size: number;
  sha256: string;
}

/** Files hashed at once when a listing finds some not hashed yet: disks favour few streams. */
const HASH_CONCURRENCY = 2;

/** The files of the bundle folder `dir` (a real path under root), sorted by path. */
export async function listBundle(root: string, dir: string, digests: DigestStore): Promise<ListedFile[]> {
  const limit = pLimit(HASH_CONCURRENCY);
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files = await Promise.all(
    entries
      .filter((e) => e.isFile() || e.isSymbolicLink())
      .map((e) => limit(() => describe(root, dir, path.join(e.parentPath, e.name), digests))),
  );
  return files
    .filter((f): f is ListedFile => f !== undefined)
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function describe(
  root: string,
  dir: string,
  file: string,
  digests: DigestStore,
): Promise<ListedFile | undefined> {
  const real = await realpath(file).catch(() => undefined);
  const rel = real && relativeTo(root, real);
  if (!real || rel === undefined) return undefined; // a symlink out of root, or dangling
  const version = await stat(real).catch(() => undefined);
  if (!version?.isFile()) return undefined;
  const sha256 = await digests.digestOf(rel, real, version);
  return { path: path.relative(dir, file).split(path.sep).join("/"), size: version.size, sha256 };
}
