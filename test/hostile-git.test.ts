/**
 * Hostile git input through the CLI (issue 11): submodules pointing at the preparing machine's
 * own repositories or at git's command-running `ext::` transport, and a password in a git URL,
 * which must reach the server and nothing else: not the bundle, the clone cache, the output,
 * `inspect`, or git's arguments.
 */
import test, { type ExecutionContext } from "ava";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { runCli, tempFiles, type CliResult } from "./helpers/cli.js";
import { git, makeGitRepo, type TestGitRepo } from "./helpers/git.js";
import { startGitDaemon } from "./helpers/gitDaemon.js";
import { startGitHttp } from "./helpers/gitHttp.js";
import { extractAndSnapshot, sha256, snapshot, tempDir } from "./helpers/gitBundle.js";
import type { Lock } from "../src/bundle/lock.js";

async function repo(t: ExecutionContext, files: Record<string, string> = {}): Promise<TestGitRepo> {
  const made = await makeGitRepo(
    Object.keys(files).length ? { commits: [{ message: "only", files }], tags: [] } : { tags: [] },
  );
  t.teardown(made.cleanup);
  return made;
}

/** A commit on `top` whose .gitmodules says `url` for `vendor/x`, a gitlink to `linkTo`. */
async function addSubmodule(top: TestGitRepo, url: string, linkTo: string): Promise<string> {
  await writeFile(path.join(top.dir, ".gitmodules"), `[submodule "x"]\n\tpath = vendor/x\n\turl = ${url}\n`);
  await git(top.dir, ["add", ".gitmodules"]);
  await git(top.dir, ["update-index", "--add", "--cacheinfo", `160000,${linkTo},vendor/x`]);
  const date = "1704200000 +0000";
  await git(top.dir, ["commit", "-q", "-m", "submodule"], {
    GIT_AUTHOR_DATE: date,
    GIT_COMMITTER_DATE: date,
  });
  return git(top.dir, ["rev-parse", "HEAD"]);
}

/** Every file under `dir` that holds any of `needles` (bytes as written). */
async function filesHolding(dir: string, needles: string[]): Promise<string[]> {
  const hits: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const bytes = await readFile(file);
    if (needles.some((n) => bytes.includes(n))) hits.push(path.relative(dir, file));
  }
  return hits;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

async function definition(t: ExecutionContext, lines: string[]): Promise<string> {
  const { dir, cleanup } = await tempFiles({
    "bundle.yml": ["name: hostile", "git:", ...lines, ""].join("\n"),
  });
  t.teardown(cleanup);
  return dir;
}

function prepare(dir: string, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCli(["prepare", "-o", path.join(dir, "out")], {
    cwd: dir,
    env: { BUNDLE_CACHE_DIR: path.join(dir, "cache"), ...env },
  });
}

/** A git daemon serving an empty folder, and a local repository whose one file nobody may read. */
async function daemonAndCanary(t: ExecutionContext) {
  const served = await tempDir(t, "bundle-gitserved-");
  const daemon = await startGitDaemon(served);
  t.teardown(() => daemon.stop());
  const canaryText = `CANARY-${randomBytes(8).toString("hex")}`;
  const canary = await repo(t, { "secret.txt": `${canaryText}\n` });
  return { served, daemon, canary, canaryText };
}

test("a submodule on the preparing machine (file://) or through ext:: is refused: exit 2, nothing read", async (t) => {
  const { served, daemon, canary, canaryText } = await daemonAndCanary(t);
  const canaryBefore = await snapshot(canary.dir);
  const marker = path.join(await tempDir(t), "ext-ran");
  const cases = [
    { url: canary.url, why: "a local repository is fetched only for a top repository that is local too" },
    { url: canary.dir, why: "a local repository is fetched only for a top repository that is local too" },
    { url: `ext::sh -c touch% ${marker}`, why: "ext:: runs a command; git never allows it for submodules" },
    { url: "../../../../../../tmp/x", why: "climbs above its parent's host" },
  ];
  for (const [i, c] of cases.entries()) {
    const top = await repo(t);
    const commit = await addSubmodule(top, c.url, canary.commits[0]!);
    await git(served, ["clone", "-q", "--bare", top.dir, `top${i}.git`]);
    const url = daemon.urlOf(path.join(served, `top${i}.git`));
    const dir = await definition(t, [`  - url: ${url}`, `    commit: ${commit}`, "    submodules: true"]);
    const res = await prepare(dir);
    t.is(res.code, 2, `${c.url}: ${res.stderr}`);
    t.regex(res.stderr, /^error: /m);
    t.true(res.stderr.includes(`${url} at ${commit}: submodule vendor/x: url ${c.url}`), res.stderr);
    t.true(res.stderr.includes(c.why), res.stderr);
    t.false(res.stderr.includes("    at "), "no stack trace");
    t.false(await exists(path.join(dir, "out", "files", `top${i}.tar.gz`)));
    t.deepEqual(await filesHolding(dir, [canaryText]), [], "the canary's bytes were read nowhere");
    const cached = (await readdir(path.join(dir, "cache", "git"))).filter((e) => e.endsWith(".git"));
    t.is(cached.length, 1);
    const absent = await git(path.join(dir, "cache", "git", cached[0]!), [
      "cat-file",
      "-t",
      canary.commits[0]!,
    ]).then(
      () => false,
      () => true,
    );
    t.true(absent, "the canary's commit is not in the clone cache");
  }
  t.false(await exists(marker), "ext:: ran nothing");
  t.deepEqual(await snapshot(canary.dir), canaryBefore);
});

test("a submodule on the top repository's own server is still fetched (relative URL over git://)", async (t) => {
  const served = await tempDir(t, "bundle-gitserved-");
  const daemon = await startGitDaemon(served);
  t.teardown(() => daemon.stop());
  const sub = await repo(t, { "sub.txt": "from the submodule\n" });
  await git(served, ["clone", "-q", "--bare", sub.dir, "sub.git"]);
  const top = await repo(t);
  const commit = await addSubmodule(top, "../sub.git", sub.commits[0]!);
  await git(served, ["clone", "-q", "--bare", top.dir, "top.git"]);
  const url = daemon.urlOf(path.join(served, "top.git"));
  const dir = await definition(t, [`  - url: ${url}`, `    commit: ${commit}`, "    submodules: true"]);
  const res = await prepare(dir);
  t.is(res.code, 0, res.stderr);
  const list = await runCli(["inspect", path.join(dir, "out"), "--json"]);
  t.is(list.code, 0, list.stderr);
  const archive = await readFile(path.join(dir, "out", "files", "top.tar.gz"));
  const lock = JSON.parse(await readFile(path.join(dir, "out", "bundle.lock.json"), "utf8")) as Lock;
  t.is(lock.git[0]?.sha256, sha256(archive));
  const x = await tempDir(t);
  const files = await extractAndSnapshot(path.join(dir, "out", "files", "top.tar.gz"), path.join(x, "e"));
  t.is(files["top/vendor/x/sub.txt"], `file - ${sha256("from the submodule\n")}`);
});

test("a password in a git URL reaches the server only: not the bundle, cache, output, inspect or git's argv", async (t) => {
  const password = `pa:ss@w0rd-${randomBytes(8).toString("hex")}`;
  const encoded = encodeURIComponent(password);
  const served = await tempDir(t, "bundle-gitserved-");
  const server = await startGitHttp(served, { username: "alice", password });
  t.teardown(() => server.stop());
  const source = await repo(t, { "app.txt": "private app\n" });
  await git(served, ["clone", "-q", "--bare", source.dir, "app.git"]);
  const clean = `${server.base.replace("http://", "http://alice@")}/app.git`;
  const withPassword = clean.replace("alice@", `alice:${encoded}@`);

  // Every git command bundle runs goes through this wrapper, which logs its arguments.
  const bin = await tempDir(t, "bundle-gitwrap-");
  const argvLog = path.join(bin, "argv.log");
  const realGit = execFileSync("sh", ["-c", "command -v git"]).toString().trim();
  await writeFile(
    path.join(bin, "git"),
    `#!/bin/sh\nprintf '%s\\n' "$*" >> "${argvLog}"\nexec ${realGit} "$@"\n`,
  );
  await chmod(path.join(bin, "git"), 0o755);
  const env = { PATH: `${bin}:${process.env.PATH ?? ""}` };
  const secrets = [password, encoded];

  const dir = await definition(t, [`  - url: ${withPassword}`, `    commit: ${source.commits[0]!}`]);
  const res = await prepare(dir, env);
  t.is(res.code, 0, res.stderr);
  t.true(server.counts.allowed > 0, "the server saw the password");
  const lock = JSON.parse(await readFile(path.join(dir, "out", "bundle.lock.json"), "utf8")) as Lock;
  t.is(lock.git[0]?.url, clean);
  t.is(lock.git[0]?.sha256, sha256(await readFile(path.join(dir, "out", "files", "app.tar.gz"))));
  t.true(
    res.stdout.includes(clean) || res.stderr.includes(clean),
    "progress names the URL without its password",
  );

  const list = await runCli(["inspect", path.join(dir, "out")], { env });
  t.is(list.code, 0, list.stderr);
  t.true(list.stdout.includes(clean), list.stdout);
  const lint = await runCli(["lint", "-f", path.join(dir, "bundle.yml")], { env });
  t.is(lint.code, 0, lint.stderr);

  const log = await readFile(argvLog, "utf8");
  t.regex(log, /fetch/, "the wrapper saw git's fetch");
  const cached = (await readdir(path.join(dir, "cache", "git"))).find((e) => e.endsWith(".git"))!;
  t.is(await git(path.join(dir, "cache", "git", cached), ["config", "remote.origin.url"]), clean);
  for (const [what, text] of Object.entries({
    stdout: res.stdout + list.stdout + lint.stdout,
    stderr: res.stderr + list.stderr + lint.stderr,
    argv: log,
    "cache name": cached,
  }))
    t.false(
      secrets.some((s) => text.includes(s)),
      `${what} holds the password`,
    );
  t.deepEqual(await filesHolding(path.join(dir, "out"), secrets), []);
  t.deepEqual(await filesHolding(path.join(dir, "cache"), secrets), []);

  // A wrong password: exit 1 naming the URL, and still nowhere.
  const wrong = `wrong-${randomBytes(8).toString("hex")}`;
  const bad = await definition(t, [
    `  - url: ${clean.replace("alice@", `alice:${wrong}@`)}`,
    `    commit: ${source.commits[0]!}`,
  ]);
  const refused = await prepare(bad, env);
  t.is(refused.code, 1, refused.stderr);
  t.true(refused.stderr.includes(clean), refused.stderr);
  t.false((refused.stdout + refused.stderr + (await readFile(argvLog, "utf8"))).includes(wrong));
  t.deepEqual(await filesHolding(bad, [wrong]).then((h) => h.filter((f) => f !== "bundle.yml")), []);
});

test("a password the URL's transport never uses, and a definition error quoting a URL, print no password", async (t) => {
  const secret = `s3cret-${randomBytes(6).toString("hex")}`;
  const ssh = await definition(t, [
    `  - url: ssh://bob:${secret}@127.0.0.1/x.git`,
    `    commit: ${"a".repeat(40)}`,
  ]);
  const res = await runCli(["prepare", "-o", path.join(ssh, "out")], { cwd: ssh });
  t.is(res.code, 2, res.stderr);
  t.true(
    res.stderr.includes("ssh://bob@127.0.0.1/x.git: a password in a ssh:// URL is never used by git"),
    res.stderr,
  );
  t.false((res.stdout + res.stderr).includes(secret));
  const { dir, cleanup } = await tempFiles({
    "deployment.yml": `prepare:\n  - git: https://bob:${secret}@127.0.0.1/x.git:notacommit\n`,
  });
  t.teardown(cleanup);
  await mkdir(path.join(dir, "out"));
  const telego = await runCli(["lint", "-f", path.join(dir, "deployment.yml")]);
  t.is(telego.code, 2, telego.stderr);
  t.true(telego.stderr.includes("https://bob@127.0.0.1/x.git:notacommit"), telego.stderr);
  t.false((telego.stdout + telego.stderr).includes(secret));
});

test("a URL's password goes to its own server only: a submodule there gets it, one on another server not", async (t) => {
  const password = `pw-${randomBytes(8).toString("hex")}`;
  const auth = { username: "alice", password };
  const [rootA, rootB] = [await tempDir(t, "bundle-gitserved-"), await tempDir(t, "bundle-gitserved-")];
  const [a, b] = [await startGitHttp(rootA, auth), await startGitHttp(rootB, auth)];
  t.teardown(() => a.stop());
  t.teardown(() => b.stop());
  const lib = await repo(t, { "lib.txt": "the library\n" });
  for (const root of [rootA, rootB]) await git(root, ["clone", "-q", "--bare", lib.dir, "lib.git"]);
  const onA = (name: string) => `${a.base.replace("http://", `http://alice:${password}@`)}/${name}`;
  const elsewhere = `${b.base.replace("http://", "http://alice@")}/lib.git`;

  const cases = [
    { name: "same", url: "../lib.git" },
    { name: "other", url: elsewhere },
  ];
  const results: Record<string, { res: CliResult; dir: string; commit: string }> = {};
  for (const c of cases) {
    const top = await repo(t);
    const commit = await addSubmodule(top, c.url, lib.commits[0]!);
    await git(rootA, ["clone", "-q", "--bare", top.dir, `${c.name}.git`]);
    const dir = await definition(t, [
      `  - url: ${onA(`${c.name}.git`)}`,
      `    commit: ${commit}`,
      "    submodules: true",
    ]);
    results[c.name] = { res: await prepare(dir), dir, commit };
  }

  const same = results.same!;
  t.is(same.res.code, 0, same.res.stderr);
  const x = await tempDir(t);
  const files = await extractAndSnapshot(
    path.join(same.dir, "out", "files", "same.tar.gz"),
    path.join(x, "e"),
  );
  t.is(files["same/vendor/x/lib.txt"], `file - ${sha256("the library\n")}`);

  const other = results.other!;
  t.is(other.res.code, 1, other.res.stderr);
  t.true(other.res.stderr.includes(`error: cannot fetch from ${elsewhere}`), other.res.stderr);
  t.true(b.counts.refused > 0, "the other server was asked");
  t.is(b.counts.allowed, 0, "and never got the password");
  for (const r of [same, other]) {
    t.false((r.res.stdout + r.res.stderr).includes(password));
    t.deepEqual(await filesHolding(path.join(r.dir, "cache"), [password]), []);
  }
});

test("an insteadOf turning a submodule's https URL into file:// is refused by git itself, as under git submodule", async (t) => {
  const { served, daemon, canary, canaryText } = await daemonAndCanary(t);
  const top = await repo(t);
  const fake = "https://git.example.invalid/";
  const commit = await addSubmodule(top, `${fake}${path.basename(canary.dir)}`, canary.commits[0]!);
  await git(served, ["clone", "-q", "--bare", top.dir, "top.git"]);
  const url = daemon.urlOf(path.join(served, "top.git"));
  const dir = await definition(t, [`  - url: ${url}`, `    commit: ${commit}`, "    submodules: true"]);
  const config = path.join(dir, "user.gitconfig");
  await writeFile(config, `[url "${path.dirname(canary.url)}/"]\n\tinsteadOf = ${fake}\n`);
  const res = await prepare(dir, { GIT_CONFIG_GLOBAL: config, GIT_CONFIG_NOSYSTEM: "1" });
  t.is(res.code, 1, res.stderr);
  t.true(res.stderr.includes(`error: cannot fetch from ${fake}${path.basename(canary.dir)}`), res.stderr);
  t.regex(res.stderr, /transport 'file' not allowed/);
  t.deepEqual(await filesHolding(dir, [canaryText]), []);
});
