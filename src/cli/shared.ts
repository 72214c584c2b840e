/**
 * What several commands share: the flags they define alike (template values, registry access,
 * HTTP limits), help examples, and the steps their handlers take alike (opening a bundle, checking
 * its signature, the file-server and Docker clients, packing an archive). main.ts loads this at
 * every start, `--version` too, so it imports only what main.ts loads anyway; the rest is imported
 * when a handler runs.
 */
import type { Command } from "commander";
import type { BundleContents } from "../bundle/contents.js";
import { InputError, WorkError, firstLine } from "../util/errors.js";
import { formatBytes, parseByteSize } from "../util/format.js";
import type { Output } from "./output.js";
import type { HttpFlags } from "./registries.js";

/** The run's Output, made on first use: after commander has read --json, --quiet and --verbose. */
export type LazyOutput = () => Output;

export const collect = (value: string, previous: string[] = []) => [...previous, value];

export const ALLOW_OUTSIDE =
  "let template sources, values files and local charts lie outside the definition's folder";

export interface ValueFlags {
  set?: string[];
  values?: string[];
}

/** Flags that set template values, shared by every command that renders or checks templates. */
export function withValues(cmd: Command): Command {
  return cmd
    .option(
      "--set <KEY=VALUE>",
      "set a template value (repeatable; overrides --values and the definition)",
      collect,
    )
    .option("--values <FILE>", "a YAML file of template values (repeatable; applied in order)", collect);
}

/** Flags for talking to a registry. */
export function withRegistryAccess(cmd: Command): Command {
  return cmd
    .option("--insecure", "accept a TLS certificate that does not verify")
    .option("--ca-file <FILE>", "trust this CA certificate (PEM) in addition to the system's")
    .option("--username <USER>", "registry user name (with --password-stdin)")
    .option("--password-stdin", "read the registry password from standard input");
}

/** Limits on every HTTP transfer (registries, the file server, downloads): README "Limits". */
export function withHttpLimits(cmd: Command): Command {
  return cmd
    .option("--connect-timeout <SECONDS>", "give up connecting to a server after this long (default 30)")
    .option(
      "--response-timeout <SECONDS>",
      "give up on a server that sends no answer this long after a request (default 300)",
    )
    .option(
      "--min-rate <SIZE>",
      "fail a transfer slower than SIZE a second over --rate-window, e.g. 10K; 0 turns it off (default 1K)",
    )
    .option("--rate-window <SECONDS>", "how long a transfer may stay under --min-rate (default 30)");
}

export function example(cmd: Command, ...lines: string[]): Command {
  return cmd.addHelpText("after", `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`);
}

/** Transient faults are retried quietly; --verbose shows each retry. */
export function retryLogger(out: Output) {
  return (err: unknown, attempt: number, delayMs: number) =>
    out.debug(`retrying (attempt ${attempt + 1}, in ${Math.round(delayMs)} ms): ${firstLine(err)}`);
}

/**
 * Every command that takes a bundle folder takes a one-file archive too (whole or split), and
 * reads it in place: members are streamed from their offsets, nothing is unpacked to disk.
 */
export async function withBundle(arg: string, run: (bundle: BundleContents) => Promise<void>): Promise<void> {
  const { openBundle } = await import("../bundle/contents.js");
  await run(await openBundle(arg));
}

export async function readKeyFile(file: string, flag: string): Promise<string> {
  const [{ readFile }, { fsReason }] = await Promise.all([
    import("node:fs/promises"),
    import("../util/files.js"),
  ]);
  return readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    throw new InputError(`${flag} ${file}: cannot read it: ${fsReason(err)}`);
  });
}

/**
 * With a public key, a lock not signed by it stops the command (exit 1) before anything else;
 * so do charts, templates and values that differ from it, unless the command (verify) is about
 * to check and report every file itself.
 */
export async function checkSignature(
  bundle: BundleContents,
  publicKeyFile: string | undefined,
  out: Output,
  opts: { covered: boolean } = { covered: true },
): Promise<void> {
  if (!publicKeyFile) return;
  const { verifyLockSignature } = await import("../bundle/sign.js");
  await verifyLockSignature(bundle, await readKeyFile(publicKeyFile, "--public-key"));
  if (!opts.covered) return out.info(`the lock's signature verifies with ${publicKeyFile}`);
  // The signature covers the lock; the charts, templates and values through the lock's digests of them.
  const { verifyCovered } = await import("../stages/verify.js");
  const covered = await verifyCovered(bundle);
  if (!covered.ok) {
    throw new WorkError(
      `the bundle differs from the signed lock; nothing was done:\n${covered.problems.map((p) => `  - ${p.kind}: ${p.item}: ${p.detail}`).join("\n")}`,
    );
  }
  out.info(
    `the lock's signature verifies with ${publicKeyFile}, and the charts, templates and values match it`,
  );
}

/** The client of `--fileserver`, for upload and deploy; undefined without the flag. */
export async function fileServer(
  flags: HttpFlags & { fileserver?: string; tokenFile?: string; insecure?: boolean; caFile?: string },
) {
  if (!flags.fileserver) return undefined;
  const { FileServerClient } = await import("../fileserver/client.js");
  const { readTokenFile } = await import("../fileserver/serve.js");
  const { envRetry, httpTimeouts } = await import("./registries.js");
  const token = flags.tokenFile ? await readTokenFile(flags.tokenFile) : undefined;
  return new FileServerClient(flags.fileserver, {
    ...(token ? { token } : {}),
    ...(flags.insecure ? { insecure: true } : {}),
    ...(flags.caFile ? { caFile: flags.caFile } : {}),
    timeouts: httpTimeouts(flags),
    retry: envRetry(),
  });
}

/** dockerode (and ssh2 under it) costs a tenth of a second to load: only when a daemon is used. */
export async function docker() {
  const [{ default: Dockerode }, store] = await Promise.all([
    import("dockerode"),
    import("../store/docker.js"),
  ]);
  return { client: new Dockerode(), store };
}

/** The one-file archive of `pack`, and of `prepare --archive`. */
export async function packArchive(dir: string, file: string, split: string | undefined) {
  const { packBundle } = await import("../bundle/archive.js");
  const splitBytes = split ? parseByteSize(split, "--split") : undefined;
  return packBundle(dir, file, splitBytes ? { splitBytes } : {});
}

export function packedLine(dir: string, packed: { files: string[]; bytes: number }): string {
  return `${dir} packed into ${packed.files.join(", ")} (${formatBytes(packed.bytes)})`;
}
