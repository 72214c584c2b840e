/**
 * A commit's tree written out as files, independent of any working tree: `git archive` streams
 * every blob in one process into a tar that node-tar unpacks into a scratch folder. What ends up
 * on disk is then checked against `git ls-tree`: each file's content hashes to its blob id,
 * nothing is missing and nothing extra, and the modes are set from git's (100644 → 0644,
 * 100755 → 0755, folders 0755) rather than from the umask.
 */
import { createReadStream } from "node:fs";
import { chmod, lstat, mkdir, readdir, readlink, rm, symlink } from "node:fs/promises";
import type { Stats } from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import pLimit from "p-limit";
import { x, type ReadEntry } from "tar";
import type { SimpleGit } from "simple-git";
import { WorkError } from "../util/errors.js";
import { ensureRawAttributes } from "./cache.js";
import { gitAt, objectType } from "./exec.js";

export interface TreeEntry {
  /** git's mode: 040000 tree, 100644 file, 100755 executable, 120000 symlink, 160000 submodule. */
  mode: string;
  type: "blob" | "tree" | "commit";
  oid: string;
  /** Relative to the listed tree, `/`-separated. */
  path: string;
}

const CHECK_CONCURRENCY = 16;

/** Every entry of a tree, recursively, folders included. */
export async function listTree(git: SimpleGit, treeish: string): Promise<TreeEntry[]> {
  const out = await git.raw(["ls-tree", "-r", "-t", "-z", "--full-tree", treeish]);
  return out
    .split("\0")
    .filter((line) => line !== "")
    .map((line) => {
      const tab = line.indexOf("\t");
      const [mode, type, oid] = line.slice(0, tab).split(" ");
      return { mode: mode!, type: type as TreeEntry["type"], oid: oid!, path: line.slice(tab + 1) };
    });
}

export interface MaterializeOptions {
  /** Also write each submodule's tree (its commit must be in the same repository). */
  submodules: boolean;
  /** A file name for git archive's temporary tar. */
  scratchTar: string;
  /** For messages: what the tree belongs to (URL and commit). */
  label: string;
}

/**
 * Writes the tree of `treeish` (a commit, or `commit:sub/path`) into `dest`; returns its entries.
 * With submodules, a submodule's entries are listed under its path, the submodule itself as a folder.
 */
export async function materializeTree(
  repoDir: string,
  treeish: string,
  dest: string,
  opts: MaterializeOptions,
): Promise<TreeEntry[]> {
  const git = gitAt(repoDir);
  await ensureRawAttributes(repoDir);
  const entries = await listTree(git, treeish);
  await mkdir(dest, { recursive: true });
  try {
    await git.raw(["archive", "--format=tar", "-o", opts.scratchTar, treeish]);
    // Modes are set from git below and mtimes when packing: node-tar need not set either.
    // Symlinks are made below: node-tar would cut the `/` off an absolute target.
    const notLink = (_: string, e: Stats | ReadEntry) => !("type" in e && e.type === "SymbolicLink");
    await x({
      file: opts.scratchTar,
      cwd: dest,
      strict: true,
      noChmod: true,
      noMtime: true,
      filter: notLink,
    });
  } finally {
    await rm(opts.scratchTar, { force: true });
  }
  await makeSymlinks(git, dest, entries);
  await checkTree(dest, entries, opts.label);
  if (!opts.submodules) return entries;
  return [...entries, ...(await materializeSubmodules(repoDir, git, entries, dest, opts))];
}

async function materializeSubmodules(
  repoDir: string,
  git: SimpleGit,
  entries: TreeEntry[],
  dest: string,
  opts: MaterializeOptions,
): Promise<TreeEntry[]> {
  const nested: TreeEntry[] = [];
  for (const link of entries.filter((e) => e.type === "commit")) {
    if ((await objectType(git, link.oid)) !== "commit")
      throw new WorkError(
        `${opts.label}: submodule ${link.path} at ${link.oid} is not in the clone cache (fetch with submodules)`,
      );
    const label = `${opts.label} submodule ${link.path}`;
    const sub = await materializeTree(repoDir, link.oid, path.join(dest, link.path), { ...opts, label });
    nested.push(...sub.map((e) => ({ ...e, path: `${link.path}/${e.path}` })));
  }
  return nested;
}

/** A symlink's target is its blob's content, byte for byte (it may be absolute, or lead out of the tree). */
async function makeSymlinks(git: SimpleGit, dest: string, entries: TreeEntry[]): Promise<void> {
  for (const link of entries.filter((e) => e.mode === "120000")) {
    const target = (await git.binaryCatFile(["blob", link.oid])) as Buffer;
    await symlink(target, path.join(dest, link.path));
  }
}

/** Sets git's modes and checks that `dest` holds exactly the tree's entries, byte for byte. */
async function checkTree(dest: string, entries: TreeEntry[], label: string): Promise<void> {
  const limit = pLimit(CHECK_CONCURRENCY);
  await Promise.all(entries.map((e) => limit(() => checkEntry(dest, e, label))));
  const expected = new Set(entries.map((e) => e.path));
  const extra = (await walk(dest)).filter((p) => !expected.has(p));
  if (extra.length > 0)
    throw new WorkError(
      `${label}: git archive wrote files the commit does not have: ${extra.slice(0, 5).join(", ")}`,
    );
}

/** Every path under `root`, `/`-separated; unlike readdir's recursive mode, never through a symlink. */
async function walk(root: string, rel = ""): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(path.join(root, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${entry.name}` : entry.name;
    found.push(p);
    if (entry.isDirectory()) found.push(...(await walk(root, p)));
  }
  return found;
}

async function checkEntry(dest: string, entry: TreeEntry, label: string): Promise<void> {
  const file = path.join(dest, entry.path);
  if (entry.type !== "blob") {
    // A submodule is an empty folder in git archive's output; make sure it is there either way.
    await mkdir(file, { recursive: true });
    await chmod(file, 0o755);
    return;
  }
  const info = await lstat(file).catch(() => undefined);
  const isLink = entry.mode === "120000";
  if (!info || info.isSymbolicLink() !== isLink || (!isLink && !info.isFile()))
    throw new WorkError(`${label}: ${entry.path} is missing from git archive's output`);
  // chmod follows symlinks, so a link's mode is left alone (tar stores links with a fixed mode).
  if (!isLink) await chmod(file, entry.mode === "100755" ? 0o755 : 0o644);
  const got = isLink
    ? blobId(entry.oid, await readlink(file, { encoding: "buffer" }))
    : await fileBlobId(entry.oid, file);
  if (got !== entry.oid)
    throw new WorkError(`${label}: ${entry.path} does not match blob ${entry.oid} of the commit's tree`);
}

/** git's object id of a blob: sha1 (or sha256 in sha256 repositories) of `blob <size>\0<content>`. */
function blobId(like: string, content: Buffer): string {
  return hasher(like).update(`blob ${content.length}\0`).update(content).digest("hex");
}

async function fileBlobId(like: string, file: string): Promise<string> {
  const hash = hasher(like).update(`blob ${(await lstat(file)).size}\0`);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function hasher(like: string) {
  return createHash(like.length === 64 ? "sha256" : "sha1");
}
