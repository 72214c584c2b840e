/**
 * Paths that come from data (a lock, a chart, a definition) and are joined to a folder the
 * command owns. Each is checked before use: relative, normalised, no `..`, no backslash; a
 * write lands inside the folder even when a link in the folder points elsewhere.
 */
import { lstat, mkdir, realpath, rm, writeFile, chmod } from "node:fs/promises";
import path from "node:path";
import { InputError } from "./errors.js";

/** `rel` as given when it is a plain relative POSIX path; `what` names it in the error. */
export function relativePath(rel: string, what: string): string {
  const bad =
    rel === "" ||
    rel.startsWith("/") ||
    rel.includes("\\") ||
    rel.includes("\0") ||
    rel.split("/").some((seg) => seg === ".." || seg === "." || seg === "");
  if (bad) throw new InputError(`${what}: ${JSON.stringify(rel)} is not a relative path inside its folder`);
  return rel;
}

/** A name that is one path segment: letters, digits, `.`, `_`, `-`, not starting with a dot. */
export function segmentName(name: string, what: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$/.test(name))
    throw new InputError(`${what}: ${JSON.stringify(name)} is not a plain name (letters, digits, ., _, -)`);
  return name;
}

/** Only permission bits: no setuid, setgid or sticky bit from any input. */
export function permissionBits(mode: number): number {
  return mode & 0o777;
}

/** Whether `candidate` is `root` itself or lies under it; both must be real (symlink-free) paths. */
export function isWithin(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel === "" || (!path.isAbsolute(rel) && rel !== ".." && !rel.startsWith(`..${path.sep}`));
}

/**
 * The one way from a path in data (a lock, an index, a chart) to a place under a folder the
 * command owns (a bundle, a deploy work folder, an unpack target), for reading or writing.
 * `rel` must be a plain relative path; each part that exists is followed as the OS would
 * follow it, and a link that leads outside `root` (or nowhere) is refused, so nothing is read
 * or written through it. Returns the real path: parts that exist resolved, the rest joined.
 */
export async function resolveInside(
  root: string,
  rel: string,
  what = `a path under ${root}`,
): Promise<string> {
  const parts = relativePath(rel, what).split("/");
  const realRoot = await realpath(root);
  // The common case, in one call: the whole path exists, every link in it resolved by the OS.
  const whole = await realpath(path.join(realRoot, ...parts)).catch(() => undefined);
  if (whole !== undefined && isWithin(realRoot, whole)) return whole;
  // Otherwise part by part: where the path stops existing, or which link leads out.
  let real = realRoot;
  for (const [i, part] of parts.entries()) {
    const next = path.join(real, part);
    const info = await lstat(next).catch(() => undefined);
    if (!info) return path.join(next, ...parts.slice(i + 1));
    real = info.isSymbolicLink() ? await realpath(next).catch(() => "") : next;
    if (!real || !isWithin(realRoot, real))
      throw new InputError(
        `${path.join(root, rel)}: a link in its path leads outside ${root}; it is not followed`,
      );
  }
  return real;
}

/**
 * Writes `text` to `root/rel`, replacing what is there. The folder is found through
 * `resolveInside` before it is created and again after (a link in between that leads out is
 * refused, and no folder is made through one), and a link at the file's own name is removed,
 * not followed.
 */
export async function writeInside(root: string, rel: string, text: string, mode = 0o644): Promise<void> {
  const parts = relativePath(rel, `a file under ${root}`).split("/");
  const name = parts.pop() ?? "";
  const folder = async () => (parts.length > 0 ? resolveInside(root, parts.join("/")) : realpath(root));
  await mkdir(await folder(), { recursive: true });
  const file = path.join(await folder(), name);
  await rm(file, { force: true });
  await writeFile(file, text, { flag: "wx", mode: permissionBits(mode) });
  await chmod(file, permissionBits(mode));
}
