/**
 * `bundle` as one executable (scripts/build-exe.mjs, `npm run build:exe`): Node single-executable
 * applications for linux x64 and arm64. The executables are built once per run from the current
 * sources into a temp folder (the pinned Node tarballs are cached in .tools/sea), then driven like
 * a user would on a machine without Node.js: PATH holds one empty folder, so no `node` (nor
 * anything else) can be found, and each command runs from a folder of its own.
 */
import test, { type ExecutionContext } from "ava";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, open, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startRegistry } from "./helpers/registry.js";
import { seedStandardImages } from "./helpers/images.js";
import { assertSiteHolds, siteFileServer } from "./helpers/offlineSite.js";
import { sha256File } from "../src/stages/files.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const BUILD_SCRIPT = path.join(REPO, "scripts/build-exe.mjs");
const X64 = "bundle-linux-x64";
const ARM64 = "bundle-linux-arm64";

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let built: { dir: string; root: string } | undefined;

test.before(async (t) => {
  t.timeout(15 * 60_000, "building the executables");
  const root = await mkdtemp(path.join(os.tmpdir(), "bundle-exe-"));
  const dir = path.join(root, "build");
  const started = Date.now();
  const r = await run(process.execPath, [BUILD_SCRIPT, "--quiet", "--outdir", dir], {
    cwd: REPO,
    env: process.env,
  });
  if (r.code !== 0) throw new Error(`build-exe failed:\n${r.stderr}${r.stdout}`);
  const sizes = await Promise.all([X64, ARM64].map(async (f) => (await stat(path.join(dir, f))).size));
  t.log(
    `built ${X64} (${mib(sizes[0]!)}) and ${ARM64} (${mib(sizes[1]!)}) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  built = { dir, root };
});

test.after.always(async () => {
  if (built) await rm(built.root, { recursive: true, force: true });
});

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

function builtDir(): string {
  if (!built) throw new Error("test.before did not build the executables");
  return built.dir;
}

/** PATH is one empty folder: neither node nor any other program can be found. */
function noNodeEnv(bin: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: bin, HOME: path.dirname(bin), TMPDIR: os.tmpdir() };
  return env;
}

function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: opts.env, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end("");
  });
}

/** An empty work folder and an empty PATH folder; `bundle` runs the executable `exe` from there. */
async function offline(t: ExecutionContext, exe = path.join(builtDir(), X64)) {
  const root = await mkdtemp(path.join(os.tmpdir(), "bundle-exe-run-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const dir = path.join(root, "work");
  const bin = path.join(root, "bin");
  await mkdir(dir);
  await mkdir(bin);
  const env = noNodeEnv(bin);
  return { root, dir, bundle: (...args: string[]) => run(exe, args, { cwd: dir, env }) };
}

test("the amd64 executable runs with no node on PATH: --help, --version, lint, a usage error exits 2", async (t) => {
  const { dir, root, bundle } = await offline(t);
  t.false(existsSync(path.join(root, "bin", "node")));
  const help = await bundle("--help");
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /^Usage: bundle/m);
  for (const cmd of ["prepare", "upload", "deploy", "serve", "verify", "inspect", "lint"]) {
    t.regex(help.stdout, new RegExp(`^\\s+${cmd}\\b`, "m"), `--help lists ${cmd}`);
  }
  t.is(help.stderr, "", "no experimental-feature warning");
  const prepareHelp = await bundle("prepare", "--help");
  t.regex(prepareHelp.stdout, /--with-tool/);

  const version = await bundle("--version");
  t.is(version.code, 0, version.stderr);
  const pkg = JSON.parse(await readFile(path.join(REPO, "package.json"), "utf8")) as { version: string };
  t.is(version.stdout.trim(), pkg.version);

  await writeFile(path.join(dir, "bundle.yml"), "name: demo\nimages:\n  - redis:4.0\n");
  const lint = await bundle("lint", "-f", "bundle.yml");
  t.is(lint.code, 0, lint.stderr + lint.stdout);
  t.regex(lint.stdout, /bundle "demo": 1 images/);
  await writeFile(path.join(dir, "bad.yml"), "name: demo\nimgaes:\n  - redis:4.0\n");
  const bad = await bundle("lint", "-f", "bad.yml");
  t.is(bad.code, 2, bad.stderr);
  t.regex(bad.stderr, /bad\.yml:2:\d+.*imgaes/);
  t.notRegex(bad.stderr, /\n\s+at /, "no stack trace");

  const usage = await bundle("no-such-command");
  t.is(usage.code, 2, usage.stderr);
  t.deepEqual((await readdir(dir)).sort(), ["bad.yml", "bundle.yml"], "nothing written beside");
});

/** Where Debian's cross packages (libc6-arm64-cross, libstdc++6-arm64-cross, …) put arm64's libraries. */
const ARM64_SYSROOT = "/usr/aarch64-linux-gnu";

test("the arm64 executable runs --help under qemu-user-static", async (t) => {
  // Each file is a program for its own machine: the ELF header's e_machine.
  t.is((await readHeader(path.join(builtDir(), ARM64))).readUInt16LE(18), 183, "EM_AARCH64");
  t.is((await readHeader(path.join(builtDir(), X64))).readUInt16LE(18), 62, "EM_X86_64");
  const qemu = "/usr/bin/qemu-aarch64-static";
  if (!existsSync(qemu) || !existsSync(path.join(ARM64_SYSROOT, "lib", "libstdc++.so.6"))) {
    t.log(
      `not run: needs ${qemu} (qemu-user-static) and arm64's libraries in ${ARM64_SYSROOT} ` +
        "(libc6-arm64-cross, libstdc++6-arm64-cross, libgcc-s1-arm64-cross); scripts/install-deps.sh installs them",
    );
    return;
  }
  const { dir } = await offline(t);
  const env = noNodeEnv(dir);
  const r = await run(qemu, ["-L", ARM64_SYSROOT, path.join(builtDir(), ARM64), "--help"], { cwd: dir, env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^Usage: bundle/m);
  t.regex(r.stdout, /^\s+prepare\b/m);
  t.is(r.stderr, "");
});

async function readHeader(file: string): Promise<Buffer> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(20);
    await fh.read(buf, 0, 20, 0);
    return buf;
  } finally {
    await fh.close();
  }
}

test("the amd64 executable prepares and uploads with no node on PATH; the site holds the source's digests", async (t) => {
  const { dir, root, bundle } = await offline(t);
  const source = await startRegistry();
  t.teardown(() => source.stop());
  const site = await startRegistry();
  t.teardown(() => site.stop());
  const image = (await seedStandardImages(source)).ociIndex;
  const canary = path.join(root, "canary.txt");
  await writeFile(canary, "untouched\n");

  await writeFile(path.join(dir, "bundle.yml"), `name: demo\nimages:\n  - ${image.ref}\n`);
  const prepare = await bundle("--json", "prepare", "-f", "bundle.yml", "-o", "out");
  t.is(prepare.code, 0, prepare.stderr);
  const result = JSON.parse(prepare.stdout) as { bytesMoved: number; images: { digest: string }[] };
  t.true(result.bytesMoved > 0);
  t.is(result.images[0]?.digest, image.digest);

  const server = await siteFileServer(t, root, path.join(dir, "token"));
  const upload = await bundle(
    "--json",
    "upload",
    "out",
    "--registry",
    site.host,
    "--fileserver",
    server.url,
    "--token-file",
    "token",
  );
  t.is(upload.code, 0, upload.stderr);
  await assertSiteHolds(t, site.host, "teleinfra/multi-oci:v1", image);
  t.is(await readFile(canary, "utf8"), "untouched\n");
  t.deepEqual((await readdir(dir)).sort(), ["bundle.yml", "out", "token"]);
});

test("prepare --with-tool carries both executables with their sha256 in the lock; verify passes and catches a changed byte", async (t) => {
  const { dir, bundle } = await offline(t);
  await writeFile(path.join(dir, "bundle.yml"), "name: demo\n");
  const prepare = await bundle("prepare", "-f", "bundle.yml", "-o", "out", "--with-tool");
  t.is(prepare.code, 0, prepare.stderr);
  const out = path.join(dir, "out");
  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as {
    files: { path: string; size: number; sha256: string }[];
  };
  for (const name of [X64, ARM64]) {
    const original = path.join(builtDir(), name);
    const carried = path.join(out, "files", "tool", name);
    const entry = lock.files.find((f) => f.path === `tool/${name}`);
    const want = {
      path: `tool/${name}`,
      size: (await stat(original)).size,
      sha256: await sha256File(original),
    };
    t.deepEqual(entry, want, `the lock lists tool/${name}`);
    t.is(await sha256File(carried), want.sha256, `files/tool/${name} is the built file`);
    t.is((await stat(carried)).mode & 0o777, 0o755);
  }

  // A second run finds both copies as they were: nothing copied again (250 MB), the same lock.
  const mtimes = async () =>
    Promise.all([X64, ARM64].map(async (n) => (await stat(path.join(out, "files", "tool", n))).mtimeMs));
  const first = await mtimes();
  const again = await bundle("prepare", "-f", "bundle.yml", "-o", "out", "--with-tool");
  t.is(again.code, 0, again.stderr);
  t.deepEqual(await mtimes(), first, "not copied again");
  t.deepEqual(JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")), lock);

  const inspect = await bundle("inspect", "out");
  t.is(inspect.code, 0, inspect.stderr);
  t.regex(inspect.stdout, new RegExp(`tool/${X64}\\s+1\\d\\d MB`));
  t.regex(inspect.stdout, new RegExp(`tool/${ARM64}\\s+1\\d\\d MB`));
  const verify = await bundle("verify", "out");
  t.is(verify.code, 0, verify.stderr + verify.stdout);

  // The carried executable is the tool on the offline side: it runs from the bundle itself.
  const carriedRun = await run(path.join(out, "files", "tool", X64), ["verify", "out"], {
    cwd: dir,
    env: noNodeEnv(path.join(dir, "no-bin")),
  });
  t.is(carriedRun.code, 0, carriedRun.stderr);

  // One byte changed in the arm64 copy: verify names it and fails the work (exit 1).
  const fh = await open(path.join(out, "files", "tool", ARM64), "r+");
  await fh.write(Buffer.from([0x42]), 0, 1, 4096);
  await fh.close();
  const broken = await bundle("verify", "out");
  t.is(broken.code, 1, broken.stdout);
  t.regex(broken.stderr + broken.stdout, new RegExp(`files/tool/${ARM64}`));
});

test("prepare --with-tool from an executable whose arm64 twin is not beside it exits 2 naming the missing file", async (t) => {
  const alone = await mkdtemp(path.join(os.tmpdir(), "bundle-exe-alone-"));
  t.teardown(() => rm(alone, { recursive: true, force: true }));
  await copyFile(path.join(builtDir(), X64), path.join(alone, X64));
  const { dir, bundle } = await offline(t, path.join(alone, X64));
  await writeFile(path.join(dir, "bundle.yml"), "name: demo\n");
  const r = await bundle("prepare", "-f", "bundle.yml", "-o", "out", "--with-tool");
  t.is(r.code, 2, r.stderr);
  t.regex(
    r.stderr,
    new RegExp(`--with-tool: ${path.join(alone, ARM64).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} missing`),
  );
  t.notRegex(r.stderr, /\n\s+at /, "no stack trace");
});
