import { readdir } from "node:fs/promises";
import path from "node:path";

/**
 * Regular files under `root`, as `/`-separated paths relative to it (unsorted); an absent folder
 * has none. Symbolic links are not followed nor listed: a bundle holds regular files only.
 */
export async function listFiles(root: string, prefix = ""): Promise<string[]> {
  const entries = await readdir(path.join(root, prefix), { withFileTypes: true }).catch(() => []);
  const out: string[] = [];
  for (const e of entries) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(root, rel)));
    else if (e.isFile()) out.push(rel);
  }
  return out;
}

const FS_ERRORS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "it is a folder, not a file",
  ENOTDIR: "a part of its path is a file, not a folder",
  ELOOP: "too many symbolic links",
};

/**
 * A file system error in words (`no such file`), with its code only when it has no words here:
 * what a user reads instead of ENOENT.
 */
export function fsReason(err: unknown, what: "file" | "folder" = "file"): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === "ENOENT") return `no such ${what}`;
  return (code && FS_ERRORS[code]) ?? code ?? String((err as Error)?.message ?? err);
}
