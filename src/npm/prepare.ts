/**
 * npm items: the dependencies of folders of a git archive, installed at prepare and carried as
 * one reproducible `.tar.gz` under files/, so the site's `npm install` in those folders finds
 * everything present and fetches nothing.
 *
 * For each folder, its package.json (and package-lock.json or npm-shrinkwrap.json, if the tree
 * has one) is read out of the git archive prepare already wrote, and installed in a folder of
 * its own under the bundle's `.partial/`: `npm ci` with a lockfile, `npm install` without
 * (lockfile version 2, which npm 6 and later read), scripts never run. npm reads its own
 * configuration (`npm_config_registry`, `~/.npmrc`, its cache) as it always does.
 *
 * The archive holds `<dir>/node_modules/…` and `<dir>/package-lock.json` of every folder, in
 * path order, every entry dated like the git archive's package.json (the commit's date), folders
 * 0755 and files 0644 or 0755, so the same installed tree gives the same bytes. A rerun with the
 * same package.json and lockfile digests (the lock's `key`) and the archive in place runs no npm.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  rmdir,
  stat,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import * as tar from "tar";
import type { NpmItem } from "../config/model.js";
import type { Lock, LockFile, LockNpm, LockNpmDir } from "../bundle/lock.js";
import type { Reporter } from "../util/reporter.js";
import { archivePrefix, packAtomic, sortPaths } from "../git/tarball.js";
import { formatPos, InputError, WorkError, type SourcePos } from "../util/errors.js";

const LOCKFILES = ["npm-shrinkwrap.json", "package-lock.json"] as const;

/** What the git archive holds for one folder. */
interface DirInput {
  dir: string;
  /** Where the definition names the folder. */
  at: SourcePos;
  packageJson: Buffer;
  /** The tree's lockfile: only with the folder's own package.json. */
  lockfile?: { name: (typeof LOCKFILES)[number]; data: Buffer };
}

export async function prepareNpm(
  item: NpmItem,
  dir: string,
  opts: { out: Reporter; previous?: Lock },
): Promise<{ entry: LockNpm; file: LockFile }> {
  const { inputs, mtime } = await readInputs(item, path.join(dir, "files", item.git));
  const key = inputKey(inputs);
  const outFile = path.join(dir, "files", item.path);
  const before = opts.previous?.npm?.find((n) => n.path === item.path && n.git === item.git && n.key === key);
  if (before && (await sizeOf(outFile)) === before.size) {
    opts.out.debug(
      `npm dependencies of ${item.git} unchanged (key ${key.slice(0, 12)}): files/${item.path} kept`,
    );
    return { entry: before, file: lockFile(before) };
  }

  await mkdir(path.join(dir, ".partial"), { recursive: true });
  const work = await mkdtemp(path.join(dir, ".partial", "npm-"));
  try {
    const root = path.join(work, "tree");
    const dirs: LockNpmDir[] = [];
    const entries: string[] = [];
    for (const input of inputs) {
      const folder = path.join(root, input.dir);
      await mkdir(folder, { recursive: true });
      await writeFile(path.join(folder, "package.json"), input.packageJson);
      if (input.lockfile) await writeFile(path.join(folder, input.lockfile.name), input.lockfile.data);
      await runNpm(item, input, folder);
      const lockName = input.lockfile?.name ?? "package-lock.json";
      const lockData = await readFile(path.join(folder, lockName)).catch(() => undefined);
      if (!lockData)
        throw new WorkError(`npm wrote no ${lockName} in ${item.git}: ${input.dir} (${formatPos(item.at)})`);
      const rel = (p: string) => (input.dir === "." ? p : `${input.dir}/${p}`);
      const modules = await walk(root, rel("node_modules"));
      entries.push(...modules, rel(lockName));
      dirs.push({
        dir: input.dir,
        packageJson: sha256(input.packageJson),
        lockfileGiven: input.lockfile !== undefined,
        packageLock: sha256(lockData),
        packages: countPackages(lockData),
      });
    }
    const written = await packAtomic(root, sortPaths(entries), mtime, outFile);
    const entry: LockNpm = { git: item.git, path: item.path, dirs, key, ...written };
    const total = dirs.reduce((n, d) => n + d.packages, 0);
    opts.out.info(
      `  ✔ npm dependencies of ${item.git}: ${dirs.map((d) => d.dir).join(", ")} (${total} packages) → files/${item.path}`,
    );
    return { entry, file: lockFile(entry) };
  } finally {
    await rm(work, { recursive: true, force: true });
    await rmdir(path.join(dir, ".partial")).catch(() => undefined);
  }
}

function lockFile(n: LockNpm): LockFile {
  return { path: n.path, size: n.size, sha256: n.sha256 };
}

/** Each folder's package.json and lockfile out of the git archive, and the date its entries carry. */
async function readInputs(item: NpmItem, archiveFile: string): Promise<{ inputs: DirInput[]; mtime: Date }> {
  const prefix = archivePrefix(item.git);
  const inTree = (d: string, name: string) => (d === "." ? `${prefix}/${name}` : `${prefix}/${d}/${name}`);
  const wanted = new Set<string>();
  for (const d of item.dirs) {
    wanted.add(inTree(d.dir, d.packageJson));
    if (d.packageJson === "package.json") for (const l of LOCKFILES) wanted.add(inTree(d.dir, l));
  }
  const found = new Map<string, { data: Buffer; mtime?: Date }>();
  const reads: Promise<void>[] = [];
  await tar.t({
    file: archiveFile,
    onReadEntry: (entry) => {
      if (entry.type !== "File" || !wanted.has(entry.path)) return;
      const chunks: Buffer[] = [];
      reads.push(
        new Promise((resolve, reject) => {
          entry.on("data", (c: Buffer) => chunks.push(c));
          entry.on("end", () => {
            found.set(entry.path, {
              data: Buffer.concat(chunks),
              ...(entry.mtime ? { mtime: entry.mtime } : {}),
            });
            resolve();
          });
          entry.on("error", reject);
        }),
      );
    },
  });
  await Promise.all(reads);
  const inputs: DirInput[] = [];
  let mtime: Date | undefined;
  for (const d of item.dirs) {
    const manifest = found.get(inTree(d.dir, d.packageJson));
    if (!manifest) {
      const where = d.dir === "." ? "the top of the tree" : `folder ${d.dir}`;
      throw new InputError(`${formatPos(d.at)} npm: ${item.git} has no ${d.packageJson} in ${where}`);
    }
    mtime ??= manifest.mtime;
    const lock = LOCKFILES.map((name) => ({ name, got: found.get(inTree(d.dir, name)) })).find((l) => l.got);
    inputs.push({
      dir: d.dir,
      at: d.at,
      packageJson: manifest.data,
      ...(lock?.got ? { lockfile: { name: lock.name, data: lock.got.data } } : {}),
    });
  }
  return { inputs, mtime: mtime ?? new Date(0) };
}

function inputKey(inputs: DirInput[]): string {
  const parts = inputs.map((i) => ({
    dir: i.dir,
    packageJson: sha256(i.packageJson),
    lockfile: i.lockfile ? { name: i.lockfile.name, sha256: sha256(i.lockfile.data) } : null,
  }));
  return sha256(JSON.stringify({ npmItem: 1, dirs: parts }));
}

/**
 * `npm ci` or `npm install` in `folder`. `--prefix` pins npm to that folder whatever the
 * environment says (under `npm run`, npm_config_* variables name the calling project).
 */
async function runNpm(item: NpmItem, input: DirInput, folder: string): Promise<void> {
  const common = ["--prefix", folder, "--ignore-scripts", "--no-audit", "--no-fund", "--no-workspaces"];
  const args = input.lockfile ? ["ci", ...common] : ["install", ...common, "--lockfile-version=2"];
  const env = { ...process.env, npm_config_update_notifier: "false" };
  const result = await new Promise<{ code: number | string | null; stderr: string; stdout: string }>(
    (resolve) => {
      execFile("npm", args, { cwd: folder, env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as NodeJS.ErrnoException).code ?? 1) : 0, stdout, stderr }),
      );
    },
  );
  if (result.code === 0) return;
  const place = `${item.git}: ${input.dir} (${formatPos(input.at)})`;
  if (result.code === "ENOENT")
    throw new WorkError(
      `npm is not installed or not on PATH; prepare needs it for the npm dependencies of ${place}`,
    );
  throw new WorkError(
    `npm ${args[0]} failed in ${place}:\n  ${npmErrors(result.stderr || result.stdout).join("\n  ")}`,
  );
}

/** npm's error lines without its prefix and the pointers to its log file. */
export function npmErrors(text: string): string[] {
  const lines = text
    .split("\n")
    .map((l) => /^npm (?:error|ERR!)\s?(.*)$/.exec(l)?.[1]?.trim())
    .filter((l): l is string => l !== undefined && l !== "")
    .filter((l) => !/complete log of this run|log files were written|^\/\S+\.log$/i.test(l))
    // npm's 404 advice, and the bare status lines around it
    .filter(
      (l) => !/^\d{3}$|^\d{3} (Note that you can also install from a|tarball, folder, http url)/.test(l),
    );
  const unique = [...new Set(lines)];
  return unique.length > 0
    ? unique.slice(0, 8)
    : [text.trim().split("\n").slice(-5).join(" ") || "no output"];
}

function countPackages(lockData: Buffer): number {
  try {
    const lock = JSON.parse(lockData.toString("utf8")) as {
      packages?: Record<string, unknown>;
      dependencies?: Record<string, unknown>;
    };
    if (lock.packages) return Object.keys(lock.packages).filter((k) => k !== "").length;
    return Object.keys(lock.dependencies ?? {}).length;
  } catch {
    return 0;
  }
}

/**
 * Every folder, file and symbolic link under `rel` (itself included), relative to `root`, with
 * modes normalized: folders 0755, files 0755 when anyone may run them, else 0644. Absent: none.
 */
async function walk(root: string, rel: string): Promise<string[]> {
  const info = await lstat(path.join(root, rel)).catch(() => undefined);
  if (!info) return [];
  if (info.isSymbolicLink()) return [rel];
  if (info.isFile()) {
    await chmod(path.join(root, rel), info.mode & 0o111 ? 0o755 : 0o644);
    return [rel];
  }
  if (!info.isDirectory()) return [];
  await chmod(path.join(root, rel), 0o755);
  const out = [rel];
  for (const name of await readdir(path.join(root, rel))) out.push(...(await walk(root, `${rel}/${name}`)));
  return out;
}

async function sizeOf(file: string): Promise<number | undefined> {
  return (await stat(file).catch(() => undefined))?.size;
}

function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}
