/** `bundle lint`: everything prepare checks about a definition, without touching the network. */
import { formatImageRef } from "../config/imageRef.js";
import { formatMirror } from "../config/mirror.js";
import { loadDefinition, missingValues, siteValuesUsed, type LoadOptions } from "../config/load.js";
import { destPath, type Definition } from "../config/model.js";
import { DefinitionError, type Diagnostic } from "../util/errors.js";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { renderTemplate } from "../templates/render.js";
import { mergeValues } from "../config/values.js";

export interface LintSummary {
  name: string;
  file: string;
  images: { ref: string; mirror: string; platforms: string[] }[];
  git: { url: string; revision: string; archive: string }[];
  files: { url: string; path: string; sha256: string | null }[];
  npm: { git: string; dirs: string[]; path: string }[];
  templates: string[];
  releases: { name: string; chart: string; namespace: string }[];
  siteValuesToBind: string[];
}

export async function lint(file: string, opts: LoadOptions): Promise<LintSummary> {
  const def = await loadDefinition(file, opts);
  const missing = missingValues(def);
  if (missing.length > 0) throw new DefinitionError(missing);
  const chartProblems = [...(await localChartProblems(def)), ...(await lintOpenWhiskReleases(def))];
  if (chartProblems.length > 0) throw new DefinitionError(chartProblems);
  return summarize(def);
}

/**
 * The file a rendered template's lines belong to: a Telego filemap that is one `${value}` read
 * from a file renders that file's lines, so diagnostics name it rather than the definition.
 */
function renderedFrom(t: Definition["templates"][number], def: Definition): string {
  const only = t.syntax === "dollar" ? /^\$\{([A-Za-z0-9_.-]+)\}$/.exec(t.text.trim()) : null;
  return (only && def.valueOrigins[only[1] ?? ""]?.file) || t.origin.file;
}

/** Site values for rendering at lint time, where the real ones are not known yet. */
const PLACEHOLDER_SITE = {
  IMG_REPO: "site-registry.invalid:5000",
  MAIN_NODE_IP: "site-fileserver.invalid",
  FILESERVER_URL: "http://site-fileserver.invalid:8003/bundle",
};

/**
 * Each local chart's Chart.yaml and Chart.lock through the one parser (src/charts/metadata.ts):
 * a file helm could not load is an error at its line before prepare copies anything.
 */
export async function localChartProblems(def: Definition): Promise<Diagnostic[]> {
  const { readChartFile } = await import("../charts/metadata.js");
  const out: Diagnostic[] = [];
  for (const chart of def.charts) {
    if (chart.source.kind !== "local") continue;
    for (const kind of ["Chart.yaml", "Chart.lock"] as const) {
      const file = path.join(chart.source.dir, kind);
      try {
        await readChartFile(kind, file, { where: path.relative(process.cwd(), file) });
      } catch (err) {
        if (!(err instanceof DefinitionError)) throw err;
        out.push(...err.diagnostics);
      }
    }
  }
  return out;
}

/**
 * The settings known to break OpenWhisk (CONTEXT.md), checked in each OpenWhisk release's values
 * files: a local chart's values.yaml first, then the release's files, templates rendered with
 * placeholder site values. Diagnostics point into the file that set the key.
 */
export async function lintOpenWhiskReleases(def: Definition): Promise<Diagnostic[]> {
  const { lintOpenWhiskValues, isOpenWhiskChart } = await import("../charts/lint.js");
  const out: Diagnostic[] = [];
  for (const release of def.releases) {
    const chart = def.charts.find((c) => c.name === release.chart);
    if (!chart) continue;
    const source = chart.source;
    const isOpenWhisk =
      source.kind === "local"
        ? await isOpenWhiskChart(source.dir)
        : /openwhisk/.test(source.kind === "git" ? source.archive + source.path : chart.name);
    if (!isOpenWhisk) continue;
    const files: { file: string; text: string }[] = [];
    if (source.kind === "local") {
      const text = await readFile(path.join(source.dir, "values.yaml"), "utf8").catch(() => undefined);
      if (text !== undefined)
        files.push({ file: path.relative(process.cwd(), path.join(source.dir, "values.yaml")), text });
    }
    files.push(...releaseValuesFiles(def, release));
    out.push(...lintOpenWhiskValues(files));
  }
  return out;
}

/**
 * A release's values files that the definition writes (templates, Telego filemaps), rendered
 * with placeholder site values, each named by the file its lines come from. Values files the
 * chart itself holds are left to the caller, which has the chart.
 */
export function releaseValuesFiles(
  def: Definition,
  release: Definition["releases"][number],
): { file: string; text: string }[] {
  return release.valuesFiles.flatMap((bundlePath) => {
    const t = def.templates.find((x) => destPath(x.dest) === bundlePath);
    return t
      ? [{ file: renderedFrom(t, def), text: renderTemplate(t, mergeValues(def.values, PLACEHOLDER_SITE)) }]
      : [];
  });
}

export function summarize(def: Definition): LintSummary {
  return {
    name: def.name,
    file: def.file,
    images: def.images.map((i) => ({
      ref: (i.source === "docker" ? "docker-daemon:" : "") + formatImageRef(i.ref),
      mirror: formatMirror(i.mirror),
      platforms: i.platforms,
    })),
    git: def.git.map((g) => ({
      url: g.url,
      revision: g.revision.kind === "commit" ? g.revision.commit : g.revision.ref,
      archive: g.archive,
    })),
    files: def.files.map((f) => ({ url: f.url, path: f.path, sha256: f.sha256 ?? null })),
    npm: def.npm.map((n) => ({ git: n.git, dirs: n.dirs.map((d) => d.dir), path: n.path })),
    templates: def.templates.map((t) => destPath(t.dest)),
    releases: def.releases.map((r) => ({ name: r.name, chart: r.chart, namespace: r.namespace })),
    siteValuesToBind: siteValuesUsed(def),
  };
}
