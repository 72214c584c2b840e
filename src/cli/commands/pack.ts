/** `bundle pack`: its flags and help, and the handler that writes a bundle as one tar file. */
import type { Command } from "commander";
import type { Output } from "../output.js";
import { example, packArchive, packedLine, type LazyOutput } from "../shared.js";

interface PackFlags {
  split?: string;
}

export function define(program: Command, out: LazyOutput): void {
  const pack = program
    .command("pack")
    .description("write a prepared bundle as one tar file (an index of contents first), optionally in parts")
    .argument("<DIR>", "a prepared bundle")
    .argument("<FILE>", "the archive to write")
    .option("--split <SIZE>", "parts of at most SIZE (e.g. 4G): FILE.000, FILE.001, …");
  example(pack, "bundle pack ./bundle-out/openwhisk /media/usb/openwhisk.tar --split 4G");
  pack.action((dir: string, file: string, opts: PackFlags) => runPack(dir, file, opts, out()));
}

async function runPack(dir: string, file: string, flags: PackFlags, out: Output): Promise<void> {
  const result = await packArchive(dir, file, flags.split);
  out.result({ ok: true, ...result }, () => [packedLine(dir, result)]);
}
