/**
 * Running git through simple-git with the user's own git setup. simple-git 4 drops inherited
 * GIT_* variables (GIT_CONFIG_GLOBAL, GIT_SSH_COMMAND, GIT_ASKPASS, …) unless they are named in
 * `allowEnvironment`; for a CLI those variables are the user's configuration, so they pass. Only
 * the variables that point git at another repository are left out: inherited from a hook or a
 * `git rebase --exec`, they would make every command below act on that repository instead.
 */
import { simpleGit, type SimpleGit } from "simple-git";
import { WorkError } from "../util/errors.js";

const REPOSITORY_LOCATION = new Set([
  "GIT_DIR",
  "GIT_WORK_TREE",
  "GIT_INDEX_FILE",
  "GIT_OBJECT_DIRECTORY",
  "GIT_ALTERNATE_OBJECT_DIRECTORIES",
  "GIT_COMMON_DIR",
  "GIT_NAMESPACE",
  "GIT_PREFIX",
  "GIT_QUARANTINE_PATH",
]);

/** A simple-git bound to `dir` (a cache repository), with the user's environment passed through. */
export function gitAt(dir: string): SimpleGit {
  const allowEnvironment = Object.keys(process.env).filter((k) => !REPOSITORY_LOCATION.has(k.toUpperCase()));
  return simpleGit({ baseDir: dir, allowEnvironment });
}

/** git's own words for a failure, without simple-git's wrapping: the lines that say what went wrong. */
export function gitMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("hint:"));
  return lines.join("; ") || "git failed";
}

/** Runs a git command; undefined on success, git's message on failure (for callers that fall back). */
export async function tryGit(git: SimpleGit, args: string[]): Promise<string | undefined> {
  try {
    await git.raw(args);
    return undefined;
  } catch (err) {
    return gitMessage(err);
  }
}

/** `commit`, `tree`, `blob` or `tag`; undefined when the repository lacks the object. */
export async function objectType(git: SimpleGit, id: string): Promise<string | undefined> {
  try {
    return (await git.raw(["cat-file", "-t", id])).trim();
  } catch {
    return undefined;
  }
}

/** Archives and charts are made from commits fetchCommit brought into the cache. */
export async function requireCommit(repoDir: string, commit: string, label: string): Promise<void> {
  if ((await objectType(gitAt(repoDir), commit)) !== "commit")
    throw new WorkError(`${label}: no such commit in the clone cache ${repoDir} (run fetchCommit first)`);
}

/** "URL at COMMIT" for messages; the URL is the cache repository's origin. */
export async function describeCommit(repoDir: string, commit: string): Promise<string> {
  const url = await gitAt(repoDir)
    .raw(["config", "--get", "remote.origin.url"])
    .then(
      (u) => u.trim(),
      () => "",
    );
  return `${url || repoDir} at ${commit}`;
}
