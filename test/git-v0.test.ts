/**
 * Servers that refuse to send a commit by id. Protocol v2 (git's default since 2.26) lets a
 * client ask for any object; protocol v0 only for advertised ref tips, unless the server sets
 * uploadpack.allowReachableSHA1InWant. This process's git speaks v0 (from ~/.gitconfig, which
 * also tests that the user's configuration in HOME applies), so file:// remotes behave like
 * such a server.
 */
import test from "ava";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { fetchCommit, writeArchive } from "../src/git/index.js";
import { InputError } from "../src/util/errors.js";
import { git } from "./helpers/git.js";
import { useGitHome } from "./helpers/gitConfig.js";
import { addCommit, byRef, extractAndSnapshot, pinned, tempDir, testRepo } from "./helpers/gitBundle.js";

const FAKE_HOST = "https://git.example.invalid/v0/";
const gitHome = await useGitHome(
  "[protocol]\n\tversion = 0\n" + `[url "${pathToFileURL(tmpdir()).href}/"]\n\tinsteadOf = ${FAKE_HOST}\n`,
);
test.after.always(() => gitHome.cleanup());

test("a commit the server will not send by id comes with a full fetch of branches and tags", async (t) => {
  const repo = await testRepo(t);
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const tip = await fetchCommit(pinned(repo.url, repo.commits[2]!), { cacheDir });
  t.is(tip.source, "shallow", "a branch tip is advertised, so even v0 sends it by id");
  t.is(await git(tip.repoDir, ["rev-parse", "--is-shallow-repository"]), "true");

  // Behind the shallow tip, and no tag on it (commits[0] has one): refused by id, found by a full
  // fetch that also unshallows the cache.
  const old = await fetchCommit(pinned(repo.url, repo.commits[1]!), { cacheDir });
  t.is(old.source, "full");
  t.is(await git(old.repoDir, ["rev-parse", "--is-shallow-repository"]), "false");
  t.is((await fetchCommit(pinned(repo.url, repo.commits[0]!), { cacheDir })).source, "cache");

  const work = await tempDir(t);
  await writeArchive(old.repoDir, old.commit, path.join(work, "r.tar.gz"), { prefix: "r" });
  await git(repo.dir, ["archive", "--prefix=r/", "-o", path.join(work, "ref.tar"), repo.commits[1]!]);
  t.deepEqual(
    await extractAndSnapshot(path.join(work, "r.tar.gz"), path.join(work, "a")),
    await extractAndSnapshot(path.join(work, "ref.tar"), path.join(work, "b")),
  );
});

test("a commit no branch or tag contains, on such a server: an input error naming URL and commit", async (t) => {
  const repo = await testRepo(t);
  await git(repo.dir, ["checkout", "-q", "-b", "side"]);
  const dangling = await addCommit(repo.dir, { epoch: 1_800_000_000, files: { "side.txt": "side\n" } });
  await git(repo.dir, ["checkout", "-q", repo.branch]);
  await git(repo.dir, ["branch", "-q", "-D", "side"]);
  t.is(await git(repo.dir, ["cat-file", "-t", dangling]), "commit", "the server has it");

  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const err = await t.throwsAsync(fetchCommit(pinned(repo.url, dangling), { cacheDir }));
  t.true(err instanceof InputError, String(err));
  t.true(err?.message.includes(repo.url), err?.message);
  t.true(err?.message.includes(dangling), err?.message);
  t.regex(err?.message ?? "", /no branch or tag contains it/);
  t.regex(err?.message ?? "", /not allow request for unadvertised object/);
});

test("a server that allows reachable commits by id gets the shallow fetch", async (t) => {
  const repo = await testRepo(t);
  await git(repo.dir, ["config", "uploadpack.allowReachableSHA1InWant", "true"]);
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  // commits[1]: neither a branch tip nor tagged, so only this setting lets v0 send it by id.
  const got = await fetchCommit(pinned(repo.url, repo.commits[1]!), { cacheDir });
  t.is(got.source, "shallow");
  await t.throwsAsync(git(got.repoDir, ["cat-file", "-t", repo.commits[0]!]));
});

test("tags resolve on such a server too, annotated ones peeled", async (t) => {
  const repo = await testRepo(t);
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  for (const tag of ["v1.0.0", "v1.1.0"]) {
    t.is((await fetchCommit(byRef(repo.url, tag), { cacheDir })).commit, repo.tags[tag]!, tag);
  }
});

test("url.<base>.insteadOf from ~/.gitconfig applies; messages keep the URL as written", async (t) => {
  const repo = await testRepo(t);
  const url = `${FAKE_HOST}${path.basename(repo.dir)}`;
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const got = await fetchCommit(byRef(url, "v1.1.0"), { cacheDir });
  t.is(got.commit, repo.tags["v1.1.0"]!);
  t.is(await git(got.repoDir, ["config", "remote.origin.url"]), url, "the cache is keyed by the written URL");
  const err = await t.throwsAsync(fetchCommit(byRef(`${FAKE_HOST}no-such-repo`, "main"), { cacheDir }));
  t.true(err?.message.includes(`${FAKE_HOST}no-such-repo`), err?.message);
});
