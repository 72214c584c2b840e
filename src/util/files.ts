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
