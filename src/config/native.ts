/** The native `bundle.yml` format → the model. */
import path from "node:path";
import {
  DEFAULT_PLATFORMS,
  type Platform,
  type ChartItem,
  type GitItem,
  type ImageItem,
  type NpmItem,
  type ReleaseItem,
  type TemplateItem,
  type UrlItem,
  type Values,
} from "./model.js";
import type { NativeRaw } from "./schema.js";
import { schemaValidator } from "./schemaFiles.js";
import { validateLenient } from "./validate.js";
import { redactUrlPassword, splitGitUrl } from "./gitUrl.js";
import { DEFAULT_MIRROR, mirrorName } from "./mirror.js";
import {
  archiveName,
  checkDirExists,
  confinedPath,
  isInsidePath,
  parseImage,
  parseMode,
  Problems,
  readSourceFile,
  type LoadedDefinition,
} from "./build.js";
import type { YamlSource } from "./yamlSource.js";
import { DefinitionError } from "../util/errors.js";
import { segmentName } from "../util/paths.js";

type Raw<K extends keyof NativeRaw> = NonNullable<NativeRaw[K]>;

export async function loadNative(
  src: YamlSource,
  file: string,
  data: unknown,
  platformsOverride: Platform[] | undefined,
  problems: Problems,
): Promise<LoadedDefinition> {
  const checked = validateLenient(schemaValidator("bundle.schema.json"), src, data);
  if (checked.usable === undefined) throw new DefinitionError(checked.problems);
  problems.list.push(...checked.problems);
  const raw = checked.usable as NativeRaw;
  const dir = path.dirname(file);
  const mirror = { ...DEFAULT_MIRROR, ...raw.mirror };
  const platforms = platformsOverride ?? raw.platforms ?? [...DEFAULT_PLATFORMS];

  const images = (raw.images ?? []).flatMap((item, i): ImageItem[] => {
    const spec = typeof item === "string" ? { ref: item } : item;
    const at: (string | number)[] = typeof item === "string" ? ["images", i] : ["images", i, "ref"];
    const parsed = problems.try(at, () => parseImage(spec.ref));
    if (!parsed) return [];
    const source = spec.from ?? parsed.source;
    return [
      {
        ref: parsed.ref,
        source,
        platforms: spec.platforms ?? platforms,
        allowMissingPlatforms: spec.allowMissingPlatforms ?? false,
        mirror: mirrorName(parsed.ref, mirror),
        at: src.pos(at),
      },
    ];
  });

  const git = (raw.git ?? []).flatMap((g, i) => gitItem(g, ["git", i], problems));
  const files = (raw.files ?? []).flatMap((f, i) => urlItem(f, ["files", i], problems));
  const npm = (raw.npm ?? []).flatMap((n, i) => npmItem(n, ["npm", i], git, problems));
  const charts = await nativeCharts(raw, dir, git, problems);
  const templates = (
    await Promise.all((raw.templates ?? []).map((t, i) => templateItem(t, ["templates", i], dir, problems)))
  ).flat();
  const releases = (raw.releases ?? []).map((r, i): ReleaseItem => ({
    name: r.name,
    chart: r.chart,
    namespace: r.namespace ?? r.name,
    valuesFiles: r.values ?? [],
    at: src.pos(["releases", i]),
  }));
  return {
    ...(raw.name ? { declaredName: raw.name } : {}),
    file,
    dir,
    platforms,
    values: (raw.values ?? {}) as Values,
    valueOrigins: {},
    mirror,
    images,
    git,
    files,
    npm,
    charts,
    templates,
    releases,
  };
}

function gitItem(g: Raw<"git">[number], at: (string | number)[], problems: Problems): GitItem[] {
  if ((g.commit === undefined) === (g.ref === undefined)) {
    problems.add(at, "give exactly one of commit (40 hex digits) or ref (a tag or branch)");
    return [];
  }
  const split = problems.try([...at, "url"], () => splitGitUrl(g.url));
  if (!split) return [];
  const archive = g.archive ?? problems.try([...at, "url"], () => archiveName(split.url));
  if (!archive) return [];
  return [
    {
      url: split.url,
      ...(split.password === undefined ? {} : { password: split.password }),
      revision: g.commit ? { kind: "commit", commit: g.commit } : { kind: "ref", ref: g.ref ?? "" },
      archive,
      submodules: g.submodules ?? false,
      at: problems.src.pos(at),
    },
  ];
}

function urlItem(f: Raw<"files">[number], at: (string | number)[], problems: Problems): UrlItem[] {
  const name = f.path ?? decodeURIComponent(new URL(f.url).pathname.split("/").pop() ?? "");
  if (!name || !isInsidePath(name)) {
    problems.add([...at, f.path ? "path" : "url"], `cannot use "${name}" as a path under files/`);
    return [];
  }
  if (f.extract && !/\.(tar\.gz|tgz|tar)$/.test(name)) {
    problems.add(
      [...at, "extract"],
      `extract unpacks .tar, .tar.gz and .tgz archives; "${name}" is none of them`,
    );
    return [];
  }
  return [
    {
      url: f.url,
      ...(f.sha256 ? { sha256: f.sha256 } : {}),
      path: name,
      extract: f.extract ?? false,
      at: problems.src.pos(at),
    },
  ];
}

function npmItem(
  n: Raw<"npm">[number],
  at: (string | number)[],
  git: GitItem[],
  problems: Problems,
): NpmItem[] {
  const dirs: NpmItem["dirs"] = [];
  n.dirs.forEach((d, j) => {
    const spec = typeof d === "string" ? { dir: d } : d;
    const where = typeof d === "string" ? [...at, "dirs", j] : [...at, "dirs", j, "dir"];
    const dir = path.posix.normalize(spec.dir.replaceAll("\\", "/")).replace(/\/+$/, "") || ".";
    if (!isInsidePath(dir)) {
      problems.add(where, `"${spec.dir}" must be a folder inside the git tree`);
      return;
    }
    if (dirs.some((x) => x.dir === dir)) {
      problems.add(where, `folder "${dir}" is listed twice`);
      return;
    }
    dirs.push({ dir, packageJson: spec.packageJson ?? "package.json", at: problems.src.pos(where) });
  });
  const named = redactUrlPassword(n.git);
  const source = git.find((g) => g.archive === n.git) ?? git.find((g) => g.url === named);
  if (!source) {
    const known = git.map((g) => `${g.url} (${g.archive})`).join(", ") || "none";
    problems.add([...at, "git"], `no git item has the url or archive "${named}"; git items: ${known}`);
    return [];
  }
  const file = n.path ?? `${source.archive.replace(/\.tar\.gz$/, "")}-node_modules.tar.gz`;
  if (!isInsidePath(file)) {
    problems.add([...at, "path"], `cannot use "${file}" as a path under files/`);
    return [];
  }
  if (dirs.length !== n.dirs.length) return [];
  return [{ git: source.archive, dirs, path: path.posix.normalize(file), at: problems.src.pos(at) }];
}

async function nativeCharts(
  raw: NativeRaw,
  dir: string,
  git: GitItem[],
  problems: Problems,
): Promise<ChartItem[]> {
  const charts: ChartItem[] = [];
  (raw.git ?? []).forEach((g, i) => {
    if (!g.chart) return;
    const spec = typeof g.chart === "string" ? { path: g.chart } : g.chart;
    const archive = git.find((x) => x.url === redactUrlPassword(g.url))?.archive;
    if (!archive) return;
    const name = spec.name ?? path.posix.basename(spec.path);
    if (!problems.try(["git", i, "chart"], () => segmentName(name, "a chart name"))) return;
    charts.push({
      name,
      source: { kind: "git", archive, path: spec.path },
      at: problems.src.pos(["git", i, "chart"]),
    });
  });
  for (const [i, c] of (raw.charts ?? []).entries()) {
    const item = await chartItem(c, ["charts", i], dir, problems);
    if (item) charts.push(item);
  }
  const seen = new Set<string>();
  for (const c of charts) {
    if (seen.has(c.name)) problems.addAt(c.at, `two charts are named "${c.name}"; give one a name:`);
    seen.add(c.name);
  }
  return charts;
}

/** One entry of `charts:`: a local folder (`path`), a Helm repository (`repo`) or an OCI registry (`oci`). */
async function chartItem(
  c: Raw<"charts">[number],
  at: (string | number)[],
  dir: string,
  problems: Problems,
): Promise<ChartItem | undefined> {
  const given = (["path", "repo", "oci"] as const).filter((k) => c[k] !== undefined);
  if (given.length !== 1) {
    problems.add(at, "give exactly one of path (a folder), repo (a Helm repository) or oci (oci://…)");
    return undefined;
  }
  for (const [key, kind] of [
    ["version", "repo or oci"],
    ["sha256", "repo"],
    ["digest", "oci"],
  ] as const) {
    if (c[key] !== undefined && !kind.split(" or ").includes(given[0] ?? ""))
      problems.add([...at, key], `${key} goes with ${kind}, not with ${given[0]}`);
  }
  if (c.repo !== undefined || c.oci !== undefined) return remoteChart(c, at, problems);
  if (c.name === undefined) return void problems.add(at, "a chart with path needs a name");
  problems.try([...at, "name"], () => segmentName(c.name ?? "", "a chart name"));
  const chartDir = await confinedPath(problems, dir, c.path ?? "", [...at, "path"]);
  if (chartDir === undefined) return undefined;
  await checkDirExists(problems, chartDir, [...at, "path"]);
  return { name: c.name, source: { kind: "local", dir: chartDir }, at: problems.src.pos(at) };
}

/** A chart from a Helm repository or an OCI registry: an exact version, named like a folder. */
function remoteChart(
  c: Raw<"charts">[number],
  at: (string | number)[],
  problems: Problems,
): ChartItem | undefined {
  const version = c.version;
  if (version === undefined) return void problems.add(at, `a chart from ${c.repo ?? c.oci} needs a version`);
  if (!EXACT_VERSION.test(version)) {
    problems.add(
      [...at, "version"],
      `version "${version}" is not an exact version (e.g. 1.2.3): a bundle pins what it carries, so ranges are not taken`,
    );
    return undefined;
  }
  if (c.repo !== undefined && c.name === undefined)
    return void problems.add(at, "a chart from a Helm repository needs the chart's name");
  if (c.repo !== undefined && /^[a-z]+:\/\/[^/]*@/i.test(c.repo))
    return void problems.add(
      [...at, "repo"],
      "a user or password in a Helm repository's URL would be written to the lock: give them as for images (docker login HOST, or --username with --password-stdin)",
    );
  const name = c.name ?? c.oci?.split("/").pop() ?? "";
  if (!problems.try([...at, c.name !== undefined ? "name" : "oci"], () => segmentName(name, "a chart name")))
    return undefined;
  const source: ChartItem["source"] =
    c.repo !== undefined
      ? { kind: "repo", url: c.repo, chart: name, version, ...(c.sha256 ? { sha256: c.sha256 } : {}) }
      : { kind: "oci", ref: c.oci ?? "", version, ...(c.digest ? { digest: c.digest } : {}) };
  return { name, source, at: problems.src.pos(at) };
}

/** SemVer 2 as Helm writes chart versions, an optional leading `v` allowed: no ranges, no wildcards. */
export const EXACT_VERSION =
  /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/;

async function templateItem(
  t: Raw<"templates">[number],
  at: (string | number)[],
  dir: string,
  problems: Problems,
): Promise<TemplateItem[]> {
  const source = await readSourceFile(problems, dir, t.source, [...at, "source"]);
  const mode = problems.try([...at, "mode"], () => parseMode(t.mode, 0o644));
  if (!source || mode === undefined) return [];
  const [top, second, ...rest] = t.dest.split("/");
  const dest =
    top === "files"
      ? { kind: "file" as const, path: [second, ...rest].join("/") }
      : { kind: "chart" as const, chart: second ?? "", path: rest.join("/") };
  if (!isInsidePath(dest.path) || dest.path === "") {
    problems.add([...at, "dest"], `"${t.dest}" must stay inside files/ or its chart folder`);
    return [];
  }
  return [
    {
      syntax: "handlebars",
      text: source.text,
      origin: { file: path.relative(process.cwd(), source.file) || source.file, line: 1, col: 1 },
      dest,
      mode,
      at: problems.src.pos(at),
    },
  ];
}
