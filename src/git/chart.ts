/**
 * A chart folder taken from a fetched commit (a Telego `helm-dir` inside a git item), copied
 * into the bundle's `charts/<name>/` with git's modes. The new copy is built next to the
 * destination and swapped in, so the destination is always a whole chart: the old one or the new.
 */
import { chmod, mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { InputError } from "../util/errors.js";
import { describeCommit, gitAt, objectType, requireCommit } from "./exec.js";
import { materializeTree } from "./tree.js";

export async function copyChart(
  repoDir: string,
  commit: string,
  subPath: string,
  destDir: string,
): Promise<void> {
  const label = await describeCommit(repoDir, commit);
  const sub = normalizeSubPath(subPath, label);
  await requireCommit(repoDir, commit, label);
  const type = await objectType(gitAt(repoDir), `${commit}:${sub}`);
  if (type !== "tree")
    throw new InputError(
      `${label} has no folder ${sub}${type ? ` (it is a ${type === "blob" ? "file" : type})` : ""}`,
    );
  const unique = `${process.pid}-${Math.random().toString(36).slice(2)}`;
  const staging = `${destDir}.tmp-${unique}`;
  const old = `${destDir}.old-${unique}`;
  await mkdir(path.dirname(destDir), { recursive: true });
  try {
    await materializeTree(repoDir, `${commit}:${sub}`, staging, {
      submodules: false,
      scratchTar: `${staging}.tar`,
      label: `${label}:${sub}`,
    });
    await chmod(staging, 0o755);
    const hadOld = await exists(destDir);
    if (hadOld) await rename(destDir, old);
    await rename(staging, destDir);
    if (hadOld) await rm(old, { recursive: true, force: true });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

function normalizeSubPath(subPath: string, label: string): string {
  const p = path.posix
    .normalize(subPath.replaceAll("\\", "/"))
    .replace(/^(\.\/)+/, "")
    .replace(/\/+$/, "");
  if (p === "" || p === "." || p.startsWith("/") || p === ".." || p.startsWith("../"))
    throw new InputError(`${label}: chart path must be a folder inside the repository, got "${subPath}"`);
  return p;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}
