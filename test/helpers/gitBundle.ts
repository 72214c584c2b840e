/**
 * Shared pieces of the git item tests (test/git*.test.ts): items, temporary folders, extra
 * commits with symlinks, and reading archives back.
 */
import type { ExecutionContext } from "ava";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { t as listTar, type ReadEntry } from "tar";
import type { GitItem, GitRevision } from "../../src/config/model.js";
import { git, makeGitRepo, type MakeGitRepoOptions, type TestGitRepo } from "./git.js";

export const execFileAsync = promisify(execFile);

export function gitItem(url: string, revision: GitRevision, extra: Partial<GitItem> = {}): GitItem {
  return {
    url,
    revision,
    archive: "repo.tar.gz",
    submodules: false,
    at: { file: "bundle.yml", line: 1, col: 1 },
    ...extra,
  };
}

export const pinned = (url: string, commit: string, extra: Partial<GitItem> = {}): GitItem =>
  gitItem(url, { kind: "commit", commit }, extra);

export const byRef = (url: string, ref: string): GitItem => gitItem(url, { kind: "ref", ref });

export async function tempDir(t: ExecutionContext, prefix = "bundle-gittest-"): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function testRepo(t: ExecutionContext, opts?: MakeGitRepoOptions): Promise<TestGitRepo> {
  const repo = await makeGitRepo(opts);
  t.teardown(() => repo.cleanup());
  return repo;
}

export interface ExtraCommit {
  files?: Record<string, string | { content: string; executable: boolean }>;
  symlinks?: Record<string, string>;
  /** Seconds since the epoch, for committer and author date. */
  epoch: number;
  message?: string;
}

/** One more commit on the repository's branch (makeGitRepo has no symlinks); returns its sha. */
export async function addCommit(dir: string, spec: ExtraCommit): Promise<string> {
  for (const [file, value] of Object.entries(spec.files ?? {})) {
    const { content, executable } = typeof value === "string" ? { content: value, executable: false } : value;
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await writeFile(path.join(dir, file), content);
    await chmod(path.join(dir, file), executable ? 0o755 : 0o644);
  }
  for (const [link, target] of Object.entries(spec.symlinks ?? {})) {
    await mkdir(path.dirname(path.join(dir, link)), { recursive: true });
    await symlink(target, path.join(dir, link));
  }
  await git(dir, ["add", "-A"]);
  const date = `${spec.epoch} +0000`;
  await git(dir, ["commit", "-q", "-m", spec.message ?? "extra"], {
    GIT_AUTHOR_DATE: date,
    GIT_COMMITTER_DATE: date,
  });
  return git(dir, ["rev-parse", "HEAD"]);
}

export interface TarHeader {
  path: string;
  type: string;
  mode: number;
  uid: number | undefined;
  gid: number | undefined;
  uname: string | undefined;
  gname: string | undefined;
  mtime: number | undefined;
  linkpath: string | undefined;
}

/** Every entry's header, in archive order (node-tar reads .tar and .tar.gz alike). */
export async function tarHeaders(file: string): Promise<TarHeader[]> {
  const headers: TarHeader[] = [];
  await listTar({
    file,
    onReadEntry: (e: ReadEntry) => {
      headers.push({
        path: e.path,
        type: e.type,
        mode: e.mode ?? -1,
        uid: e.uid,
        gid: e.gid,
        uname: e.uname,
        gname: e.gname,
        mtime: e.mtime ? e.mtime.getTime() / 1000 : undefined,
        linkpath: e.linkpath,
      });
    },
  });
  return headers;
}

export type TreeSnapshot = Record<string, string>;

/**
 * What a folder holds, as path → "dir" | "file <x|-> <sha256>" | "link <target>": extracted by
 * the system tar, so this is what a user of the archive gets.
 */
export async function extractAndSnapshot(archive: string, into: string): Promise<TreeSnapshot> {
  await mkdir(into, { recursive: true });
  await execFileAsync("tar", ["-xf", archive, "-C", into]);
  return snapshot(into);
}

export async function snapshot(root: string): Promise<TreeSnapshot> {
  const out: TreeSnapshot = {};
  for (const rel of (await walk(root)).sort()) {
    const file = path.join(root, rel);
    const info = await lstat(file);
    if (info.isSymbolicLink()) out[rel] = `link ${await readlink(file)}`;
    else if (info.isDirectory()) out[rel] = "dir";
    else out[rel] = `file ${info.mode & 0o100 ? "x" : "-"} ${sha256(await readFile(file))}`;
  }
  return out;
}

export function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Paths under `root`, not following symlinks (readdir's recursive mode does follow them). */
async function walk(root: string, rel = ""): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(path.join(root, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${entry.name}` : entry.name;
    found.push(p, ...(entry.isDirectory() ? await walk(root, p) : []));
  }
  return found;
}

export interface ChildArchiveOptions {
  url: string;
  commit: string;
  cacheDir: string;
  out: string;
  prefix: string;
  umask?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * fetchCommit + writeArchive in a separate node process (its own umask and environment), as
 * another machine would run them; returns writeArchive's result.
 */
export async function archiveInChild(o: ChildArchiveOptions): Promise<{ sha256: string; size: number }> {
  const moduleUrl = new URL("../../src/git/index.js", import.meta.url).href;
  const script = `
    if (${o.umask ?? -1} >= 0) process.umask(${o.umask ?? 0});
    const { fetchCommit, writeArchive } = await import(${JSON.stringify(moduleUrl)});
    const [url, commit, cacheDir, out, prefix] = process.argv.slice(1);
    const item = { url, revision: { kind: "commit", commit }, archive: "x", submodules: false, at: {} };
    const { repoDir } = await fetchCommit(item, { cacheDir });
    console.log(JSON.stringify(await writeArchive(repoDir, commit, out, { prefix })));`;
  const args = ["--input-type=module", "-e", script, o.url, o.commit, o.cacheDir, o.out, o.prefix];
  const { stdout } = await execFileAsync("node", args, { env: o.env ?? process.env });
  return JSON.parse(stdout) as { sha256: string; size: number };
}
