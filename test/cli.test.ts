/** The command line itself: every command documented with an example, and SPEC.md's exit codes. */
import test from "ava";
import path from "node:path";
import { runCli, tempFiles } from "./helpers/cli.js";

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

test("usage errors exit 2: unknown command, unknown option, missing required option", async (t) => {
  const unknown = await runCli(["bogus"]);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown command 'bogus'/);
  const badOption = await runCli(["lint", "--nope"]);
  t.is(badOption.code, 2);
  t.regex(badOption.stderr, /unknown option '--nope'/);
  const missing = await runCli(["deploy", "dir", "--fileserver", "http://127.0.0.1:8003"]);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /required option '--registry <REG>' not specified/);
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
