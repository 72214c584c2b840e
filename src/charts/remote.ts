/**
 * A chart from a Helm repository or an OCI registry as the bundle carries it: the original
 * archive as `charts/<name>-<version>.tgz`, unpacked to `charts/<name>/` (so overlays, `images`,
 * lint, the deploy proof and audit see a folder like any other), and the subcharts its
 * Chart.yaml takes from repositories fetched into `charts/<name>/charts/`, each pinned in the lock.
 * When the folder ends up other than the archive (a subchart fetched, an overlay), package.ts
 * packages the folder in the archive's place, for upload to push what deploy installs.
 */
import { chmod, lstat, mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { EXACT_VERSION } from "../config/native.js";
import type { RemoteChartSource } from "../config/model.js";
import type { LockChart, LockChartDependency } from "../bundle/lock.js";
import { DEFAULT_MAX_DOWNLOAD } from "../files/download.js";
import { BundleError, formatPos, InputError, WorkError, type SourcePos } from "../util/errors.js";
import { listFiles } from "../util/files.js";
import { permissionBits } from "../util/paths.js";
import type { Reporter } from "../util/reporter.js";
import { fetchChart, type FetchOptions, type Pin } from "./fetch.js";
import { readChartFile } from "./metadata.js";

export interface RemoteChartOptions extends FetchOptions {
  /** The bundle folder. */
  dir: string;
  /** The chart's entry in the lock of an earlier prepare into the same folder. */
  previous?: LockChart;
  out: Reporter;
}

const EARLIER = "bundle.lock.json of an earlier prepare into this folder";

export async function prepareRemoteChart(
  name: string,
  source: RemoteChartSource,
  at: SourcePos,
  opts: RemoteChartOptions,
): Promise<LockChart> {
  const got = await fetchChart(
    source,
    [...definitionPin(source, at), ...earlierPins(source, opts.previous)],
    opts,
  );
  const chartDir = path.join(opts.dir, "charts", name);
  let version: string;
  try {
    await unpackChart(got.file, chartDir, got.url, opts.downloads.maxBytes ?? DEFAULT_MAX_DOWNLOAD);
    version = await chartVersion(opts.dir, chartDir, source.version, got.url);
  } catch (err) {
    await rm(got.file, { force: true });
    throw err;
  }
  const archive = `charts/${name}-${source.version}.tgz`;
  await rename(got.file, path.join(opts.dir, ...archive.split("/")));
  const dependencies = await fetchDependencies(chartDir, { chain: [`${name} ${version}`] }, opts);
  opts.out.info(
    `  ✔ chart ${name} ${version} from ${got.url} (sha256 ${got.sha256.slice(0, 12)}) → charts/${name}/`,
  );
  return {
    name,
    path: `charts/${name}`,
    version,
    archive: { path: archive, size: got.size, sha256: got.sha256 },
    origin: { ...got.origin, ...(dependencies.length > 0 ? { dependencies } : {}) },
  };
}

function definitionPin(source: RemoteChartSource, at: SourcePos): Pin[] {
  const by = `the pin at ${formatPos(at)}`;
  if (source.kind === "repo") return source.sha256 ? [{ sha256: source.sha256, by }] : [];
  return source.digest ? [{ digest: source.digest, by }] : [];
}

/** What an earlier prepare recorded for the same chart and version: the bytes must not change. */
function earlierPins(source: RemoteChartSource, previous: LockChart | undefined): Pin[] {
  const o = previous?.origin;
  if (!o || o.version !== source.version) return [];
  if (o.kind === "repo" && source.kind === "repo" && o.url === source.url && o.name === source.chart)
    return [{ sha256: o.sha256, by: EARLIER }];
  if (o.kind === "oci" && source.kind === "oci" && o.ref === source.ref)
    return [
      { digest: o.digest, by: EARLIER },
      { sha256: o.sha256, by: EARLIER },
    ];
  return [];
}

const SAFE_TYPES = new Set(["File", "OldFile", "ContiguousFile", "Directory"]);

/**
 * Unpacks a chart archive into `dest` through a work folder renamed at the end: the top folder
 * stripped, only files and folders under that one top folder, at most `maxBytes` in all,
 * permission bits only. Anything else (links, devices, paths out) refuses the whole archive.
 */
export async function unpackChart(
  archive: string,
  dest: string,
  what: string,
  maxBytes: number,
): Promise<void> {
  const tmp = `${dest}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const refused: string[] = [];
  let top: string | undefined;
  let total = 0;
  try {
    const tar = await import("tar");
    await tar.x({
      file: archive,
      cwd: tmp,
      strict: true,
      preserveOwner: false,
      strip: 1,
      filter: (p, entry) => {
        const e = entry as { type?: string; size?: number };
        const parts = p.split("/").filter((s) => s !== "");
        top ??= parts[0];
        total += e.size ?? 0;
        const ok =
          SAFE_TYPES.has(e.type ?? "") &&
          !p.startsWith("/") &&
          parts[0] === top &&
          !parts.some((s) => s === ".." || s.includes("\\")) &&
          total <= maxBytes;
        if (!ok) refused.push(total > maxBytes ? `more than ${maxBytes} bytes unpacked` : `${p} (${e.type})`);
        return ok;
      },
    });
    if (refused.length > 0)
      throw new WorkError(
        `${what}: refusing the chart archive: ${refused.slice(0, 3).join(", ")}; a chart holds only files and folders under one top folder`,
      );
    for (const rel of await listFiles(tmp)) {
      const file = path.join(tmp, rel);
      await chmod(file, permissionBits((await stat(file)).mode));
    }
    await rm(dest, { recursive: true, force: true });
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (err instanceof BundleError) throw err;
    throw new WorkError(`${what}: not a chart archive (${(err as Error).message})`);
  }
}

/** A chart's Chart.yaml or Chart.lock through the one parser, named by its path in the bundle; problems are exit 1 naming `what`. */
function readChart<K extends "Chart.yaml" | "Chart.lock">(
  dir: string,
  chartDir: string,
  file: K,
  what: string,
) {
  const full = path.join(chartDir, file);
  return readChartFile(file, full, { where: path.relative(dir, full).split(path.sep).join("/"), from: what });
}

/** The Chart.yaml's version, which must be the one asked for (a leading `v` aside). */
async function chartVersion(dir: string, chartDir: string, asked: string, what: string): Promise<string> {
  const meta = await readChart(dir, chartDir, "Chart.yaml", what);
  if (meta === undefined)
    throw new WorkError(`${what}: not a chart archive (no Chart.yaml under its top folder)`);
  const version = meta.version ?? "";
  if (version.replace(/^v/, "") !== asked.replace(/^v/, ""))
    throw new WorkError(`${what}: its Chart.yaml says version ${version || "(none)"}, not ${asked}`);
  return version;
}

interface Dependency {
  name: string;
  version: string;
  repository: string;
}

/**
 * The Chart.yaml's dependencies, each version from Chart.lock when it has one, else the
 * Chart.yaml's, which must then be exact: a range would pick whatever is newest at prepare.
 */
async function dependenciesOf(dir: string, chartDir: string, what: string): Promise<Dependency[]> {
  const list = (await readChart(dir, chartDir, "Chart.yaml", what))?.dependencies ?? [];
  const locked = (await readChart(dir, chartDir, "Chart.lock", what))?.dependencies ?? [];
  return list.map((d) => {
    const name = d.name;
    const repository = d.repository ?? "";
    const pinned = locked.find((l) => l.name === name && (l.repository ?? "") === repository)?.version;
    const version = pinned ?? d.version ?? "";
    if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name))
      throw new WorkError(`${what}: its Chart.yaml has a dependency whose name is not a plain name`);
    const remote = /^(https?|oci):\/\//.test(repository);
    if (remote && /^[a-z]+:\/\/[^/]*@/i.test(repository))
      throw new WorkError(
        `${what}: dependency ${name} names its repository with a user or password, which the lock would keep; ` +
          "give credentials as for images (docker login, or --username with --password-stdin)",
      );
    if (remote && !EXACT_VERSION.test(version))
      throw new InputError(
        `${what}: dependency ${name} asks for version "${version}" of ${repository}, a range and no Chart.lock to pin it; ` +
          "give the chart a Chart.lock (helm dependency update) or an exact version",
      );
    return { name, version, repository };
  });
}

/** Subcharts of subcharts deeper than this are refused: real charts nest two or three levels. */
export const MAX_SUBCHART_DEPTH = 8;

/**
 * Where the walk down a chart's subcharts is: the charts above, as `name version`, for the cycle
 * guard and messages, and the subchart folders from the top chart (`lib/common`) for the lock.
 */
interface Walk {
  chain: string[];
  parent?: string;
}

/**
 * Subcharts from http(s) or OCI repositories, fetched unless the archive holds them; file:// ones
 * must be there. Each subchart's own subcharts are walked the same way, down to MAX_SUBCHART_DEPTH.
 */
async function fetchDependencies(
  chartDir: string,
  walk: Walk,
  opts: RemoteChartOptions,
): Promise<LockChartDependency[]> {
  const out: LockChartDependency[] = [];
  const what = `chart ${walk.chain.join(" → ")}`;
  for (const dep of await dependenciesOf(opts.dir, chartDir, what)) {
    const chain = [...walk.chain, `${dep.name} ${dep.version}`];
    if (walk.chain.includes(`${dep.name} ${dep.version}`))
      throw new WorkError(`chart ${chain.join(" → ")}: the subcharts form a cycle`);
    if (chain.length > MAX_SUBCHART_DEPTH + 1)
      throw new WorkError(
        `chart ${chain.join(" → ")}: subcharts nested more than ${MAX_SUBCHART_DEPTH} deep`,
      );
    const held = await heldAs(chartDir, dep);
    if (!held) out.push(await fetchDependency(chartDir, dep, what, walk.parent, opts));
    const parent = walk.parent ? `${walk.parent}/${dep.name}` : dep.name;
    out.push(...(await subchartDependencies(chartDir, dep, { chain, parent }, opts)));
  }
  return out;
}

/** How the chart's charts/ folder holds a subchart: unpacked, packed, as something else, or not at all. */
async function heldAs(
  chartDir: string,
  dep: Dependency,
): Promise<"folder" | "archive" | "other" | undefined> {
  const [archive, folder] = await Promise.all(
    [`${dep.name}-${dep.version}.tgz`, dep.name].map((n) =>
      lstat(path.join(chartDir, "charts", n)).then(
        (s) => s,
        () => undefined,
      ),
    ),
  );
  if (folder?.isDirectory()) return "folder";
  if (archive?.isFile()) return "archive";
  return archive || folder ? "other" : undefined;
}

/**
 * A subchart's own subcharts. A packed one is unpacked to look inside; it stays packed (the
 * bytes its pin names) unless something had to be fetched into it, then it stays a folder.
 */
async function subchartDependencies(
  chartDir: string,
  dep: Dependency,
  walk: Walk,
  opts: RemoteChartOptions,
): Promise<LockChartDependency[]> {
  const folder = path.join(chartDir, "charts", dep.name);
  const held = await heldAs(chartDir, dep);
  if (held === "folder") return fetchDependencies(folder, walk, opts);
  if (held !== "archive") return [];
  const archive = path.join(chartDir, "charts", `${dep.name}-${dep.version}.tgz`);
  const max = opts.downloads.maxBytes ?? DEFAULT_MAX_DOWNLOAD;
  await unpackChart(archive, folder, `chart ${walk.chain.join(" → ")}`, max);
  let fetched: LockChartDependency[];
  try {
    fetched = await fetchDependencies(folder, walk, opts);
  } catch (err) {
    await rm(folder, { recursive: true, force: true });
    throw err;
  }
  // Helm would load both: one of the two goes.
  await rm(fetched.length > 0 ? archive : folder, { recursive: true, force: true });
  return fetched;
}

/** One subchart from its repository into `charts/<dep>-<version>.tgz`, pinned by an earlier prepare's lock. */
async function fetchDependency(
  chartDir: string,
  dep: Dependency,
  what: string,
  parent: string | undefined,
  opts: RemoteChartOptions,
): Promise<LockChartDependency> {
  const repo = dep.repository;
  if (!/^(https?|oci):\/\//.test(repo))
    throw new WorkError(
      `${what}: dependency ${dep.name} (${repo || "no repository"}) is not in the chart's charts/ folder` +
        (repo.startsWith("file://") || repo === ""
          ? ""
          : "; write its repository as an https:// or oci:// URL"),
    );
  const source: RemoteChartSource = repo.startsWith("oci://")
    ? { kind: "oci", ref: `${repo.replace(/\/+$/, "")}/${dep.name}`, version: dep.version }
    : { kind: "repo", url: repo, chart: dep.name, version: dep.version };
  const before = opts.previous?.origin?.dependencies?.find(
    (d) => d.name === dep.name && d.version === dep.version && d.repository === repo && d.parent === parent,
  );
  const got = await fetchChart(source, before ? [{ sha256: before.sha256, by: EARLIER }] : [], opts);
  await mkdir(path.join(chartDir, "charts"), { recursive: true });
  await rename(got.file, path.join(chartDir, "charts", `${dep.name}-${dep.version}.tgz`));
  opts.out.info(`  ✔ dependency ${dep.name} ${dep.version} of ${what} from ${got.url}`);
  return {
    name: dep.name,
    version: dep.version,
    repository: repo,
    sha256: got.sha256,
    ...(got.origin.kind === "oci" ? { digest: got.origin.digest } : {}),
    ...(parent ? { parent } : {}),
  };
}
