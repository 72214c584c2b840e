/**
 * Paths that come from data (a lock, a chart, a definition) and are joined to a folder the
 * command owns. Each is checked before use: relative, normalised, no `..`, no backslash; a
 * write lands inside the folder even when a link in the folder points elsewhere.
 */
import { mkdir, realpath, rm, writeFile, chmod } from "node:fs/promises";
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

/**
 * Writes `text` to `root/rel`, replacing what is there. The parent folder must resolve inside
 * `root` (a link in between that leads out is refused), and a link at the file's own name is
 * removed, not followed.
 */
export async function writeInside(root: string, rel: string, text: string, mode = 0o644): Promise<void> {
  const parts = relativePath(rel, `a file under ${root}`).split("/");
  const dir = path.join(root, ...parts.slice(0, -1));
  await mkdir(dir, { recursive: true });
  const [realRoot, realDir] = await Promise.all([realpath(root), realpath(dir)]);
  if (realDir !== realRoot && !realDir.startsWith(`${realRoot}${path.sep}`))
    throw new InputError(`${rel}: its folder leads outside ${root}`);
  const file = path.join(realDir, parts.at(-1) ?? "");
  await rm(file, { force: true });
  await writeFile(file, text, { flag: "wx", mode: permissionBits(mode) });
  await chmod(file, permissionBits(mode));
}
