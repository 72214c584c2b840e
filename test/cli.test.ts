/** The command line itself: every command documented with an example, and SPEC.md's exit codes. */
import test from "ava";
import { cp, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { REPO, runCli, tempFiles } from "./helpers/cli.js";

const COMMANDS = ["prepare", "upload", "deploy", "serve", "verify", "inspect", "images", "lint"];

test("bundle --help lists every command of SPEC.md", async (t) => {
  const r = await runCli(["--help"]);
  t.is(r.code, 0);
  for (const c of COMMANDS) t.regex(r.stdout, new RegExp(`^ {2}${c}\\b`, "m"));
});

test("bundle --help ends with examples of the whole job", async (t) => {
  const r = await runCli(["--help"]);
  t.regex(r.stdout, /^Examples:\n {2}\$ bundle lint -f bundle\.yml/m);
  for (const c of ["prepare", "inspect", "upload", "deploy"])
    t.regex(r.stdout, new RegExp(`^ {2}\\$ bundle ${c} `, "m"));
});

test("lint without -f where there is no bundle.yml says so and names -f", async (t) => {
  const { dir, cleanup } = await tempFiles({}, "empty");
  t.teardown(cleanup);
  const r = await runCli(["lint"], { cwd: dir });
  t.is(r.code, 2);
  t.is(r.stderr, `error: no bundle.yml in this folder (${dir}): name the definition with -f FILE\n`);
  const named = await runCli(["lint", "-f", "other.yml"], { cwd: dir });
  t.is(named.code, 2);
  t.is(named.stderr, "error: other.yml: no such file\n");
});

test("a bundle folder that does not exist is reported as such, one that is not a bundle as that", async (t) => {
  const { dir, cleanup } = await tempFiles({}, "empty");
  t.teardown(cleanup);
  const absent = path.join(dir, "no-such-bundle");
  for (const args of [
    ["inspect", absent],
    ["verify", absent],
    ["upload", absent, "--registry", "127.0.0.1:9"],
  ]) {
    const r = await runCli(args);
    t.is(r.code, 2, args.join(" "));
    t.is(r.stderr, `error: ${absent}: no such bundle folder or archive\n`, args.join(" "));
  }
  const notBundle = await runCli(["inspect", dir]);
  t.is(notBundle.code, 2);
  t.regex(notBundle.stderr, /is not a prepared bundle: bundle\.lock\.json is missing/);
});

for (const c of COMMANDS) {
  test(`bundle ${c} --help says what it does and shows an example`, async (t) => {
    const r = await runCli([c, "--help"]);
    t.is(r.code, 0);
    t.regex(r.stdout, new RegExp(`^Usage: bundle ${c}`, "m"));
    t.regex(r.stdout, /^Examples:\n {2}\$ bundle /m);
  });
}

test("usage errors exit 2: unknown command, unknown option, a flag the bundle needs", async (t) => {
  const unknown = await runCli(["bogus"]);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown command 'bogus'/);
  const badOption = await runCli(["lint", "--nope"]);
  t.is(badOption.code, 2);
  t.regex(badOption.stderr, /unknown option '--nope'/);
  // A bundle with images needs --registry: said before any work starts.
  const tmp = await tempFiles({});
  t.teardown(tmp.cleanup);
  await cp(path.join(REPO, "test/fixtures/audit/bundle"), tmp.dir, { recursive: true });
  const lockFile = path.join(tmp.dir, "bundle.lock.json");
  await writeFile(
    lockFile,
    JSON.stringify({ ...JSON.parse(await readFile(lockFile, "utf8")), releases: [] }),
  );
  const missing = await runCli(["deploy", tmp.dir, "--fileserver", "http://127.0.0.1:8003"]);
  t.is(missing.code, 2, missing.stderr);
  t.regex(missing.stderr, /the bundle carries 3 images: give --registry REG/);
});

test("--json and --quiet: the result alone on stdout", async (t) => {
  const r = await runCli(["--json", "lint", "-f", "test/fixtures/native/bundle.yml"]);
  t.is(r.code, 0, r.stderr);
  const data = JSON.parse(r.stdout) as {
    ok: boolean;
    images: { mirror: string }[];
    siteValuesToBind: string[];
  };
  t.true(data.ok);
  t.is(data.images[0]?.mirror, "teleinfra/redis:4.0");
  t.deepEqual(data.siteValuesToBind, ["IMG_REPO"]);
  const quiet = await runCli(["-q", "lint", "-f", "test/fixtures/native/bundle.yml"]);
  t.is(quiet.stderr, "");
  t.regex(quiet.stdout, /ok — bundle "demo"/);
});

test("bundle images lists a chart's images with what sets each, and compares with a definition", async (t) => {
  const r = await runCli([
    "--json",
    "images",
    "test/fixtures/chart-openwhisk-like",
    "-f",
    "test/fixtures/native/bundle.yml",
  ]);
  t.is(r.code, 0, r.stderr);
  const data = JSON.parse(r.stdout) as {
    images: { ref: string; valuesPath?: string }[];
    missing: unknown[];
    unused: string[];
  };
  t.true(
    data.images.some(
      (i) => i.ref === "docker.io/openwhisk/controller:ef725a6" && i.valuesPath === "controller.imageName",
    ),
  );
  t.true(data.unused.includes("docker.io/library/redis:4.0") === false, "redis:4.0 is used by the chart");
  t.true(data.missing.length > 0);
});

test("bundle images -f reads the chart with the values files of the definition's release", async (t) => {
  const tmp = await tempFiles({
    "bundle.yml": [
      "name: ow",
      "images: [redis:5.0]",
      "charts: [{ name: openwhisk, path: chart }]",
      "templates: [{ source: values.yml, dest: files/values.yml }]",
      "releases: [{ name: owdev, chart: openwhisk, values: [files/values.yml] }]",
    ].join("\n"),
    "values.yml": 'redis:\n  imageTag: "5.0"\nscheduler:\n  enabled: true\n',
  });
  t.teardown(tmp.cleanup);
  await cp(path.join(REPO, "test/fixtures/openwhisk-chart"), path.join(tmp.dir, "chart"), {
    recursive: true,
  });
  const r = await runCli(["--json", "images", "chart", "-f", "bundle.yml"], { cwd: tmp.dir });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /with the values files of release owdev: values\.yml/);
  const data = JSON.parse(r.stdout) as {
    images: { ref: string; valuesPath?: string; enabled?: boolean; file: string }[];
    missing: { ref: string }[];
    unused: string[];
  };
  const redis = data.images.find((i) => i.valuesPath === "redis.imageName");
  t.is(redis?.ref, "docker.io/library/redis:5.0", "the release's tag, not the chart's default");
  t.deepEqual(data.unused, []);
  t.false(data.missing.some((m) => m.ref.includes("redis")));
  const scheduler = data.images.find((i) => i.valuesPath === "scheduler.imageName");
  t.not(scheduler?.enabled, false, "the release turns the scheduler on");
});
