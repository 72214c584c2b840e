/**
 * `bundle diff OLD NEW` through the CLI, on real bundles: the standard images from a Distribution
 * registry prepared once, then two of them pushed again under the same tags with other content
 * and an update bundle prepared against the first (`prepare --since`).
 */
import test from "ava";
import { cp, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { pushImage, seedStandardImages, type PushedImage, type StandardImages } from "./helpers/images.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { makeGitRepo, type TestGitRepo } from "./helpers/git.js";
import { sha256File, standardImageLines } from "./helpers/bundles.js";
import type { DiffReport } from "../src/stages/diff.js";
import type { Lock } from "../src/bundle/lock.js";

interface Fixture {
  registry: TestRegistry;
  /** A git repository with a chart, deployed as release demo. */
  repo: TestGitRepo;
  root: string;
  cleanup: () => Promise<void>;
  images: StandardImages;
  /** The two images pushed again with other content, as the registry now serves them. */
  changed: { before: PushedImage; after: PushedImage }[];
  /** The first bundle as a folder and as an archive, and the update bundle against it. */
  old: string;
  oldArchive: string;
  update: string;
  error?: string;
}

let fixture: Fixture | undefined;

test.before(async () => {
  const registry = await startRegistry();
  const images = await seedStandardImages(registry);
  const repo = await makeGitRepo({ chart: "demo" });
  const { dir, cleanup } = await tempFiles(
    {
      "bundle.yml": [
        "name: diff-demo",
        ...standardImageLines(images),
        "values:",
        "  replicas: 2",
        "templates:",
        "  - source: conf.yml",
        "    dest: files/conf.yml",
        "git:",
        `  - url: ${repo.url}`,
        `    commit: ${repo.commits.at(-1) ?? ""}`,
        "    chart: helm/demo",
        "releases:",
        "  - name: demo",
        "    chart: demo",
        "    namespace: apps",
        "    values: [files/conf.yml]",
      ].join("\n"),
      "conf.yml": "replicas: {{replicas}}\n",
    },
    "diff-demo",
  );
  const env = { BUNDLE_CACHE_DIR: path.join(dir, "cache") };
  const f: Fixture = {
    registry,
    repo,
    root: dir,
    cleanup,
    images,
    changed: [],
    old: path.join(dir, "old"),
    oldArchive: path.join(dir, "old.tar"),
    update: path.join(dir, "update"),
  };
  fixture = f;
  const first = await runCli(["prepare", "-o", f.old, "--archive", f.oldArchive], { cwd: dir, env });
  if (first.code !== 0) return void (f.error = `prepare failed (${first.code}): ${first.stderr}`);
  // Same tags, other content (a new label changes each platform's config, so every digest).
  f.changed = [
    {
      before: images.ociIndex,
      after: await pushImage(registry, "testbed/multi-oci", "v1", {
        kind: "oci-index",
        layers: ["testbed-base", "multi-oci-app"],
        label: "multi-oci second build",
      }),
    },
    {
      before: images.singleDocker,
      after: await pushImage(registry, "testbed/single-docker", "v1", {
        kind: "single",
        format: "docker",
        layers: ["testbed-base", "single-docker-app"],
        label: "single-docker second build",
      }),
    },
  ];
  const second = await runCli(["prepare", "-o", f.update, "--since", f.old], { cwd: dir, env });
  if (second.code !== 0) f.error = `prepare --since failed (${second.code}): ${second.stderr}`;
});

test.after.always(async () => {
  if (!fixture) return;
  await fixture.registry.stop();
  await fixture.repo.cleanup();
  await fixture.cleanup();
});

function ready(): Fixture {
  if (!fixture) throw new Error("the fixture did not start");
  if (fixture.error) throw new Error(fixture.error);
  return fixture;
}

/** Every file of the bundles with its sha256: what a read-only command must leave as it was. */
async function snapshot(f: Fixture): Promise<Record<string, string>> {
  const out: Record<string, string> = { [f.oldArchive]: await sha256File(f.oldArchive) };
  for (const dir of [f.old, f.update])
    for (const e of await readdir(dir, { recursive: true, withFileTypes: true }))
      if (e.isFile())
        out[path.join(e.parentPath, e.name)] = await sha256File(path.join(e.parentPath, e.name));
  return out;
}

const short = (digest: string) => `sha256:${digest.slice(7, 19)}`;

test("diff of a bundle and its update bundle names exactly the two changed images, old and new digests", async (t) => {
  const f = ready();
  const before = await snapshot(f);
  const r = await runCli(["diff", f.old, f.update]);
  t.is(r.code, 1, r.stderr);
  t.is(r.stderr, "");
  t.deepEqual(await snapshot(f), before, "diff writes nothing");
  t.true(Object.keys(before).length > 20, "the snapshot covers the bundles");

  const section = r.stdout.slice(
    r.stdout.indexOf("\nimages\n"),
    r.stdout.indexOf("\n\n", r.stdout.indexOf("\nimages\n") + 1),
  );
  const changedLines = section.split("\n").filter((l) => l.startsWith("  changed "));
  t.is(changedLines.length, 2, r.stdout);
  for (const { before: b, after: a } of f.changed) {
    const line = changedLines.find((l) => l.includes(` ${b.ref} `));
    t.truthy(line, `${b.ref} is named:\n${r.stdout}`);
    t.true(line?.includes(`${short(b.digest)} → ${short(a.digest)}`), line);
  }
  // The unchanged images are not named anywhere; nothing else differs.
  for (const i of [f.images.dockerList, f.images.singleOci]) t.false(r.stdout.includes(i.ref), i.ref);
  for (const kind of ["git archives", "files", "charts", "releases", "templates"])
    t.false(r.stdout.includes(`\n${kind}\n`), kind);
  t.regex(r.stdout, /\n2 images changed\n$/);
  t.regex(
    r.stdout,
    /^new .*update .*\(folder, bundle diff-demo, an update bundle after lock sha256 [0-9a-f]{12}\)$/m,
  );
});

test("--json: a stable structure with each changed image's digests, per platform", async (t) => {
  const f = ready();
  const r = await runCli(["--json", "diff", f.old, f.update]);
  t.is(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as DiffReport;
  t.false(report.equal);
  t.deepEqual(report.old, { where: f.old, name: "diff-demo", kind: "folder", updateSince: null });
  t.is(report.new.updateSince, await sha256File(path.join(f.old, "bundle.lock.json")));
  const expected = f.changed
    .map(({ before: b, after: a }) => ({
      ref: b.ref,
      old: { digest: b.digest, mirror: `teleinfra/${b.repo.split("/").at(-1) ?? ""}:v1` },
      new: { digest: a.digest, mirror: `teleinfra/${a.repo.split("/").at(-1) ?? ""}:v1` },
      platforms: {
        added: [],
        removed: [],
        changed: a.platforms.map((p, i) => ({
          platform: p.platform,
          old: b.platforms[i]?.digest,
          new: p.digest,
        })),
      },
    }))
    .sort((x, y) => x.ref.localeCompare(y.ref));
  t.deepEqual(report.images, { added: [], removed: [], retagged: [], changed: expected });
  // The multi-platform image changed on both platforms, each with its own digests.
  t.is(expected.find((e) => e.ref === f.images.ociIndex.ref)?.platforms.changed.length, 2);
  const empty = { added: [], removed: [], changed: [] };
  for (const kind of ["git", "files", "npm", "charts", "releases", "templates"] as const)
    t.deepEqual(report[kind], empty, kind);
  t.deepEqual(report.bundle, { name: null, platforms: { added: [], removed: [] } });
  t.deepEqual(report.values, {
    compared: true,
    added: [],
    removed: [],
    changed: [],
    siteValues: { added: [], removed: [] },
  });
});

test("a bundle against itself as an archive is equal: exit 0", async (t) => {
  const f = ready();
  const r = await runCli(["diff", f.old, f.oldArchive]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /\(archive, bundle diff-demo\)\n\nno differences\n$/);
  const j = await runCli(["--json", "diff", f.oldArchive, f.old]);
  t.is(j.code, 0, j.stderr);
  const report = JSON.parse(j.stdout) as DiffReport;
  t.true(report.equal);
  t.is(report.old.kind, "archive");
  t.true(report.values.compared, "both archives' values files were read");
});

test("a lock file whose image moved to another mirror name: that image is retagged, nothing else", async (t) => {
  const f = ready();
  const lock = JSON.parse(await readFile(path.join(f.old, "bundle.lock.json"), "utf8")) as Lock;
  const img = lock.images.find((i) => i.ref === f.images.singleOci.ref);
  if (!img) return t.fail("the lock lists single-oci");
  img.mirror = "teleinfra/other-name:v1";
  const file = path.join(f.root, "retagged.lock.json");
  await writeFile(file, JSON.stringify(lock));
  const r = await runCli(["--json", "diff", f.oldArchive, file]);
  t.is(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as DiffReport;
  t.deepEqual(report.images, {
    added: [],
    removed: [],
    changed: [],
    retagged: [
      {
        digest: f.images.singleOci.digest,
        old: { ref: f.images.singleOci.ref, mirror: "teleinfra/single-oci:v1" },
        new: { ref: f.images.singleOci.ref, mirror: "teleinfra/other-name:v1" },
      },
    ],
  });
  t.is(report.new.kind, "lock");
  t.false(report.values.compared, "a lock file holds no values");
  const human = await runCli(["diff", f.oldArchive, file]);
  t.is(human.code, 1);
  t.true(
    human.stdout.includes(
      `retagged  ${short(f.images.singleOci.digest)}  ${f.images.singleOci.ref} (teleinfra/single-oci:v1) → ${f.images.singleOci.ref} (teleinfra/other-name:v1)`,
    ),
    human.stdout,
  );
  t.regex(human.stdout, /\n1 image retagged\n$/);
});

test("a broken lock or a missing path is exit 2 naming it, with nothing on stdout", async (t) => {
  const f = ready();
  const text = await readFile(path.join(f.old, "bundle.lock.json"), "utf8");
  const broken = path.join(f.root, "broken.lock.json");
  await writeFile(broken, text.replace(f.images.dockerList.digest, "sha256:not-a-digest"));
  const r = await runCli(["diff", f.old, broken]);
  t.is(r.code, 2, r.stderr);
  t.is(r.stdout, "");
  t.regex(r.stderr, new RegExp(`^error: ${broken}: images\\[\\d\\]\\.digest: .*"sha256:not-a-digest"`, "m"));
  t.notRegex(r.stderr, /\n\s+at /, "no stack trace");

  const notJson = path.join(f.root, "half.lock.json");
  await writeFile(notJson, text.slice(0, 100));
  const half = await runCli(["diff", notJson, f.old]);
  t.is(half.code, 2);
  t.regex(half.stderr, new RegExp(`^error: ${notJson}: not valid JSON`, "m"));

  const gone = path.join(f.root, "no-such-bundle");
  const missing = await runCli(["diff", gone, f.old]);
  t.is(missing.code, 2);
  t.is(missing.stderr, `error: ${gone}: no such bundle folder, archive or lock file\n`);
  const usage = await runCli(["diff", f.old]);
  t.is(usage.code, 2);
  t.regex(usage.stderr, /missing required argument 'NEW'/);
});

test("bundle --help lists diff, and diff --help says what it takes and its exit codes", async (t) => {
  const top = await runCli(["--help"]);
  t.is(top.code, 0);
  t.regex(top.stdout, /^ {2}diff <OLD> <NEW>\s+what changed between two bundles/m);
  const r = await runCli(["diff", "--help"]);
  t.is(r.code, 0);
  t.regex(r.stdout, /^Usage: bundle diff \[options\] <OLD> <NEW>$/m);
  t.regex(r.stdout, /a folder, an archive or its\s+bundle\.lock\.json/);
  t.regex(r.stdout, /exit 1 when they differ/);
  t.regex(r.stdout, /^ {2}\$ bundle --json diff /m);
});

test("charts (files, version), releases, git, files and template values: each named under its kind, values by key only", async (t) => {
  const f = ready();
  const edited = path.join(f.root, "edited");
  await cp(f.old, edited, { recursive: true });
  const lockFile = path.join(edited, "bundle.lock.json");
  const lock = JSON.parse(await readFile(lockFile, "utf8")) as Lock;
  const chartYaml = "apiVersion: v2\nname: demo\nversion: 0.2.0\n";
  await writeFile(path.join(edited, "charts", "demo", "Chart.yaml"), chartYaml);
  const chart = lock.charts.find((c) => c.name === "demo");
  const entry = chart?.files?.find((x) => x.path === "Chart.yaml");
  const [git, conf, release] = [lock.git[0], lock.files.find((x) => x.path === "conf.yml"), lock.releases[0]];
  if (!chart?.files || !entry || !git || !conf || !release) return t.fail(JSON.stringify(lock));
  Object.assign(entry, {
    size: chartYaml.length,
    sha256: await sha256File(path.join(edited, "charts", "demo", "Chart.yaml")),
  });
  chart.files.push({ path: "templates/extra.yaml", size: 3, sha256: "1".repeat(64), mode: 0o644 });
  const [oldCommit, oldGitSha] = [git.commit, git.sha256];
  Object.assign(git, { commit: f.repo.commits[0], sha256: "2".repeat(64) });
  Object.assign(conf, { size: conf.size + 1, sha256: "3".repeat(64) });
  release.namespace = "apps-2";
  await writeFile(lockFile, JSON.stringify(lock));
  const valuesFile = path.join(edited, ...lock.values.split("/"));
  const values = JSON.parse(await readFile(valuesFile, "utf8")) as Record<string, unknown>;
  await writeFile(valuesFile, JSON.stringify({ ...values, replicas: 3, password: "hunter2" }));

  const r = await runCli(["--json", "diff", f.old, edited]);
  t.is(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as DiffReport;
  t.deepEqual(report.charts, {
    added: [],
    removed: [],
    changed: [
      {
        name: "demo",
        version: { old: "0.1.0", new: "0.2.0" },
        files: { added: ["templates/extra.yaml"], removed: [], changed: ["Chart.yaml"] },
      },
    ],
  });
  t.deepEqual(report.releases.changed, [
    { key: "demo", fields: { namespace: { old: "apps", new: "apps-2" } } },
  ]);
  t.deepEqual(report.git.changed, [
    {
      key: git.archive,
      fields: {
        commit: { old: oldCommit, new: f.repo.commits[0] },
        sha256: { old: oldGitSha, new: "2".repeat(64) },
      },
    },
  ]);
  t.deepEqual(
    report.files.changed.map((c) => [c.key, Object.keys(c.fields)]),
    [["conf.yml", ["sha256", "size"]]],
  );
  t.deepEqual(report.values, {
    compared: true,
    added: ["password"],
    removed: [],
    changed: ["replicas"],
    siteValues: { added: [], removed: [] },
  });
  t.deepEqual(report.images, { added: [], removed: [], retagged: [], changed: [] });

  const human = await runCli(["diff", f.old, edited]);
  t.is(human.code, 1);
  for (const line of [
    "\ncharts\n  changed  demo  version 0.1.0 → 0.2.0\n             added    templates/extra.yaml\n             changed  Chart.yaml\n",
    "\nreleases\n  changed  demo  namespace apps → apps-2\n",
    `\ngit archives\n  changed  ${git.archive}  commit ${oldCommit.slice(0, 12)} → ${(f.repo.commits[0] ?? "").slice(0, 12)}, sha256 ${oldGitSha.slice(0, 12)} → 222222222222\n`,
    "\nvalues\n  added    password\n  changed  replicas\n",
  ])
    t.true(human.stdout.includes(line), `${line}\nin:\n${human.stdout}`);
  t.regex(
    human.stdout,
    /\n1 git archive changed, 1 file changed, 1 chart changed, 1 release changed, 2 template values changed\n$/,
  );
  t.false(`${r.stdout}${human.stdout}`.includes("hunter2"), "a value is never printed");
});
