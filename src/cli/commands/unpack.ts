/** `bundle unpack`: its help, and the handler that unpacks a bundle archive into a folder. */
import type { Command } from "commander";
import { formatBytes } from "../../util/format.js";
import type { Output } from "../output.js";
import { example, type LazyOutput } from "../shared.js";

export function define(program: Command, out: LazyOutput): void {
  const unpack = program
    .command("unpack")
    .description("unpack a bundle archive (or its parts) into a folder, checking every member")
    .argument("<FILE>", "the archive (FILE or FILE.000 …)")
    .argument("<DIR>", "the folder to write");
  example(unpack, "bundle unpack /media/usb/openwhisk.tar ./openwhisk");
  unpack.action((file: string, dir: string) => runUnpack(file, dir, out()));
}

async function runUnpack(file: string, dir: string, out: Output): Promise<void> {
  const { unpackBundle } = await import("../../bundle/contents.js");
  const result = await unpackBundle(file, dir);
  out.result({ ok: true, ...result }, () => [
    `${file} unpacked into ${dir} (${result.files} files, ${formatBytes(result.bytes)})`,
  ]);
}
