/** `bundle diff`: its help, and the handler that reports what changed between two bundles. */
import type { Command } from "commander";
import type { Output } from "../output.js";
import { example, type LazyOutput } from "../shared.js";

export function define(program: Command, out: LazyOutput): void {
  const diff = program
    .command("diff")
    .description(
      "what changed between two bundles: images added, removed, retagged or changed (digests, platforms), git commits, files, charts, releases, templates and values (exit 1 when they differ, as diff does)",
    )
    .argument("<OLD>", "the earlier bundle: a folder, an archive or its bundle.lock.json")
    .argument("<NEW>", "the later bundle: a folder, an archive or its bundle.lock.json");
  example(
    diff,
    "bundle diff /media/usb/openwhisk-1 /media/usb/openwhisk-2.tar",
    "bundle --json diff old/bundle.lock.json ./bundle-out/openwhisk",
  );
  diff.action((oldPath: string, newPath: string) => runDiff(oldPath, newPath, out()));
}

/** Exit 1 when the bundles differ, as diff(1) does; 0 when they are equal. */
async function runDiff(oldPath: string, newPath: string, out: Output): Promise<void> {
  const { openSide, diffBundles, formatDiff } = await import("../../stages/diff.js");
  const report = await diffBundles(await openSide(oldPath), await openSide(newPath));
  out.result(report, () => formatDiff(report));
  if (!report.equal) process.exitCode = 1;
}
