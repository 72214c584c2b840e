/**
 * A reproducible `.tar.gz` of a commit: the same commit gives the same bytes on any machine,
 * in any folder, under any umask or user, so its sha256 can go in the lock and be checked.
 *
 * - Entries are the commit's tree (tree.ts), every one under `<prefix>/` as with
 *   `git archive --prefix=<prefix>/`, folders included, in path order: a folder first, then its
 *   contents, names compared byte by byte.
 * - Every entry's mtime is the commit's committer date: fixed by the commit, and a real date,
 *   like `git archive` gives, so extracted files do not claim to be from 1970.
 * - node-tar's portable mode leaves out uid, gid, uname, gname, atime, ctime, dev and inode (the
 *   numeric fields stay empty, which every tar reads as 0) and sets the gzip header's OS byte to
 *   255; zlib writes no timestamp. Modes come from git: 0644, 0755, folders 0755 (symlinks 0755,
 *   portable mode's fixed value).
 *
 * Written to a temporary name while hashed, then renamed: a file under the final name is whole.
 */
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { c } from "tar";
import { writeVerified } from "../util/cas.js";
import { WorkError } from "../util/errors.js";
import { describeCommit, gitAt, requireCommit } from "./exec.js";
import { materializeTree } from "./tree.js";

export interface ArchiveOptions {
  /** The one folder every entry is under, e.g. `openwhisk` (no slashes). */
  prefix: string;
  /** Include each submodule's tree at its recorded commit (fetched by fetchCommit with submodules). */
  submodules?: boolean;
}

export interface ArchiveResult {
  size: number;
  /** Lowercase hex of the .tar.gz file. */
  sha256: string;
}

/** Explicit, so a change of zlib's defaults cannot change the bytes; level 6 is gzip's default. */
const GZIP = { level: 6, memLevel: 8 };

export async function writeArchive(
  repoDir: string,
  commit: string,
  outFile: string,
  opts: ArchiveOptions,
): Promise<ArchiveResult> {
  const prefix = checkPrefix(opts.prefix);
  const label = await describeCommit(repoDir, commit);
  const mtime = await commitDate(repoDir, commit, label);
  const work = await mkdtemp(path.join(tmpdir(), "bundle-git-"));
  try {
    const root = path.join(work, "root");
    await mkdir(path.join(root, prefix), { recursive: true });
    await chmod(path.join(root, prefix), 0o755);
    const entries = await materializeTree(repoDir, commit, path.join(root, prefix), {
      submodules: opts.submodules ?? false,
      scratchTar: path.join(work, "tree.tar"),
      label,
    });
    const paths = [prefix, ...sortPaths(entries.map((e) => `${prefix}/${e.path}`))];
    return await packAtomic(root, paths, mtime, outFile);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The folder an archive's entries go under: its file name without `.tar.gz` (`openwhisk.tar.gz` → `openwhisk`). */
export function archivePrefix(archive: string): string {
  return path.posix.basename(archive.replaceAll("\\", "/")).replace(/\.(tar\.gz|tgz)$/, "");
}

function checkPrefix(prefix: string): string {
  const p = prefix.replace(/\/+$/, "");
  // node-tar reads a name starting with @ as another archive to copy entries from.
  if (p === "" || p === "." || p === ".." || p.startsWith("@") || /[/\\\0]/.test(p))
    throw new WorkError(`archive prefix must be one folder name, got ${JSON.stringify(prefix)}`);
  return p;
}

async function commitDate(repoDir: string, commit: string, label: string): Promise<Date> {
  await requireCommit(repoDir, commit, label);
  const seconds = Number((await gitAt(repoDir).raw(["show", "-s", "--format=%ct", commit])).trim());
  if (!Number.isSafeInteger(seconds)) throw new WorkError(`${label}: cannot read the committer date`);
  return new Date(seconds * 1000);
}

/** Folder before its contents; `/` sorts before every other byte, so `a/x` comes before `a-b`. */
export function sortPaths(paths: string[]): string[] {
  const key = (p: string) => Buffer.from(p.replaceAll("/", "\0"));
  return paths
    .map((p) => ({ p, k: key(p) }))
    .sort((a, b) => Buffer.compare(a.k, b.k))
    .map(({ p }) => p);
}

/**
 * Packs `paths` (relative to `cwd`, each listed: folders are not recursed) into a reproducible
 * `.tar.gz` at `outFile`, every entry dated `mtime`; written under a temporary name, then renamed.
 */
export async function packAtomic(
  cwd: string,
  paths: string[],
  mtime: Date,
  outFile: string,
): Promise<ArchiveResult> {
  await mkdir(path.dirname(outFile), { recursive: true });
  const pack = c(
    {
      cwd,
      portable: true,
      noDirRecurse: true,
      strict: true,
      mtime,
      gzip: { ...GZIP },
      // Portable mode drops folders' mtimes; keep the commit date on every entry.
      onWriteEntry: (entry) => {
        entry.noMtime = false;
      },
    },
    paths,
  );
  return writeVerified(outFile, pack);
}
