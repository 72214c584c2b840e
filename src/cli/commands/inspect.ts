/** `bundle inspect`: its help, and the handler that lists what a bundle holds. */
import type { Command } from "commander";
import type { BundleContents } from "../../bundle/contents.js";
import type { Output } from "../output.js";
import { example, withBundle, type LazyOutput } from "../shared.js";

export function define(program: Command, out: LazyOutput): void {
  const inspect = program
    .command("inspect")
    .description(
      "list a bundle's images, their referrers (signatures, SBOMs, attestations), git archives, files, templates still to render, charts (version, archive, where upload pushes it) with the repository each came from, and the site values still to bind",
    )
    .argument("<DIR>", "a prepared bundle (folder or archive)");
  example(inspect, "bundle inspect ./bundle-out/openwhisk --json");
  inspect.action((dir: string) => withBundle(dir, (bundle) => runInspect(bundle, out())));
}

async function runInspect(bundle: BundleContents, out: Output): Promise<void> {
  const { inspectBundle, formatInspect } = await import("../../stages/inspect.js");
  const report = await inspectBundle(bundle);
  out.result(report, () => formatInspect(report));
}
