/**
 * The clone cache: one bare repository per URL under the cache folder, reused between runs, so
 * a commit fetched once is never fetched again. Layout:
 *
 *   <cacheDir>/<slug>-<hash>.git    bare repository, remote "origin" = the URL as written, less
 *                                   its password (which never reaches the disk: fetch.ts)
 *   <cacheDir>/<slug>-<hash>.lock   held while a run fetches into it (lock.ts)
 *
 * <hash> is the first 16 hex digits of sha256(URL), of that password-less URL, so two URLs never
 * share a repository and nothing on disk is derived from a password;
 * <slug> (the URL's last path segment) is only there for people looking at the folder.
 * A repository is created under a temporary name and renamed into place, so a killed run never
 * leaves a half-initialised repository under the final name.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { writeAtomic } from "../store/layout.js";
import { redactUrlPassword } from "../config/gitUrl.js";
import { InputError } from "../util/errors.js";
import { gitAt } from "./exec.js";
import { withFileLock } from "./mutex.js";

/**
 * Written to each cache repository's info/attributes, which outranks every .gitattributes:
 * archives hold the bytes as committed. No export-ignore or export-subst (whose relative dates
 * change with the day), no eol conversion (core.autocrlf differs between machines), no smudge
 * filters (git-lfs would download, or not, depending on what is installed).
 */
export const RAW_ATTRIBUTES =
  "# bundle: archives hold the committed bytes, whatever .gitattributes or core.autocrlf say\n" +
  "* -text -eol -crlf -filter -ident -working-tree-encoding -export-ignore -export-subst\n";

export function cacheName(url: string): string {
  const hash = createHash("sha256").update(url).digest("hex").slice(0, 16);
  const last =
    url
      .replace(/[/\\]+$/, "")
      .split(/[/:\\]/)
      .pop() ?? "";
  const slug =
    last
      .replace(/\.git$/, "")
      .replace(/[^A-Za-z0-9._-]+/g, "_")
      .slice(0, 40) || "repo";
  return `${slug.replace(/^\.+/, "_")}-${hash}`;
}

/** Rejects what git would read as an option, or could not be a URL at all. */
export function checkUrl(url: string): void {
  if (url === "" || url.startsWith("-") || hasControlChar(url))
    throw new InputError(`not a usable git URL: ${JSON.stringify(redactUrlPassword(url))}`);
}

export function hasControlChar(text: string): boolean {
  return [...text].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f);
}

/** Runs `fn` on the cache repository of `url`, created if needed, holding its lock. */
export async function withCacheRepo<T>(
  cacheDir: string,
  url: string,
  fn: (repoDir: string) => Promise<T>,
): Promise<T> {
  checkUrl(url);
  await mkdir(cacheDir, { recursive: true });
  const name = cacheName(url);
  const repoDir = path.join(cacheDir, `${name}.git`);
  return withFileLock(path.join(cacheDir, `${name}.lock`), async () => {
    await openRepo(cacheDir, repoDir, url);
    return fn(repoDir);
  });
}

async function openRepo(cacheDir: string, repoDir: string, url: string): Promise<void> {
  if (!(await isDir(repoDir))) {
    await removeLeftovers(cacheDir, path.basename(repoDir));
    await createRepo(repoDir, url);
    return;
  }
  // Only a hash collision or a hand edit could make it differ; fetching elsewhere would be worse.
  const git = gitAt(repoDir);
  const configured = (await git.raw(["config", "--get", "remote.origin.url"]).catch(() => "")).trim();
  if (configured !== url) await git.raw(["remote", "set-url", "origin", url]);
  await ensureRawAttributes(repoDir);
}

/** Caches made by an older version may lack the file; archives read it, hence the atomic write. */
export async function ensureRawAttributes(repoDir: string): Promise<void> {
  const file = path.join(repoDir, "info", "attributes");
  if ((await readFile(file, "utf8").catch(() => "")) === RAW_ATTRIBUTES) return;
  await mkdir(path.dirname(file), { recursive: true });
  await writeAtomic(file, RAW_ATTRIBUTES);
}

async function createRepo(repoDir: string, url: string): Promise<void> {
  const tmp = `${repoDir}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await mkdir(tmp);
    const git = gitAt(tmp);
    await git.init(true);
    await git.addRemote("origin", url);
    await ensureRawAttributes(tmp);
    await rename(tmp, repoDir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Temporary repositories of killed runs; safe to remove while we hold the lock. */
async function removeLeftovers(cacheDir: string, base: string): Promise<void> {
  for (const entry of await readdir(cacheDir)) {
    if (entry.startsWith(`${base}.tmp-`))
      await rm(path.join(cacheDir, entry), { recursive: true, force: true });
  }
}

async function isDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isDirectory() ?? false;
}
