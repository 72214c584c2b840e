/**
 * `bundle lint`: its flags and help, and the handler that checks a definition without touching
 * the network.
 */
import type { Command } from "commander";
import { DEFAULT_DEFINITION } from "../../config/defaults.js";
import { plural } from "../../util/format.js";
import type { Output } from "../output.js";
import { ALLOW_OUTSIDE, example, withValues, type LazyOutput, type ValueFlags } from "../shared.js";

interface LintFlags extends ValueFlags {
  file: string;
  name?: string;
  allowOutside?: boolean;
}

export function define(program: Command, out: LazyOutput): void {
  const lintCmd = program
    .command("lint")
    .description(
      "check a definition without touching the network: schema, references, files, values, local charts' Chart.yaml and Chart.lock",
    )
    .option("-f, --file <FILE>", "the definition", DEFAULT_DEFINITION)
    .option("--name <NAME>", "the bundle's name")
    .option("--allow-outside", ALLOW_OUTSIDE);
  withValues(lintCmd);
  example(lintCmd, "bundle lint -f bundle.yml", "bundle lint -f deployment.yml --set ingress_ip=10.0.0.5");
  lintCmd.action((opts: LintFlags) => runLint(opts, out()));
}

async function runLint(flags: LintFlags, out: Output): Promise<void> {
  const { lint } = await import("../../stages/lint.js");
  const summary = await lint(flags.file, {
    ...(flags.name ? { name: flags.name } : {}),
    ...(flags.allowOutside ? { allowOutside: true } : {}),
    set: flags.set ?? [],
    valuesFiles: flags.values ?? [],
  });
  out.result({ ok: true, ...summary }, () => [
    `${flags.file}: ok — bundle "${summary.name}": ${summary.images.length} images, ${summary.git.length} git archives, ` +
      `${summary.npm.length > 0 ? `${summary.npm.length} npm archives, ` : ""}${summary.files.length} downloads, ${summary.templates.length} templates, ${plural(summary.releases.length, "release")}`,
    ...(summary.siteValuesToBind.length > 0
      ? [`site values bound at upload and deploy: ${summary.siteValuesToBind.join(", ")}`]
      : []),
  ]);
}
