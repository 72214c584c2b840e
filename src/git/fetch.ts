/**
 * Getting one commit into the clone cache with as little transfer as the server allows.
 *
 * A pinned commit already in the cache costs no network I/O at all. Otherwise we ask for
 * exactly that commit, shallow (`git fetch --depth 1 origin <sha>`); servers speaking protocol
 * v2 (GitHub, GitLab, git ≥ 2.18 over any transport) allow it. A server that refuses objects it
 * did not advertise (protocol v0 without uploadpack.allowReachableSHA1InWant) gets a full fetch
 * of its branches and tags instead, which finds the commit if any of them contains it.
 *
 * Every commit we fetched is kept by a ref `refs/bundle/pins/<sha>`: fetched by id it is
 * reachable from nothing else, and git's gc would eventually prune it.
 */
import { gitOrigin } from "../config/gitUrl.js";
import { InputError, WorkError } from "../util/errors.js";
import { hasControlChar } from "./cache.js";
import {
  gitAt,
  gitMessage,
  objectType,
  remoteGit,
  tryGit,
  type GitRunner,
  type RemoteAccess,
} from "./exec.js";

/** How the commit got into the cache this time: already there, a shallow fetch, or a full fetch. */
export type FetchSource = "cache" | "shallow" | "full";

/** Where `git fetch` gets a commit from, and where a full fetch puts that remote's refs. */
export interface Remote {
  /** Given to `git fetch`: "origin", or a submodule's URL. */
  name: string;
  /** For messages: the URL as the definition (or .gitmodules) wrote it, less its password. */
  url: string;
  fullRefspecs: string[];
  access: RemoteAccess;
}

const COMMIT_ID = /^[0-9a-f]{40}$/;

export function pinRef(commit: string): string {
  return `refs/bundle/pins/${commit}`;
}

/** A password goes to the URL's own origin only; the cache's config holds the URL without it. */
export function urlAccess(url: string, username: string, password: string | undefined): RemoteAccess {
  return password === undefined ? {} : { auth: { origin: gitOrigin(url), username, password } };
}

export function originRemote(url: string, access: RemoteAccess = {}): Remote {
  return {
    name: "origin",
    url,
    fullRefspecs: ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"],
    access,
  };
}

export function checkCommitId(commit: string, url: string): string {
  if (!COMMIT_ID.test(commit))
    throw new InputError(`${url}: "${commit}" is not a full commit id (40 lowercase hex digits)`);
  return commit;
}

/** The commit `ref` names on the remote now: a tag (annotated ones peeled), a branch, or a full ref name. */
export async function resolveRef(repoDir: string, remote: Remote, ref: string): Promise<string> {
  const url = remote.url;
  checkRefName(ref, url);
  let listing: string;
  try {
    // Patterns match name tails; an annotated tag's peeled line is named `<tag>^{}`.
    listing = await remoteGit(repoDir, remote.access).raw(["ls-remote", remote.name, ref, `${ref}^{}`]);
  } catch (err) {
    throw new WorkError(`cannot list the refs of ${url}: ${gitMessage(err)}`);
  }
  const refs = parseLsRemote(listing);
  // git's own order for a short name: the ref as written, then tags, then branches.
  const name = [ref, `refs/tags/${ref}`, `refs/heads/${ref}`].find((n) => refs.has(n));
  if (name === undefined) throw new InputError(`${url} has no branch or tag named "${ref}"`);
  return refs.get(`${name}^{}`) ?? refs.get(name)!;
}

function parseLsRemote(text: string): Map<string, string> {
  const refs = new Map<string, string>();
  for (const line of text.split("\n")) {
    const [sha, name] = line.split("\t");
    if (sha && name && COMMIT_ID.test(sha)) refs.set(name, sha);
  }
  return refs;
}

/** Rejects what git would read as an option or never accept as a ref (see git-check-ref-format). */
function checkRefName(ref: string, url: string): void {
  const bad = ref === "" || ref.startsWith("-") || ref.endsWith("/") || ref.endsWith(".lock");
  if (bad || ref.includes("..") || hasControlChar(ref) || /[ ~^:?*[\\]/.test(ref) || ref.includes("@{"))
    throw new InputError(`${url}: "${ref}" is not a valid branch or tag name`);
}

/** Fetches `commit` from `remote` unless the cache has it; returns how it got here. */
export async function ensureCommit(repoDir: string, remote: Remote, commit: string): Promise<FetchSource> {
  const git = gitAt(repoDir);
  if (await isCommit(git, remote, commit)) return pinned(git, commit, "cache");
  const shallow = await tryGit(remoteGit(repoDir, remote.access), [
    "fetch",
    "--no-tags",
    "--depth",
    "1",
    remote.name,
    `${commit}:${pinRef(commit)}`,
  ]);
  if (shallow === undefined && (await isCommit(git, remote, commit))) return pinned(git, commit, "shallow");
  if (shallow !== undefined && looksUnreachable(shallow))
    throw new WorkError(`cannot fetch from ${remote.url}: ${shallow}`);
  await fullFetch(repoDir, remote);
  if (await isCommit(git, remote, commit)) return pinned(git, commit, "full");
  throw new InputError(
    `commit ${commit} is not in ${remote.url}: no branch or tag contains it` +
      (shallow ? ` (and fetching it by id failed: ${shallow})` : ""),
  );
}

async function fullFetch(repoDir: string, remote: Remote): Promise<void> {
  // A shallow cache would stop the history at its shallow commits: an older commit stays unseen.
  const shallow = (await gitAt(repoDir).raw(["rev-parse", "--is-shallow-repository"])).trim() === "true";
  const args = [
    "fetch",
    "--no-tags",
    ...(shallow ? ["--unshallow"] : []),
    remote.name,
    ...remote.fullRefspecs,
  ];
  const failed = await tryGit(remoteGit(repoDir, remote.access), args);
  if (failed !== undefined) throw new WorkError(`cannot fetch from ${remote.url}: ${failed}`);
}

async function pinned(git: GitRunner, commit: string, source: FetchSource): Promise<FetchSource> {
  await git.raw(["update-ref", pinRef(commit), commit]);
  return source;
}

/** True for a commit object in the cache; an id naming a tree or blob is the definition's mistake. */
async function isCommit(git: GitRunner, remote: Remote, id: string): Promise<boolean> {
  const type = await objectType(git, id);
  if (type === undefined) return false;
  if (type !== "commit") throw new InputError(`${id} in ${remote.url} is a ${type}, not a commit`);
  return true;
}

/** Failures where a second, full fetch from the same place cannot go better. */
function looksUnreachable(message: string): boolean {
  return /could not read from remote|does not appear to be a git repository|unable to access|unable to connect|could not resolve host|connection (refused|timed out|reset)|authentication failed|permission denied|repository .* not found/i.test(
    message,
  );
}
