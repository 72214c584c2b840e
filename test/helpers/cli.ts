/** Runs the built `bundle` executable as a user would, capturing its exit code and output. */
import { execFile } from "node:child_process";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** What package.json's `bin` names: the esbuild build of `npm run build` (scripts/build-standalone.mjs --cli). */
export const CLI = fileURLToPath(new URL("../../bin/bundle.js", import.meta.url));
/** The repository's top folder (this file runs from dist/test/helpers). */
export const REPO = fileURLToPath(new URL("../../../", import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: opts.cwd ?? REPO, env: { ...process.env, ...opts.env }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(opts.input ?? "");
  });
}

/** A temporary folder holding the given files (path → content); removed by `cleanup`. */
export async function tempFiles(
  files: Record<string, string>,
  name = "def",
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(path.join(os.tmpdir(), "bundle-test-"));
  const dir = path.join(root, name);
  await mkdir(dir, { recursive: true });
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), content);
  }
  return { dir, cleanup: () => rm(root, { recursive: true, force: true }) };
}
