/**
 * The user's git configuration given by GIT_CONFIG_GLOBAL: simple-git 4 drops inherited GIT_*
 * variables unless told otherwise, so this checks that ours pass. The configuration also turns
 * core.autocrlf on, which must not change an archive's bytes.
 */
import test from "ava";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { fetchCommit, writeArchive } from "../src/git/index.js";
import { WorkError } from "../src/util/errors.js";
import { git } from "./helpers/git.js";
import { useGitHome } from "./helpers/gitConfig.js";
import {
  addCommit,
  archiveInChild,
  byRef,
  extractAndSnapshot,
  pinned,
  sha256,
  tempDir,
  testRepo,
} from "./helpers/gitBundle.js";

const FAKE_HOST = "https://git.example.invalid/env/";
const gitHome = await useGitHome(
  `[url "${pathToFileURL(tmpdir()).href}/"]\n\tinsteadOf = ${FAKE_HOST}\n` + "[core]\n\tautocrlf = true\n",
  "env",
);
test.after.always(() => gitHome.cleanup());

test("url.<base>.insteadOf from GIT_CONFIG_GLOBAL applies to pinned commits and refs", async (t) => {
  const repo = await testRepo(t);
  const url = `${FAKE_HOST}${path.basename(repo.dir)}`;
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const byCommit = await fetchCommit(pinned(url, repo.commits[1]!), { cacheDir });
  t.is(byCommit.source, "shallow");
  t.is((await fetchCommit(byRef(url, "main"), { cacheDir })).commit, repo.commits[2]!);
  t.is(await git(byCommit.repoDir, ["config", "remote.origin.url"]), url);

  const missing = `${FAKE_HOST}no-such-repo`;
  const err = await t.throwsAsync(fetchCommit(pinned(missing, repo.commits[0]!), { cacheDir }));
  t.true(err instanceof WorkError);
  t.true(err?.message.includes(missing), err?.message);
});

test("core.autocrlf=true does not change the archive: same bytes as without any configuration", async (t) => {
  const repo = await testRepo(t);
  const head = await addCommit(repo.dir, { epoch: 1_704_100_000, files: { "lines.txt": "one\ntwo\n" } });
  const cacheDir = await tempDir(t, "bundle-gitcache-");
  const { repoDir } = await fetchCommit(pinned(repo.url, head), { cacheDir });
  const work = await tempDir(t);
  const ours = await writeArchive(repoDir, head, path.join(work, "r.tar.gz"), { prefix: "r" });
  const files = await extractAndSnapshot(path.join(work, "r.tar.gz"), path.join(work, "x"));
  t.is(files["r/lines.txt"], `file - ${sha256("one\ntwo\n")}`);

  const env = { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null" };
  const cacheB = await tempDir(t, "bundle-gitcache-");
  const plain = await archiveInChild({
    url: repo.url,
    commit: head,
    cacheDir: cacheB,
    out: path.join(work, "plain.tar.gz"),
    prefix: "r",
    env,
  });
  t.deepEqual(plain, ours);
});
