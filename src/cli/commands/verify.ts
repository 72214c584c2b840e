/** `bundle verify`: its flags and help, and the handler that re-hashes a bundle against its lock. */
import type { Command } from "commander";
import type { BundleContents } from "../../bundle/contents.js";
import type { Output } from "../output.js";
import { checkSignature, example, withBundle, type LazyOutput } from "../shared.js";

interface VerifyFlags {
  publicKey?: string;
}

export function define(program: Command, out: LazyOutput): void {
  const verify = program
    .command("verify")
    .description("re-hash every blob and file of a bundle against its lock; name every mismatch")
    .argument("<DIR>", "a prepared bundle (folder or archive)")
    .option("--public-key <FILE>", "also check the lock's signature against this ed25519 public key (PEM)");
  example(
    verify,
    "bundle verify /media/usb/openwhisk",
    "bundle verify /media/usb/openwhisk --public-key site-signing.pub",
  );
  verify.action((dir: string, opts: VerifyFlags) =>
    withBundle(dir, (bundle) => runVerify(bundle, opts, out())),
  );
}

/** Exit 1 when anything is missing, corrupt or extra. */
async function runVerify(bundle: BundleContents, flags: VerifyFlags, out: Output): Promise<void> {
  await checkSignature(bundle, flags.publicKey, out, { covered: false });
  const { verifyBundle, formatVerify } = await import("../../stages/verify.js");
  const report = await verifyBundle(bundle);
  out.result(report, () => formatVerify(report));
  if (!report.ok) process.exitCode = 1;
}
