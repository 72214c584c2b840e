/**
 * Turning a request's URL into a place under the server's root, and refusing every way out of
 * it: `..` (plain or percent-encoded), encoded slashes and backslashes, NUL bytes, empty
 * segments (so `//etc/passwd` is no absolute path), the server's own hidden folders, and
 * symlinks whose target lies outside the root. The URL is parsed here, from the raw request
 * line, rather than by the router: what is checked is exactly what is opened.
 */
import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import { isWithin } from "../util/paths.js";

/** Digests of the served files, keyed by path: never served, never listed. */
export const META_DIR = ".bundle-meta";
/** Uploads being received: on the root's filesystem, so the final rename is atomic. */
export const TEMP_DIR = ".bundle-tmp";

const FILE_IN_THE_WAY = "a file stands where the path needs a folder";

/** A request path the server will not follow; `status` is what the client is told. */
export class PathRejected extends Error {
  override name = "PathRejected";
  constructor(
    readonly status: 400 | 403 | 404 | 409,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The decoded segments of a request's path (query dropped), `[]` for `/`. Each segment is
 * decoded on its own, so `%2f` stays inside a segment, where it is refused.
 */
export function parseUrlPath(rawUrl: string): string[] {
  const pathname = rawUrl.split("?", 1)[0] ?? "";
  if (!pathname.startsWith("/")) throw new PathRejected(400, "the request path must start with /");
  if (pathname === "/") return [];
  return pathname.slice(1).split("/").map(decodeSegment);
}

function decodeSegment(raw: string): string {
  let segment: string;
  try {
    segment = decodeURIComponent(raw);
  } catch {
    throw new PathRejected(400, "malformed percent-encoding in the path");
  }
  if (segment === "") throw new PathRejected(400, "empty segment in the path");
  if (segment === "." || segment === "..") throw new PathRejected(400, "`.` or `..` in the path");
  if (/[/\\\0]/.test(segment)) throw new PathRejected(400, "encoded slash, backslash or NUL in the path");
  return segment;
}

/** The listing route's prefix: no bundle can take the name, or its files could not be read. */
export const LIST_PREFIX = "_list";

/**
 * Top-level names the server keeps for itself: `_list`, and any starting with a dot
 * (META_DIR, TEMP_DIR and any later).
 */
export function isReservedName(topLevel: string): boolean {
  return topLevel.startsWith(".") || topLevel === LIST_PREFIX;
}

/** `real`'s path under root with `/` separators, or undefined when it is root or outside. */
export function relativeTo(root: string, real: string): string | undefined {
  if (!isWithin(root, real) || root === real) return undefined;
  const rel = path.relative(root, real).split(path.sep);
  return rel[0] !== undefined && isReservedName(rel[0]) ? undefined : rel.join("/");
}

/**
 * The real path of an existing file or folder for reading, after symlinks; undefined when it
 * does not exist, or resolves outside root or into a hidden folder. The caller answers 404 in
 * every case, so a client cannot probe what lies outside root.
 */
export async function resolveForRead(root: string, segments: string[]): Promise<string | undefined> {
  if (segments[0] !== undefined && isReservedName(segments[0])) return undefined;
  let real: string;
  try {
    real = await realpath(path.join(root, ...segments));
  } catch {
    return undefined;
  }
  return relativeTo(root, real) === undefined ? undefined : real;
}

/**
 * Where an upload to `segments` will be renamed to: checks that the deepest folder of the
 * target that already exists is a real folder under root (no symlink out of it). Folders still
 * missing are created later, and `checkParent` checks again once they exist.
 */
export async function resolveForWrite(root: string, segments: string[]): Promise<string> {
  if (segments.length < 2) throw new PathRejected(400, "uploads go to /<bundle>/<path>");
  if (isReservedName(segments[0] ?? "")) throw new PathRejected(403, "that folder is the server's own");
  const target = path.join(root, ...segments);
  await checkedExistingAncestor(root, path.dirname(target));
  return target;
}

async function checkedExistingAncestor(root: string, dir: string): Promise<string> {
  for (let current = dir; ; current = path.dirname(current)) {
    const real = await realpath(current).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      if (err.code === "ENOTDIR") throw new PathRejected(409, FILE_IN_THE_WAY);
      throw err;
    });
    if (real === undefined) {
      // Walking up never leaves root: `segments` hold no `..` and root itself exists.
      if (current === root) throw new Error(`the root ${root} has disappeared`);
      continue;
    }
    if (!isWithin(root, real) || (real !== root && relativeTo(root, real) === undefined))
      throw new PathRejected(403, "the path leads outside the served folder");
    if (!(await stat(real)).isDirectory()) throw new PathRejected(409, FILE_IN_THE_WAY);
    return real;
  }
}

/** The target's folder, once it exists: still a real folder under root (re-checked after mkdir). */
export async function checkParent(root: string, target: string): Promise<string> {
  const real = await checkedExistingAncestor(root, path.dirname(target));
  return path.join(real, path.basename(target));
}
