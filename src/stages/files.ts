/**
 * The file half of prepare: git archives, charts, pinned downloads and templates, written into
 * the bundle's files/, charts/ and templates/ and listed in the lock with their sha256. Work a
 * previous run already did (same URL and commit or pin, file present with its size) is skipped.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { cp, mkdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { listFiles } from "../util/files.js";
import type { Definition, GitItem, RemoteChartSource, TemplateItem } from "../config/model.js";
import type { RegistryClient } from "../registry/client.js";
import type { CredentialSource } from "../registry/credentials.js";
import { destPath } from "../config/model.js";
import { isSiteValue } from "../config/values.js";
import { templateVariables } from "../templates/variables.js";
import { download, type DownloadLimits } from "../files/download.js";
import type {
  Lock,
  LockChart,
  LockChartFile,
  LockFile,
  LockGit,
  LockNpm,
  LockTemplate,
} from "../bundle/lock.js";
import { writeAtomic, writeVerified } from "../util/cas.js";
import type { Reporter } from "../util/reporter.js";
import { InputError, type SourcePos } from "../util/errors.js";
import { resolveInside } from "../util/paths.js";

/** The git operations prepare needs (src/git). */
export interface GitOps {
  fetchCommit(item: GitItem, opts: { cacheDir: string }): Promise<{ repoDir: string; commit: string }>;
  writeArchive(
    repoDir: string,
    commit: string,
    outFile: string,
    opts: { prefix: string; submodules?: boolean },
  ): Promise<{ size: number; sha256: string }>;
  copyChart(repoDir: string, commit: string, subPath: string, destDir: string): Promise<void>;
}

export interface FilesResult {
  git: LockGit[];
  files: LockFile[];
  /** Only when the definition has npm items. */
  npm?: LockNpm[];
  charts: LockChart[];
  templates: LockTemplate[];
  values: string;
  valuesSize: number;
  valuesSha256: string;
}

export const VALUES_FILE = "templates/values.json";

export interface FilesOptions {
  out: Reporter;
  git: GitOps;
  cacheDir: string;
  previous?: Lock;
  tools?: CarriedTool[];
  downloads?: DownloadLimits;
  /** A client for the OCI registry a chart comes from, with the credentials images use. */
  chartRegistry?: (host: string) => RegistryClient;
  /** The `--mirror` of an OCI chart's registry, when it has one. */
  chartMirror?: (host: string) => RegistryClient | undefined;
  /** Credentials by host for a Helm repository that asks for a password. */
  chartCredentials?: CredentialSource;
}

export async function prepareFiles(def: Definition, dir: string, opts: FilesOptions): Promise<FilesResult> {
  const files: LockFile[] = [];
  for (const tool of opts.tools ?? []) files.push(await carryTool(dir, tool, opts.previous));
  const repos = new Map<string, { repoDir: string; commit: string }>();
  const git: LockGit[] = [];
  for (const item of def.git) {
    const { entry, repo } = await prepareGit(item, dir, opts);
    git.push(entry);
    repos.set(item.archive, repo);
    files.push({ path: item.archive, size: entry.size, sha256: entry.sha256, url: item.url });
  }
  const npm: LockNpm[] = [];
  for (const item of def.npm) {
    // Loaded only for npm items: it brings src/git, simple-git and tar.
    const { prepareNpm } = await import("../npm/prepare.js");
    const { entry, file } = await prepareNpm(item, dir, opts);
    npm.push(entry);
    files.push(file);
  }
  const charts = await prepareCharts(def, dir, repos, opts);
  for (const item of def.files) {
    const got = await prepareDownload(item, dir, opts);
    files.push(got, ...(item.extract ? await extractArchive(dir, got.path) : []));
  }
  const { templates, values } = await prepareTemplates(def, dir, files);
  // Listed after the templates: a chart's overlays rendered at prepare are part of it.
  for (const chart of charts) {
    chart.files = await chartFiles(dir, chart.path);
    // Packaged from what the lock lists, so the archive holds the overlays too.
    const { chartArchive } = await import("../charts/package.js");
    Object.assign(chart, await chartArchive(dir, chart, def.mirror, opts.out));
  }
  await pruneFiles(dir, new Set(files.map((f) => f.path)));
  return {
    git,
    ...(npm.length > 0 ? { npm } : {}),
    files: files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)), // code points: the same order in every locale
    charts,
    templates,
    values: VALUES_FILE,
    valuesSize: values.size,
    valuesSha256: values.sha256,
  };
}

async function prepareGit(
  item: GitItem,
  dir: string,
  opts: { out: Reporter; git: GitOps; cacheDir: string; previous?: Lock },
) {
  const repo = await opts.git.fetchCommit(item, { cacheDir: opts.cacheDir });
  const file = await resolveInside(dir, `files/${item.archive}`);
  const before = opts.previous?.git.find(
    (g) => g.url === item.url && g.commit === repo.commit && g.archive === item.archive,
  );
  if (before && (await sizeOf(file)) === before.size) return { entry: before, repo };
  const prefix = item.archive.replace(/\.tar\.gz$/, "");
  const written = await opts.git.writeArchive(repo.repoDir, repo.commit, file, {
    prefix,
    submodules: item.submodules,
  });
  opts.out.info(`  ✔ ${item.url} @ ${repo.commit.slice(0, 12)} → files/${item.archive}`);
  return { entry: { url: item.url, commit: repo.commit, archive: item.archive, ...written }, repo };
}

/** Every regular file of a chart folder with its size, sha256 and permission bits, sorted by path. */
async function chartFiles(dir: string, chartPath: string): Promise<LockChartFile[]> {
  const root = path.join(dir, ...chartPath.split("/"));
  const rels = (await listFiles(root)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: LockChartFile[] = [];
  for (const rel of rels) {
    const file = path.join(root, rel);
    const info = await stat(file);
    out.push({ path: rel, size: info.size, sha256: await sha256File(file), mode: info.mode & 0o777 });
  }
  return out;
}

async function prepareCharts(
  def: Definition,
  dir: string,
  repos: Map<string, { repoDir: string; commit: string }>,
  opts: FilesOptions,
): Promise<LockChart[]> {
  await rm(path.join(dir, "charts"), { recursive: true, force: true });
  const out: LockChart[] = [];
  const indexes = new Map<string, Promise<unknown>>();
  for (const chart of def.charts) {
    const dest = path.join(dir, "charts", chart.name);
    const source = chart.source;
    if (source.kind === "repo" || source.kind === "oci") {
      out.push(await prepareRemote(chart.name, source, { at: chart.at, dir, indexes }, opts));
      continue;
    }
    if (source.kind === "local") await cp(source.dir, dest, { recursive: true });
    else {
      const repo = repos.get(source.archive);
      if (!repo) throw new InputError(`chart ${chart.name}: no git item makes ${source.archive}`);
      await opts.git.copyChart(repo.repoDir, repo.commit, source.path, dest);
    }
    out.push({ name: chart.name, path: `charts/${chart.name}` });
  }
  return out;
}

/** A chart from a Helm repository or an OCI registry (src/charts/remote.ts, loaded only for one: it brings tar and yaml). */
async function prepareRemote(
  name: string,
  source: RemoteChartSource,
  { at, dir, indexes }: { at: SourcePos; dir: string; indexes: Map<string, Promise<unknown>> },
  opts: FilesOptions,
): Promise<LockChart> {
  const { prepareRemoteChart } = await import("../charts/remote.js");
  const registry = opts.chartRegistry;
  const previous = opts.previous?.charts.find((c) => c.name === name);
  return prepareRemoteChart(name, source, at, {
    dir,
    workDir: path.join(dir, ".partial", "charts"),
    downloads: opts.downloads ?? {},
    indexes,
    ...(opts.chartCredentials ? { credentials: opts.chartCredentials } : {}),
    ...(opts.chartMirror ? { mirror: opts.chartMirror } : {}),
    registry: (host) => {
      if (!registry) throw new InputError(`chart ${name}: no registry access to fetch ${host} with`);
      return registry(host);
    },
    out: opts.out,
    ...(previous ? { previous } : {}),
  });
}

async function prepareDownload(
  item: Definition["files"][number],
  dir: string,
  opts: { out: Reporter; previous?: Lock; downloads?: DownloadLimits },
): Promise<LockFile> {
  const file = await resolveInside(dir, `files/${item.path}`);
  const before = opts.previous?.files.find((f) => f.url === item.url && f.path === item.path);
  const pinned = item.sha256 ?? before?.sha256;
  if (before && before.sha256 === pinned && (await sizeOf(file)) === before.size) return before;
  // The bytes a pin stands for were counted by an earlier run: not one more is read.
  const size = item.sha256 && before?.sha256 === item.sha256 ? before.size : undefined;
  const got = await download(item.url, file, {
    ...(item.sha256 ? { sha256: item.sha256 } : {}),
    ...(size !== undefined ? { size } : {}),
    ...opts.downloads,
    partialDir: path.join(dir, ".partial", "files"),
  });
  if (!item.sha256) {
    opts.out.warn(
      `${item.url} is not pinned; add  sha256: ${got.sha256}  to its entry (${item.at.file}:${item.at.line})`,
    );
  }
  return { path: item.path, size: got.size, sha256: got.sha256, url: item.url };
}

/** The file the self-contained `bundle` is carried as, so the offline side needs only node. */
export const TOOL_FILE = "bundle.mjs";

/**
 * The executables (scripts/build-exe.mjs), carried under files/tool/ so the offline side needs
 * no Node.js at all. Under files/ like bundle.mjs: the lock lists them, so verify, the archive
 * and a signature cover them, and the file server hands them to the site's other machines.
 * The names are the ones scripts/build-exe.mjs gives them (`bundle-linux-${process.arch}`).
 */
export const TOOL_EXECUTABLES = ["bundle-linux-x64", "bundle-linux-arm64"].map((name) => `tool/${name}`);

/** A file of the tool itself to carry (`--with-tool`): `source` on disk, `path` under files/. */
export interface CarriedTool {
  source: string;
  path: string;
}

/** Copied unless the previous run's copy is there with the same size and sha256 (250 MB a pair). */
async function carryTool(dir: string, tool: CarriedTool, previous?: Lock): Promise<LockFile> {
  const dest = path.join(dir, "files", ...tool.path.split("/"));
  const before = previous?.files.find((f) => f.path === tool.path);
  if (before && (await sizeOf(dest)) === before.size && (await sizeOf(tool.source)) === before.size) {
    if ((await sha256File(tool.source)) === before.sha256) return before;
  }
  await mkdir(path.dirname(dest), { recursive: true });
  return { path: tool.path, ...(await writeVerified(dest, createReadStream(tool.source), { mode: 0o755 })) };
}

/** The archive's extension: what `extract` can unpack. */
export const EXTRACTABLE = /\.(tar\.gz|tgz|tar)$/;

/**
 * Unpacks a downloaded tar archive beside itself (`tools/x.tgz` → `tools/x/…`), each file then
 * served and listed like any other. node-tar refuses absolute paths and `..` on the way out.
 */
async function extractArchive(dir: string, rel: string): Promise<LockFile[]> {
  const target = rel.replace(EXTRACTABLE, "");
  const root = path.join(dir, "files", target);
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  const tar = await import("tar");
  await tar.x({ file: path.join(dir, "files", rel), cwd: root, strict: true, preserveOwner: false });
  const out: LockFile[] = [];
  for (const inner of await listFiles(root)) {
    const file = path.join(root, inner);
    out.push({ path: `${target}/${inner}`, size: (await stat(file)).size, sha256: await sha256File(file) });
  }
  return out;
}

/**
 * A template that needs no site value is rendered now; one that does is stored under
 * templates/ with the values it will be rendered with, for upload (files) or deploy (charts).
 */
async function prepareTemplates(
  def: Definition,
  dir: string,
  files: LockFile[],
): Promise<{ templates: LockTemplate[]; values: { size: number; sha256: string } }> {
  await rm(path.join(dir, "templates"), { recursive: true, force: true });
  await mkdir(path.join(dir, "templates"), { recursive: true });
  // Its size and sha256 go into the lock: a signature covers the values as it covers the rest.
  const valuesText = `${JSON.stringify(def.values, null, 2)}\n`;
  await writeAtomic(path.join(dir, VALUES_FILE), valuesText);
  const pending: LockTemplate[] = [];
  for (const t of def.templates) {
    const site = siteValuesOf(t, def);
    const dest = destPath(t.dest);
    if (site.length === 0) {
      const { renderTemplate } = await import("../templates/render.js");
      const text = renderTemplate(t, def.values);
      await writeFileMode(await resolveInside(dir, dest), text, t.mode);
      if (t.dest.kind === "file")
        files.push({ path: t.dest.path, size: Buffer.byteLength(text), sha256: sha256(text) });
      continue;
    }
    const source = `templates/${dest}`;
    await writeFileMode(await resolveInside(dir, source), t.text, 0o644);
    pending.push({
      dest,
      source,
      syntax: t.syntax,
      mode: t.mode,
      sha256: sha256(t.text),
      origin: t.origin,
      siteValues: site,
    });
  }
  return { templates: pending, values: { size: Buffer.byteLength(valuesText), sha256: sha256(valuesText) } };
}

export function siteValuesOf(t: TemplateItem, def: Definition): string[] {
  const names = templateVariables(t, def.values, def.valueOrigins).map((u) => u.name);
  return [...new Set(names.filter(isSiteValue))].sort();
}

/** Files under files/ that this run did not produce are from an older definition: removed. */
async function pruneFiles(dir: string, keep: Set<string>): Promise<void> {
  const root = path.join(dir, "files");
  for (const rel of await listFiles(root))
    if (!keep.has(rel)) await rm(path.join(root, rel), { force: true });
}

async function writeFileMode(file: string, text: string, mode: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeAtomic(file, text, mode);
}

async function sizeOf(file: string): Promise<number | undefined> {
  return (await stat(file).catch(() => undefined))?.size;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
