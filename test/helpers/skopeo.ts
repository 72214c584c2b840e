import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { Credentials } from "./http.js";

const execFileAsync = promisify(execFile);

export interface SkopeoOptions {
  creds?: Credentials;
}

/**
 * The raw manifest bytes as skopeo sees them: an independent reader of what a registry holds.
 * `ref` is "HOST/repo:tag" or "HOST/repo@sha256:...". Always anonymous unless creds are given,
 * so the caller's own auth files cannot make a test pass.
 */
export async function skopeoInspectRaw(ref: string, opts: SkopeoOptions = {}): Promise<Buffer> {
  const args = ["inspect", "--raw", "--tls-verify=false", ...credArgs(opts.creds), `docker://${ref}`];
  const { stdout } = await runSkopeo(args);
  return stdout;
}

/**
 * Copies every platform of `ref` into an OCI layout under the ref name `opts.name` (default
 * "copy"); skopeo checks each blob's digest on the way.
 */
export async function skopeoCopyToOciLayout(
  ref: string,
  layoutDir: string,
  opts: SkopeoOptions & { name?: string } = {},
): Promise<void> {
  const creds = opts.creds
    ? ["--src-creds", `${opts.creds.username}:${opts.creds.password}`]
    : ["--src-no-creds"];
  await runSkopeo([
    "copy",
    "--all",
    "--src-tls-verify=false",
    ...creds,
    `docker://${ref}`,
    `oci:${layoutDir}:${opts.name ?? "copy"}`,
  ]);
}

function credArgs(creds: Credentials | undefined): string[] {
  return creds ? ["--creds", `${creds.username}:${creds.password}`] : ["--no-creds"];
}

async function runSkopeo(args: string[]): Promise<{ stdout: Buffer }> {
  try {
    const { stdout } = await execFileAsync("skopeo", args, {
      encoding: "buffer",
      maxBuffer: 64 * 1024 * 1024,
    });
    return { stdout };
  } catch (error) {
    // Not String(error): that repeats the command line, credentials included.
    const { stderr, code } = error as { stderr?: Buffer; code?: unknown };
    throw new Error(`skopeo ${args[0]} failed (exit ${String(code)}): ${stderr?.toString().trim() ?? ""}`);
  }
}

/** The raw manifest bytes of `name` in an OCI layout, as skopeo reads them. */
export async function skopeoInspectLayout(layoutDir: string, name: string): Promise<Buffer> {
  const { stdout } = await runSkopeo(["inspect", "--raw", `oci:${layoutDir}:${name}`]);
  return stdout;
}
