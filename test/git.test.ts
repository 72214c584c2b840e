import test, { type ExecutionContext } from "ava";
import { access, mkdir, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import { archivePrefix, copyChart, fetchCommit, writeArchive } from "../src/git/index.js";
import { cacheName } from "../src/git/cache.js";
import { sortPaths } from "../src/git/tarball.js";
import { InputError, WorkError } from "../src/util/errors.js";
import { git, type TestGitRepo } from "./helpers/git.js";
import { useGitHome } from "./helpers/gitConfig.js";
import { startGitDaemon } from "./helpers/gitDaemon.js";
import { freePort } from "./helpers/ports.js";
import {
  addCommit,
  archiveInChild,
  byRef,
  execFileAsync,
  extractAndSnapshot,
  pinned,
  sha256,
  snapshot,
  tarHeaders,
  tempDir,
  testRepo,
} from "./helpers/gitBundle.js";

// Nothing of the developer's git configuration (insteadOf, protocol.version, …) may leak in.
const gitHome = await useGitHome("");
test.after.always(() => gitHome.cleanup());

const BASE_EPOCH = 1_704_067_200; // makeGitRepo's first commit
const EXTRA_EPOCH = BASE_EPOCH + 4 * 3600;

/** makeGitRepo's repository with a chart, plus a commit with symlinks, odd names and a long path. */
async function richRepo(t: ExecutionContext): Promise<{ repo: TestGitRepo; head: string }> {
  const repo = await testRepo(t, { chart: "demo" });
  const longDir = `deep/${"a-rather-long-folder-name/".repeat(5)}`;
  const head = await addCommit(repo.dir, {
    epoch: EXTRA_EPOCH,
    files: {
      "src-b.txt": "sorts after src/ in path order, before it in git's\n",
      "with space/données.txt": "unicode and a space\n",
      [`${longDir}file-beyond-one-hundred-characters.txt`]: "needs the ustar prefix or a pax header\n",
      "helm/demo/scripts/init.sh": { content: "#!/bin/sh\necho init\n", executable: true },
    },
    symlinks: {
      "link-to-readme": "README.md",
      "src/nested/up": "../../config",
      // Targets a careless extractor would rewrite: absolute, and out of the tree.
      "absolute-link": "/etc/hosts",
      "escaping-link": "../outside",
    },
  });
  return { repo, head };
}

async function fetched(t: ExecutionContext, url: string, commit: string) {
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  return { cacheDir, ...(await fetchCommit(pinned(url, commit), { cacheDir })) };
}

test("the archive holds exactly what git archive --prefix gives for the commit", async (t) => {
  const { repo, head } = await richRepo(t);
  const { repoDir, commit, source } = await fetched(t, repo.url, head);
  t.is(commit, head);
  t.is(source, "shallow");
  const work = await tempDir(t);
  const ours = path.join(work, "testbed.tar.gz");
  const result = await writeArchive(repoDir, commit, ours, { prefix: "testbed" });

  const theirs = path.join(work, "reference.tar");
  await git(repo.dir, ["archive", "--format=tar", "--prefix=testbed/", "-o", theirs, head]);
  const got = await extractAndSnapshot(ours, path.join(work, "ours"));
  const want = await extractAndSnapshot(theirs, path.join(work, "theirs"));
  t.deepEqual(got, want);
  t.is(got["testbed/link-to-readme"], "link README.md");
  t.is(got["testbed/absolute-link"], "link /etc/hosts");
  t.is(got["testbed/escaping-link"], "link ../outside");
  t.is(got["testbed/bin/run.sh"]?.slice(0, 6), "file x");
  t.is(got["testbed/README.md"]?.slice(0, 6), "file -");

  const names = (h: { path: string }[]) => h.map((e) => e.path.replace(/\/$/, "")).sort();
  t.deepEqual(names(await tarHeaders(ours)), names(await tarHeaders(theirs)));
  const bytes = await readFile(ours);
  t.deepEqual(result, { size: bytes.length, sha256: sha256(bytes) });
});

test("archive headers: path order, one prefix, git's modes, the commit date, no owner, fixed gzip header", async (t) => {
  const { repo, head } = await richRepo(t);
  const { repoDir } = await fetched(t, repo.url, head);
  const out = path.join(await tempDir(t), "x.tar.gz");
  await writeArchive(repoDir, head, out, { prefix: "testbed" });
  const headers = await tarHeaders(out);

  const paths = headers.map((h) => h.path.replace(/\/$/, ""));
  t.deepEqual(paths, sortPaths(paths));
  t.is(headers[0]?.path, "testbed/");
  t.true(headers.every((h) => h.path.startsWith("testbed/")));
  t.true(paths.indexOf("testbed/src/nested/deep/hello.txt") < paths.indexOf("testbed/src-b.txt"));
  t.true(
    paths.some((p) => p.length > 100),
    "a path longer than ustar's 100-character name field",
  );

  const byPath = new Map(headers.map((h) => [h.path.replace(/\/$/, ""), h]));
  t.is(byPath.get("testbed/README.md")?.mode, 0o644);
  t.is(byPath.get("testbed/bin/run.sh")?.mode, 0o755);
  t.is(byPath.get("testbed/helm/demo/scripts/init.sh")?.mode, 0o755);
  t.is(byPath.get("testbed/src")?.type, "Directory");
  t.is(byPath.get("testbed/src")?.mode, 0o755);
  t.is(byPath.get("testbed/src/nested/up")?.type, "SymbolicLink");
  t.is(byPath.get("testbed/src/nested/up")?.linkpath, "../../config");
  for (const h of headers) {
    t.is(h.mtime, EXTRA_EPOCH, h.path);
    t.falsy(h.uid, h.path);
    t.falsy(h.gid, h.path);
    t.falsy(h.uname, h.path);
    t.falsy(h.gname, h.path);
  }
  // GNU tar reads the empty owner fields as root.
  const { stdout } = await execFileAsync("tar", ["-tvzf", out, "--numeric-owner"], { env: { TZ: "UTC" } });
  t.true(
    stdout
      .split("\n")
      .filter(Boolean)
      .every((line) => line.split(/\s+/)[1] === "0/0"),
    stdout,
  );
  t.regex(stdout, /-rwxr-xr-x 0\/0 +\d+ 2024-01-01 04:00 testbed\/bin\/run.sh/);

  const gz = await readFile(out);
  t.deepEqual([...gz.subarray(0, 4)], [0x1f, 0x8b, 8, 0], "gzip magic, deflate, no flags");
  t.is(gz.readUInt32LE(4), 0, "no timestamp in the gzip header");
  t.is(gz[9], 255, "OS byte: unknown");
});

test("the same commit gives byte-identical archives from separate caches, folders and umasks", async (t) => {
  const { repo, head } = await richRepo(t);
  const first = await fetched(t, repo.url, head);
  const outA = path.join(await tempDir(t), "a", "testbed.tar.gz");
  const a = await writeArchive(first.repoDir, head, outA, { prefix: "testbed" });

  // Another process, another cache, another output folder, umask 077.
  const cacheB = await tempDir(t, "bundle-gitcache-");
  const outB = path.join(await tempDir(t), "testbed.tar.gz");
  const b = await archiveInChild({
    url: repo.url,
    commit: head,
    cacheDir: cacheB,
    out: outB,
    prefix: "testbed",
    umask: 0o077,
  });
  t.deepEqual(b, a);
  t.is(sha256(await readFile(outB)), a.sha256);
  t.is((await stat(outB)).mode & 0o777, 0o600, "the child really ran with umask 077");

  // And again from the first cache, now that it is warm.
  const again = await writeArchive(first.repoDir, head, path.join(path.dirname(outA), "again.tar.gz"), {
    prefix: "testbed",
  });
  t.deepEqual(again, a);
});

test("tags and branches resolve to their commits, annotated tags peeled, each time anew", async (t) => {
  const repo = await testRepo(t);
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const resolve = async (ref: string) => (await fetchCommit(byRef(repo.url, ref), { cacheDir })).commit;
  t.is(await resolve("v1.0.0"), repo.tags["v1.0.0"]!, "lightweight tag");
  t.is(await resolve("v1.1.0"), repo.tags["v1.1.0"]!, "annotated tag, peeled to its commit");
  t.not(repo.tagObjects["v1.1.0"], repo.tags["v1.1.0"]);
  t.is(await resolve("refs/tags/v1.1.0"), repo.tags["v1.1.0"]!, "full ref name");
  t.is(await resolve("main"), repo.commits[2]!, "branch");
  t.is(await resolve("HEAD"), repo.commits[2]!);

  // A branch that moves is followed (ls-remote every run); the tag stays.
  const next = await addCommit(repo.dir, { epoch: EXTRA_EPOCH, files: { "new.txt": "new\n" } });
  t.is(await resolve("main"), next);
  t.is(await resolve("v1.0.0"), repo.tags["v1.0.0"]!);
  // A tag and a branch of the same name: the tag wins, as with git rev-parse.
  await git(repo.dir, ["branch", "v1.0.0", repo.commits[1]!]);
  t.is(await resolve("v1.0.0"), repo.tags["v1.0.0"]!);
  t.is(await resolve("refs/heads/v1.0.0"), repo.commits[1]!);
});

test("a pinned commit already in the cache is not fetched again: the remote may be gone", async (t) => {
  const repo = await testRepo(t);
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const item = pinned(repo.url, repo.commits[1]!);
  const first = await fetchCommit(item, { cacheDir });
  t.is(first.source, "shallow");
  const out = path.join(await tempDir(t), "r.tar.gz");
  const before = await writeArchive(first.repoDir, first.commit, out, { prefix: "r" });

  const moved = `${repo.dir}-moved`;
  await rename(repo.dir, moved);
  t.teardown(() => rm(moved, { recursive: true, force: true }));
  const second = await fetchCommit(item, { cacheDir });
  t.deepEqual(second, { ...first, source: "cache" });
  t.deepEqual(await writeArchive(second.repoDir, second.commit, out, { prefix: "r" }), before);

  // A commit the cache lacks does need the remote, and says which.
  const err = await t.throwsAsync(fetchCommit(pinned(repo.url, repo.commits[0]!), { cacheDir }));
  t.true(err instanceof WorkError);
  t.true(err?.message.includes(repo.url), err?.message);
});

test("a pinned commit is fetched shallow: that commit only, not its history", async (t) => {
  const repo = await testRepo(t);
  const { repoDir, source } = await fetched(t, repo.url, repo.commits[1]!);
  t.is(source, "shallow");
  t.is(await git(repoDir, ["rev-parse", "--is-shallow-repository"]), "true");
  t.is(await git(repoDir, ["cat-file", "-t", repo.commits[1]!]), "commit");
  await t.throwsAsync(git(repoDir, ["cat-file", "-t", repo.commits[0]!]));
  await t.throwsAsync(git(repoDir, ["cat-file", "-t", repo.commits[2]!]));
  t.is(await git(repoDir, ["rev-parse", `refs/bundle/pins/${repo.commits[1]!}`]), repo.commits[1]!);
  t.is(path.basename(repoDir), `${cacheName(repo.url)}.git`);
  t.regex(path.basename(repoDir), /^testbed-git-[A-Za-z0-9]+-[0-9a-f]{16}\.git$/);
});

test("over git:// (git daemon): shallow fetch by commit, then no network once cached", async (t) => {
  const repo = await testRepo(t);
  const daemon = await startGitDaemon(path.dirname(repo.dir));
  t.teardown(() => daemon.stop());
  const url = daemon.urlOf(repo.dir);
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const first = await fetchCommit(pinned(url, repo.commits[0]!), { cacheDir });
  t.is(first.source, "shallow");
  t.is(await git(first.repoDir, ["rev-parse", "--is-shallow-repository"]), "true");
  const tag = await fetchCommit(byRef(url, "v1.1.0"), { cacheDir });
  t.is(tag.commit, repo.tags["v1.1.0"]!);

  await daemon.stop();
  const again = await fetchCommit(pinned(url, repo.commits[0]!), { cacheDir });
  t.is(again.source, "cache");
  const err = await t.throwsAsync(fetchCommit(pinned(url, repo.commits[1]!), { cacheDir }));
  t.true(err instanceof WorkError);
  t.true(err?.message.includes(url), err?.message);
});

test("a commit id the repository does not have: an input error naming URL and commit", async (t) => {
  const repo = await testRepo(t);
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const wrong = "0123456789abcdef0123456789abcdef01234567";
  const err = await t.throwsAsync(fetchCommit(pinned(repo.url, wrong), { cacheDir }));
  t.true(err instanceof InputError);
  t.true(err?.message.includes(repo.url), err?.message);
  t.true(err?.message.includes(wrong), err?.message);
  t.is((err as InputError).exitCode, 2);
});

test("ids that are not commits, and malformed ids and refs, are input errors", async (t) => {
  const repo = await testRepo(t);
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const tree = await git(repo.dir, ["rev-parse", `${repo.commits[0]!}^{tree}`]);
  const notCommit = await t.throwsAsync(fetchCommit(pinned(repo.url, tree), { cacheDir }));
  t.true(notCommit instanceof InputError);
  t.regex(notCommit?.message ?? "", new RegExp(`${tree}.*not a commit`));

  const short = await t.throwsAsync(
    fetchCommit(pinned(repo.url, repo.commits[0]!.slice(0, 7)), { cacheDir }),
  );
  t.true(short instanceof InputError);
  t.regex(short?.message ?? "", /not a full commit id/);

  for (const ref of ["--upload-pack=touch /tmp/x", "a..b", "x y", ""]) {
    const err = await t.throwsAsync(fetchCommit(byRef(repo.url, ref), { cacheDir }));
    t.true(err instanceof InputError, ref);
  }
  const url = await t.throwsAsync(fetchCommit(pinned("--upload-pack=x", repo.commits[0]!), { cacheDir }));
  t.true(url instanceof InputError);
});

test("a ref the repository does not have: an input error naming ref and URL", async (t) => {
  const repo = await testRepo(t);
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const err = await t.throwsAsync(fetchCommit(byRef(repo.url, "v9.9.9"), { cacheDir }));
  t.true(err instanceof InputError);
  t.true(err?.message.includes("v9.9.9"), err?.message);
  t.true(err?.message.includes(repo.url), err?.message);
});

test("unreachable remotes: a missing path and a closed port are work errors naming the URL", async (t) => {
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const gone = path.join(cacheDir, "no-such-repo");
  const commit = "0123456789abcdef0123456789abcdef01234567";
  const port = await freePort();
  for (const url of [`file://${gone}`, gone, `git://127.0.0.1:${port}/repo`]) {
    const err = await t.throwsAsync(fetchCommit(pinned(url, commit), { cacheDir }));
    t.true(err instanceof WorkError, `${url}: ${String(err)}`);
    t.true(err?.message.includes(url), err?.message);
    const refErr = await t.throwsAsync(fetchCommit(byRef(url, "main"), { cacheDir }));
    t.true(refErr instanceof WorkError, `${url}: ${String(refErr)}`);
    t.true(refErr?.message.includes(url), refErr?.message);
  }
});

test("copyChart copies the chart folder at the commit with git's modes, replacing the old copy", async (t) => {
  const { repo, head } = await richRepo(t);
  const { repoDir } = await fetched(t, repo.url, head);
  const dest = path.join(await tempDir(t), "charts", "demo");
  await mkdir(dest, { recursive: true });
  await writeFile(path.join(dest, "stale.yaml"), "from an earlier run\n");

  await copyChart(repoDir, head, "helm/demo", dest);
  const got = await snapshot(dest);
  t.deepEqual(Object.keys(got).sort(), [
    "Chart.yaml",
    "scripts",
    "scripts/init.sh",
    "templates",
    "templates/deployment.yaml",
    "values.yaml",
  ]);
  t.is(
    got["Chart.yaml"],
    `file - ${sha256((await git(repo.dir, ["show", `${head}:helm/demo/Chart.yaml`])) + "\n")}`,
  );
  t.is((await stat(path.join(dest, "scripts/init.sh"))).mode & 0o777, 0o755);
  t.is((await stat(path.join(dest, "values.yaml"))).mode & 0o777, 0o644);
  t.is((await stat(path.join(dest, "templates"))).mode & 0o777, 0o755);
  t.is((await stat(dest)).mode & 0o777, 0o755);
  // Nothing left next to it.
  t.deepEqual(await readdir(path.dirname(dest)), ["demo"]);

  // "./helm/demo/" means the same folder.
  await copyChart(repoDir, head, "./helm/demo/", dest);
  t.deepEqual(await snapshot(dest), got);
});

test("copyChart of a folder the commit lacks is an input error naming URL, commit and path", async (t) => {
  const { repo, head } = await richRepo(t);
  const { repoDir } = await fetched(t, repo.url, head);
  const dest = path.join(await tempDir(t), "chart");
  for (const sub of ["helm/missing", "README.md", "../outside"]) {
    const err = await t.throwsAsync(copyChart(repoDir, head, sub, dest));
    t.true(err instanceof InputError, sub);
    t.true(err?.message.includes(repo.url), err?.message);
    t.true(err?.message.includes(head), err?.message);
    t.true(err?.message.includes(sub.replace(/^\.\.\//, "")), err?.message);
  }
  await t.throwsAsync(access(dest));
});

test("concurrent fetches of one URL share the cache safely; a dead holder's lock is taken over", async (t) => {
  const commits = Array.from({ length: 8 }, (_, i) => ({
    message: `c${i}`,
    files: { [`f${i}.txt`]: `${i}\n` },
  }));
  const repo = await testRepo(t, { commits, tags: [] });
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const fetchAll = (list: string[]) =>
    Promise.all(list.map((c) => fetchCommit(pinned(repo.url, c), { cacheDir })));
  // A cold cache (creating the repository), then a warm one (shallow fetches into it), in one process...
  const cold = await fetchAll(repo.commits.slice(0, 4));
  const warm = await fetchAll([...repo.commits.slice(4), ...repo.commits.slice(4)]);
  t.deepEqual(
    [...cold, ...warm].map((r) => r.commit),
    [...repo.commits, ...repo.commits.slice(4)],
  );
  t.is(new Set([...cold, ...warm].map((r) => r.repoDir)).size, 1);
  // ...and from two processes at once, into a second cache.
  const cacheB = await tempDir(t, "bundle-gitcache-");
  const outDir = await tempDir(t);
  const inChild = (c: string, i: number) =>
    archiveInChild({
      url: repo.url,
      commit: c,
      cacheDir: cacheB,
      out: path.join(outDir, `${i}.tar.gz`),
      prefix: "r",
    });
  await Promise.all(repo.commits.slice(0, 4).map(inChild));
  for (const dir of [cacheDir, cacheB]) {
    t.deepEqual(await readdir(dir), [`${cacheName(repo.url)}.git`], "no lock or temporary left");
    await git(path.join(dir, `${cacheName(repo.url)}.git`), ["fsck", "--no-progress"]);
  }

  // A lock left by a killed run (a pid that no longer runs on this host) does not block.
  const { stdout } = await execFileAsync("sh", ["-c", "echo $$"]);
  const lock = path.join(cacheDir, `${cacheName(repo.url)}.lock`);
  await writeFile(lock, JSON.stringify({ pid: Number(stdout.trim()), host: hostname() }));
  const after = await fetchCommit(pinned(repo.url, repo.commits[0]!), { cacheDir });
  t.is(after.source, "cache");
  await t.throwsAsync(access(lock));
});

test("archives hold committed bytes: .gitattributes export-ignore, export-subst and eol do not apply", async (t) => {
  const repo = await testRepo(t);
  const head = await addCommit(repo.dir, {
    epoch: EXTRA_EPOCH,
    files: {
      ".gitattributes": "secret.txt export-ignore\nversion.txt export-subst\n*.txt eol=crlf\n",
      "secret.txt": "kept\n",
      "version.txt": "$Format:%H %cr$\n",
      "lines.txt": "one\ntwo\n",
    },
  });
  const { repoDir } = await fetched(t, repo.url, head);
  const work = await tempDir(t);
  await writeArchive(repoDir, head, path.join(work, "r.tar.gz"), { prefix: "r" });
  const got = await extractAndSnapshot(path.join(work, "r.tar.gz"), path.join(work, "x"));
  for (const file of ["secret.txt", "version.txt", "lines.txt", ".gitattributes"]) {
    const committed = await git(repo.dir, ["cat-file", "blob", `${head}:${file}`]);
    t.is(got[`r/${file}`], `file - ${sha256(committed + "\n")}`, file);
  }
});

test("submodules: each one's content at its recorded commit, under its path", async (t) => {
  const sub = await testRepo(t, { tags: [] });
  const parent = path.dirname(sub.dir);
  const superRepo = await testRepo(t);
  // A relative URL, as projects write them: resolved against the superproject's URL.
  const relative = `../${path.basename(sub.dir)}`;
  await git(superRepo.dir, [
    "-c",
    "protocol.file.allow=always",
    "submodule",
    "add",
    "-q",
    relative,
    "vendor/sub",
  ]);
  await git(path.join(superRepo.dir, "vendor/sub"), ["checkout", "-q", sub.commits[1]!]);
  await git(superRepo.dir, ["add", "-A"]);
  const head = await addCommit(superRepo.dir, { epoch: EXTRA_EPOCH, message: "add submodule" });
  t.is(path.dirname(superRepo.dir), parent);

  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const item = pinned(superRepo.url, head, { submodules: true });
  const { repoDir } = await fetchCommit(item, { cacheDir });
  const work = await tempDir(t);
  await writeArchive(repoDir, head, path.join(work, "with.tar.gz"), { prefix: "s", submodules: true });
  await writeArchive(repoDir, head, path.join(work, "without.tar.gz"), { prefix: "s" });
  const withSubs = await extractAndSnapshot(path.join(work, "with.tar.gz"), path.join(work, "with"));
  const without = await extractAndSnapshot(path.join(work, "without.tar.gz"), path.join(work, "without"));

  const readme = await git(sub.dir, ["show", `${sub.commits[1]!}:README.md`]);
  t.is(withSubs["s/vendor/sub/README.md"], `file - ${sha256(readme + "\n")}`);
  t.is(withSubs["s/vendor/sub/bin/run.sh"]?.slice(0, 6), "file x");
  t.is(withSubs["s/vendor/sub/config/app.yaml"], undefined, "the recorded commit, not the branch tip");
  t.is(without["s/vendor/sub"], "dir");
  t.deepEqual(
    Object.keys(without).filter((p) => p.startsWith("s/vendor/sub/")),
    [],
  );

  // The cache has everything: with the remotes gone, a rerun fetches nothing and archives the same.
  await rm(sub.dir, { recursive: true, force: true });
  t.is((await fetchCommit(item, { cacheDir })).source, "cache");
  const before = await readFile(path.join(work, "with.tar.gz"));
  const again = await writeArchive(repoDir, head, path.join(work, "again.tar.gz"), {
    prefix: "s",
    submodules: true,
  });
  t.is(again.sha256, sha256(before));
});

test("archives and charts need the commit in the cache; prefixes are one folder name", async (t) => {
  const repo = await testRepo(t, { chart: "demo" });
  const { repoDir } = await fetched(t, repo.url, repo.commits[2]!);
  const out = path.join(await tempDir(t), "r.tar.gz");
  const absent = repo.commits[0]!; // the shallow fetch did not bring it
  for (const attempt of [
    writeArchive(repoDir, absent, out, { prefix: "r" }),
    copyChart(repoDir, absent, "helm/demo", path.join(path.dirname(out), "chart")),
  ]) {
    const err = await t.throwsAsync(attempt);
    t.true(err instanceof WorkError);
    t.true(err?.message.includes(`${repo.url} at ${absent}`), err?.message);
  }
  for (const prefix of ["", "a/b", "..", "@x"]) {
    await t.throwsAsync(writeArchive(repoDir, repo.commits[2]!, out, { prefix }), { instanceOf: WorkError });
  }
  await t.throwsAsync(access(out), undefined, "nothing written under the final name");

  t.is(archivePrefix("openwhisk.tar.gz"), "openwhisk");
  t.is(archivePrefix("sub/tool.tgz"), "tool");
});
