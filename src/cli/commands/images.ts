/**
 * `bundle images`: its flags and help, and the handler that lists the images a Helm chart uses,
 * compared with a definition's when one is given.
 */
import type { Command } from "commander";
import path from "node:path";
import type { Definition } from "../../config/model.js";
import { table } from "../../util/format.js";
import type { Output } from "../output.js";
import { collect, example, type LazyOutput } from "../shared.js";

interface ImagesFlags {
  file?: string;
  values?: string[];
}

export function define(program: Command, out: LazyOutput): void {
  const images = program
    .command("images")
    .description("list every image reference a Helm chart uses, with the values path that sets it")
    .argument("<CHART_DIR>", "a chart folder")
    .option("-f, --file <FILE>", "also compare with this definition's images: missing and unused")
    .option(
      "--values <FILE>",
      "values files merged over the chart's values.yaml, as helm would (repeatable)",
      collect,
    );
  example(images, "bundle images openwhisk-deploy-kube/helm/openwhisk --json");
  images.action((chartDir: string, opts: ImagesFlags) => runImages(chartDir, opts, out()));
}

async function runImages(chartDir: string, flags: ImagesFlags, out: Output): Promise<void> {
  const { findChartImages, compareImages } = await import("../../charts/discover.js");
  const { loadDefinition } = await import("../../config/load.js");
  const { formatImageRef } = await import("../../config/imageRef.js");
  const def = flags.file ? await loadDefinition(flags.file) : undefined;
  const release = def ? await releaseOfChart(def, chartDir) : undefined;
  if (def && release)
    out.info(
      `with the values files of release ${release.name}: ${release.files.map((f) => (typeof f === "string" ? f : f.file)).join(", ") || "none"}`,
    );
  const found = await findChartImages(chartDir, [...(release?.files ?? []), ...(flags.values ?? [])]);
  const compared = def ? compareImages(found, def) : undefined;
  out.result(
    {
      images: found,
      ...(compared
        ? { missing: compared.missing, unused: compared.unused.map((i) => formatImageRef(i.ref)) }
        : {}),
    },
    () => [
      ...table(
        ["IMAGE", "SET BY", "WHERE", ""],
        found.map((i) => [
          i.ref,
          i.valuesPath ?? i.kind,
          `${i.file}:${i.line}`,
          i.enabled === false ? "(disabled)" : "",
        ]),
      ),
      ...(compared
        ? [
            "",
            `not in ${flags.file}: ${compared.missing.map((i) => i.ref).join(", ") || "none"}`,
            `in ${flags.file} but unused by the chart: ${compared.unused.map((i) => formatImageRef(i.ref)).join(", ") || "none"}`,
          ]
        : []),
    ],
  );
}

/**
 * The definition's first release of the chart in `chartDir` (a local chart at that folder, or a
 * chart of the same name), with the values files it is deployed with, as `bundle images` reads them.
 */
async function releaseOfChart(def: Definition, chartDir: string) {
  const { releaseValuesFiles } = await import("../../stages/lint.js");
  const dir = path.resolve(chartDir);
  const chart =
    def.charts.find((c) => c.source.kind === "local" && path.resolve(c.source.dir) === dir) ??
    def.charts.find((c) => c.name === path.basename(dir));
  const release = chart && def.releases.find((r) => r.chart === chart.name);
  if (!release) return undefined;
  const inChart = release.valuesFiles
    .filter((v) => v.startsWith(`charts/${release.chart}/`))
    .map((v) => path.join(dir, ...v.split("/").slice(2)));
  return { name: release.name, files: [...releaseValuesFiles(def, release), ...inChart] };
}
