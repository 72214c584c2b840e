/**
 * One definition item's commit, and its submodules' when asked, made available in the clone
 * cache: the remote operations are in fetch.ts and submodules.ts, both below this module.
 */
import { splitGitUrl } from "../config/gitUrl.js";
import type { GitItem } from "../config/model.js";
import { withCacheRepo } from "./cache.js";
import {
  checkCommitId,
  ensureCommit,
  originRemote,
  resolveRef,
  urlAccess,
  type FetchSource,
} from "./fetch.js";
import { fetchSubmodules } from "./submodules.js";

export interface FetchOptions {
  /** Where the clone cache lives; reused between runs and safe to share between concurrent runs. */
  cacheDir: string;
}

export interface FetchResult {
  /** The cache's bare repository: pass it to writeArchive and copyChart. */
  repoDir: string;
  /** The full 40-hex commit id (for a ref, what it named when resolved). */
  commit: string;
  source: FetchSource;
}

/**
 * Makes the item's commit (and its submodules' commits, when asked) available in the clone
 * cache under `opts.cacheDir`; a ref is resolved with one `ls-remote` and its commit returned.
 */
export async function fetchCommit(item: GitItem, opts: FetchOptions): Promise<FetchResult> {
  // The definition's parser took the password out already; an item made in code may still hold one.
  const split = splitGitUrl(item.url);
  const origin = originRemote(
    split.url,
    urlAccess(split.url, split.username, split.password ?? item.password),
  );
  return withCacheRepo(opts.cacheDir, origin.url, async (repoDir) => {
    const rev = item.revision;
    const commit =
      rev.kind === "commit"
        ? checkCommitId(rev.commit, origin.url)
        : await resolveRef(repoDir, origin, rev.ref);
    const source = await ensureCommit(repoDir, origin, commit);
    if (item.submodules) await fetchSubmodules(repoDir, origin, commit);
    return { repoDir, commit, source };
  });
}
