/** The Telego dialect (`deployment.yml` style, SPEC.md "The Telego dialect") → the model. */
import path from "node:path";
import {
  DEFAULT_PLATFORMS,
  type Platform,
  destPath,
  type ChartItem,
  type GitItem,
  type ImageItem,
  type ReleaseItem,
  type TemplateDest,
  type TemplateItem,
  type UrlItem,
  type Values,
} from "./model.js";
import type { TelegoRaw } from "./schema.js";
import { schemaValidator } from "./schemaFiles.js";
import { validateLenient } from "./validate.js";
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
import { DefinitionError, type SourcePos } from "../util/errors.js";
import { show } from "./validate.js";
import { splitGitUrl } from "./gitUrl.js";

/** Top-level keys only the Telego dialect has: their presence selects it. */
export const TELEGO_KEYS = ["comment", "local_values", "prepare", "helms"] as const;

/** Telego's folder for files the file server serves. */
const SERVED = "teledeploy/";
const PREPARE_KINDS = ["image", "git", "url", "filemap"] as const;

type PrepareItem = NonNullable<TelegoRaw["prepare"]>[number];
type Path = (string | number)[];

export async function loadTelego(
  src: YamlSource,
  file: string,
  data: unknown,
  platformsOverride: Platform[] | undefined,
  problems: Problems,
): Promise<LoadedDefinition> {
  const checked = validateLenient(schemaValidator("telego.schema.json"), src, data);
  if (checked.usable === undefined) throw new DefinitionError(checked.problems);
  problems.list.push(...checked.problems);
  const raw = checked.usable as TelegoRaw;
  const dir = path.dirname(file);

  const { values, valueOrigins } = await localValues(raw, dir, problems);
  const def: LoadedDefinition = {
    file,
    dir,
    platforms: platformsOverride ?? [...DEFAULT_PLATFORMS],
    values,
    valueOrigins,
    mirror: { ...DEFAULT_MIRROR },
    images: [],
    git: [],
    files: [],
    npm: [],
    charts: [],
    templates: [],
    releases: [],
  };
  // Charts first: a filemap whose path lies inside a helm-dir is an overlay of that chart.
  const items = raw.prepare ?? [];
  items.forEach((item, i) => {
    if (kindOf(item, ["prepare", i], problems) === "git")
      addGit(def, item.git ?? "", ["prepare", i, "git"], problems);
  });
  await addReleases(def, raw, problems);
  for (const [i, item] of items.entries()) {
    const at: Path = ["prepare", i];
    const kind = kindOf(item, at, null);
    if (kind === "image") addImage(def, item.image ?? "", [...at, "image"], problems);
    if (kind === "url") addUrl(def, item, at, problems);
    if (kind === "filemap") await addFilemap(def, item, at, raw, problems);
  }
  return def;
}

/** Each prepare item holds exactly one of image / git / url / filemap (`as` goes with `url`). */
function kindOf(
  item: PrepareItem,
  at: Path,
  problems: Problems | null,
): (typeof PREPARE_KINDS)[number] | undefined {
  const present = PREPARE_KINDS.filter((k) => item[k] !== undefined);
  if (present.length !== 1) {
    problems?.add(
      at,
      `expected exactly one of ${PREPARE_KINDS.join(", ")}, got ${present.join(" and ") || "none"}`,
    );
    return undefined;
  }
  if (item.as !== undefined && present[0] !== "url") {
    problems?.add([...at, "as"], `"as" names a downloaded file; it goes with "url", not "${present[0]}"`);
  }
  return present[0];
}

async function localValues(raw: TelegoRaw, dir: string, problems: Problems) {
  const values: Values = {};
  const valueOrigins: Record<string, SourcePos> = {};
  for (const [name, v] of Object.entries(raw.local_values ?? {})) {
    if (typeof v !== "object") {
      values[name] = v;
      valueOrigins[name] = problems.src.pos(["local_values", name]);
      continue;
    }
    const read = await readSourceFile(problems, dir, v.read_from_file, [
      "local_values",
      name,
      "read_from_file",
    ]);
    if (!read) continue;
    values[name] = read.text;
    valueOrigins[name] = { file: path.relative(process.cwd(), read.file) || read.file, line: 1, col: 1 };
  }
  return { values, valueOrigins };
}

function addImage(def: LoadedDefinition, text: string, at: Path, problems: Problems): void {
  const parsed = problems.try(at, () => parseImage(text));
  if (!parsed) return;
  const item: ImageItem = {
    ref: parsed.ref,
    source: parsed.source,
    platforms: def.platforms,
    allowMissingPlatforms: false,
    mirror: mirrorName(parsed.ref, def.mirror),
    at: problems.src.pos(at),
  };
  def.images.push(item);
}

/** `git: URL:COMMIT`, split at the last colon so `https://` and `git@host:` URLs stay whole. */
function addGit(def: LoadedDefinition, text: string, at: Path, problems: Problems): void {
  const colon = text.lastIndexOf(":");
  const url = text.slice(0, colon);
  const commit = text.slice(colon + 1);
  if (colon <= 0 || !/^[a-f0-9]{40}$/.test(commit)) {
    problems.add(at, `expected URL:COMMIT with a 40-hex commit, got ${show(text)}`);
    return;
  }
  const split = problems.try(at, () => splitGitUrl(url));
  const archive = split && problems.try(at, () => archiveName(split.url));
  if (!split || !archive) return;
  const item: GitItem = {
    url: split.url,
    ...(split.password === undefined ? {} : { password: split.password }),
    revision: { kind: "commit", commit },
    archive,
    submodules: false,
    at: problems.src.pos(at),
  };
  def.git.push(item);
}

function addUrl(def: LoadedDefinition, item: PrepareItem, at: Path, problems: Problems): void {
  const url = item.url ?? "";
  const name = item.as ?? decodeURIComponent(new URL(url).pathname.split("/").pop() ?? "");
  if (!name || !isInsidePath(name)) {
    problems.add([...at, item.as ? "as" : "url"], `cannot use "${name}" as a file name; add as: NAME`);
    return;
  }
  const file: UrlItem = { url, path: name, extract: false, at: problems.src.pos(at) };
  def.files.push(file);
}

async function addFilemap(
  def: LoadedDefinition,
  item: PrepareItem,
  at: Path,
  raw: TelegoRaw,
  problems: Problems,
): Promise<void> {
  const fm = item.filemap;
  if (!fm) return;
  const dest = filemapDest(fm.path, raw);
  if (!dest) {
    problems.add([...at, "filemap", "path"], `path "${fm.path}" must stay inside the definition's folder`);
    return;
  }
  const template: TemplateItem = {
    syntax: "dollar",
    text: fm.content,
    origin: problems.src.contentPos([...at, "filemap", "content"]),
    dest,
    mode: 0,
    at: problems.src.pos(at),
  };
  const mode = problems.try([...at, "filemap", "mode"], () => parseMode(fm.mode, 0o644));
  if (mode === undefined) return;
  def.templates.push({ ...template, mode });
}

/**
 * `teledeploy/x` is a served file; a path inside a helm-dir overlays that chart (the release's
 * chart folder); any other path is carried as a served file too, under its own path.
 */
function filemapDest(p: string, raw: TelegoRaw): TemplateDest | undefined {
  const norm = path.posix.normalize(p);
  if (!isInsidePath(norm)) return undefined;
  if (norm.startsWith(SERVED)) return { kind: "file", path: norm.slice(SERVED.length) };
  for (const [release, h] of Object.entries(raw.helms ?? {})) {
    const chartDir = path.posix.normalize(h["helm-dir"]) + "/";
    if (norm.startsWith(chartDir))
      return { kind: "chart", chart: release, path: norm.slice(chartDir.length) };
  }
  return { kind: "file", path: norm };
}

/**
 * Each `helms` entry is its own release, with a chart of the same name. A helm-dir that starts
 * with a git item's folder (`openwhisk-deploy-kube/helm/openwhisk`) comes from that archive;
 * any other is a local folder next to the definition.
 */
async function addReleases(def: LoadedDefinition, raw: TelegoRaw, problems: Problems): Promise<void> {
  for (const [name, h] of Object.entries(raw.helms ?? {})) {
    const at: Path = ["helms", name];
    const helmDir = path.posix.normalize(h["helm-dir"]);
    const [first, ...rest] = helmDir.split("/");
    const fromGit = def.git.find((g) => g.archive === `${first}.tar.gz`);
    let chart: ChartItem;
    if (fromGit && rest.length > 0) {
      chart = {
        name,
        source: { kind: "git", archive: fromGit.archive, path: rest.join("/") },
        at: problems.src.pos(at),
      };
    } else {
      const dir = await confinedPath(problems, def.dir, helmDir, [...at, "helm-dir"]);
      if (dir !== undefined) await checkDirExists(problems, dir, [...at, "helm-dir"]);
      chart = { name, source: { kind: "local", dir: dir ?? def.dir }, at: problems.src.pos(at) };
    }
    def.charts.push(chart);
    const overwrite = h["overwrite-config"];
    const dest = overwrite ? filemapDest(overwrite, raw) : undefined;
    const release: ReleaseItem = {
      name,
      chart: name,
      namespace: h.namespace ?? name,
      valuesFiles: dest ? [destPath(dest)] : [],
      at: problems.src.pos(at),
    };
    def.releases.push(release);
  }
}
