/**
 * The standalone `bundle` (scripts/build-standalone.mjs): one file that a plain `node` runs from a
 * folder with no node_modules anywhere above it — how the tool itself crosses the air gap. The
 * test builds it from the current sources straight into an empty temp folder, so it never runs a
 * stale dist/standalone/bundle.mjs, then drives it like a user: --help, lint, prepare → upload.
 */
import test, { type ExecutionContext } from "ava";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startRegistry } from "./helpers/registry.js";
import { seedStandardImages } from "./helpers/images.js";
import { assertSiteHolds, siteFileServer } from "./helpers/offlineSite.js";

/** The repository's top folder (this file runs from dist/test). */
const REPO = fileURLToPath(new URL("../../", import.meta.url));
const BUILD_SCRIPT = path.join(REPO, "scripts/build-standalone.mjs");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** An environment that cannot lead node back to the repository's node_modules. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key === "NODE_PATH" || key === "NODE_OPTIONS" || key.startsWith("npm_")) delete env[key];
  }
  return env;
}

function run(cmd: string, args: string[], opts: { cwd: string; input?: string }): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: cleanEnv(), maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(opts.input ?? "");
  });
}

/** Every folder from `dir` up to the root that holds a node_modules. */
function nodeModulesAbove(dir: string): string[] {
  const found: string[] = [];
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (existsSync(path.join(d, "node_modules"))) found.push(d);
    if (path.dirname(d) === d) return found;
  }
}

/** An empty temp folder holding only the freshly built bundle.mjs. */
async function standalone(
  t: ExecutionContext,
): Promise<{ dir: string; bundle: (...a: string[]) => Promise<Result> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-standalone-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  t.deepEqual(nodeModulesAbove(dir), [], "no node_modules may sit above the temp folder");
  const file = path.join(dir, "bundle.mjs");
  const built = await run(process.execPath, [BUILD_SCRIPT, "--quiet", "--outfile", file], { cwd: REPO });
  if (built.code !== 0) throw new Error(`build-standalone failed:\n${built.stderr}${built.stdout}`);
  t.log(`bundle.mjs: ${((await stat(file)).size / 1024 / 1024).toFixed(2)} MiB`);
  return {
    dir,
    bundle: (...args: string[]) => run(process.execPath, ["bundle.mjs", ...args], { cwd: dir }),
  };
}

test("the standalone bundle runs alone: --help, --version, lint, and a usage error exits 2", async (t) => {
  const { dir, bundle } = await standalone(t);

  const help = await bundle("--help");
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /^Usage: bundle/m);
  for (const cmd of ["prepare", "upload", "deploy", "serve", "load", "images", "audit", "lint"]) {
    t.regex(help.stdout, new RegExp(`^\\s+${cmd}\\b`, "m"), `--help lists ${cmd}`);
  }
  const prepareHelp = await bundle("prepare", "--help");
  t.is(prepareHelp.code, 0, prepareHelp.stderr);
  t.regex(prepareHelp.stdout, /Examples:/);

  const version = await bundle("--version");
  t.is(version.code, 0, version.stderr);
  const pkg = JSON.parse(await readFile(path.join(REPO, "package.json"), "utf8")) as { version: string };
  t.is(version.stdout.trim(), pkg.version, "the version inlined from package.json");

  // The schema files are inlined: lint validates against them (a typo is caught by the schema).
  await writeFile(path.join(dir, "bundle.yml"), "name: demo\nimages:\n  - redis:4.0\n");
  const lint = await bundle("lint", "-f", "bundle.yml");
  t.is(lint.code, 0, lint.stderr + lint.stdout);
  await writeFile(path.join(dir, "bad.yml"), "name: demo\nimgaes:\n  - redis:4.0\n");
  const bad = await bundle("lint", "-f", "bad.yml");
  t.is(bad.code, 2, bad.stderr);
  t.regex(bad.stderr, /imgaes/);

  const usage = await bundle("no-such-command");
  t.is(usage.code, 2, usage.stderr);

  // Built-ins come through require(): an ES import of node:http would load Node's internal undici
  // at every start. The only ES imports left are the banner's three.
  const text = await readFile(path.join(dir, "bundle.mjs"), "utf8");
  const imports = [...text.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
  t.deepEqual(imports, ["node:module", "node:url", "node:path"]);
  t.regex(text, /require\("node:http"\)/);
});

test("the standalone bundle prepares with --with-tool; the carried copy uploads with the source's digest", async (t) => {
  const { dir, bundle } = await standalone(t);
  const source = await startRegistry();
  t.teardown(() => source.stop());
  const site = await startRegistry();
  t.teardown(() => site.stop());
  const images = await seedStandardImages(source);
  const image = images.ociIndex;

  await writeFile(path.join(dir, "bundle.yml"), `name: demo\nimages:\n  - ${image.ref}\n`);
  const out = path.join(dir, "out");
  const prepare = await bundle("--json", "prepare", "-f", "bundle.yml", "-o", out, "--with-tool");
  t.is(prepare.code, 0, prepare.stderr);
  t.true((JSON.parse(prepare.stdout) as { bytesMoved: number }).bytesMoved > 0);
  const carried = await readFile(path.join(out, "files", "bundle.mjs"));
  t.deepEqual(carried, await readFile(path.join(dir, "bundle.mjs")), "the bundle carries the tool itself");

  // The offline side: nothing but node and the carried file.
  const offline = path.join(dir, "offline");
  await mkdir(offline);
  await writeFile(path.join(offline, "bundle.mjs"), carried);
  const server = await siteFileServer(t, dir, path.join(offline, "token"));
  const upload = await run(
    process.execPath,
    [
      "bundle.mjs",
      "--json",
      "upload",
      out,
      "--registry",
      site.host,
      "--fileserver",
      server.url,
      "--token-file",
      "token",
    ],
    { cwd: offline },
  );
  t.is(upload.code, 0, upload.stderr);

  await assertSiteHolds(t, site.host, "teleinfra/multi-oci:v1", image);
});
