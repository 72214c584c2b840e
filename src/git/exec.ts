/**
 * Running git through simple-git with the user's own git setup. simple-git 4 drops inherited
 * GIT_* variables (GIT_CONFIG_GLOBAL, GIT_SSH_COMMAND, GIT_ASKPASS, …) unless they are named in
 * `allowEnvironment`; for a CLI those variables are the user's configuration, so they pass. Only
 * the variables that point git at another repository are left out: inherited from a hook or a
 * `git rebase --exec`, they would make every command below act on that repository instead.
 */
import { execFile } from "node:child_process";
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

/** How a command that talks to a remote may do it. */
export interface RemoteAccess {
  /** A password from the URL, for the URL's origin only (`https://host:port`). */
  auth?: { origin: string; username: string; password: string };
  /** False for URLs the user did not write (submodules): git then refuses its `user`-only protocols. */
  fromUser?: boolean;
}

/**
 * The password reaches git through the environment and this credential helper, never through
 * argv or a config file. It answers only for the URL's own origin, so a redirect elsewhere gets
 * nothing; the user's helpers are reset first, so none of them stores the password either.
 * `printf` is a shell builtin: the password is no process's argument.
 */
const ENV_HELPER =
  '!f() { test "$1" = get || return 0; p=; h=; ' +
  'while IFS= read -r l && test -n "$l"; do case "$l" in protocol=*) p=${l#protocol=};; host=*) h=${l#host=};; esac; done; ' +
  'test "$p://$h" = "$BUNDLE_GIT_ORIGIN" || return 0; ' +
  'printf \'username=%s\\npassword=%s\\n\' "$BUNDLE_GIT_USERNAME" "$BUNDLE_GIT_PASSWORD"; }; f';

/** A simple-git bound to `dir` (a cache repository), with the user's environment passed through. */
export function gitAt(dir: string): SimpleGit {
  const allowEnvironment = Object.keys(process.env).filter((k) => !REPOSITORY_LOCATION.has(k.toUpperCase()));
  return simpleGit({ baseDir: dir, allowEnvironment });
}

/** What fetch needs of a git: SimpleGit, or remoteGit's direct runner. */
export interface GitRunner {
  raw(args: string[]): Promise<string>;
}

/**
 * git for a command that reaches `access`'s remote. With a password or for a submodule it runs
 * git itself: simple-git vets every variable of an environment it is handed (the user's
 * GIT_SSH_COMMAND included), and ours must be added to the user's.
 */
export function remoteGit(dir: string, access: RemoteAccess): GitRunner {
  if (access.auth === undefined && access.fromUser !== false) return gitAt(dir);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!REPOSITORY_LOCATION.has(k.toUpperCase())) env[k] = v;
  if (access.fromUser === false) env.GIT_PROTOCOL_FROM_USER = "0";
  const config: string[] = [];
  if (access.auth) {
    env.BUNDLE_GIT_ORIGIN = access.auth.origin;
    env.BUNDLE_GIT_USERNAME = access.auth.username;
    env.BUNDLE_GIT_PASSWORD = access.auth.password;
    config.push("-c", "credential.helper=", "-c", `credential.helper=${ENV_HELPER}`);
  }
  return { raw: (args) => runGit(dir, [...config, ...args], env) };
}

function runGit(dir: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("git", args, { cwd: dir, env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(stderr.trim() || err.message));
      else resolve(stdout);
    });
  });
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
export async function tryGit(git: GitRunner, args: string[]): Promise<string | undefined> {
  try {
    await git.raw(args);
    return undefined;
  } catch (err) {
    return gitMessage(err);
  }
}

/** `commit`, `tree`, `blob` or `tag`; undefined when the repository lacks the object. */
export async function objectType(git: GitRunner, id: string): Promise<string | undefined> {
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
