/** Where `prepare --with-tool` finds this tool's own files. */
import path from "node:path";
import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { InputError, WorkError } from "../util/errors.js";
import { TOOL_EXECUTABLES, TOOL_FILE, type CarriedTool } from "../stages/files.js";
import { PACKAGE_ROOT, STANDALONE_FILE } from "../version.js";
import type { Output } from "./output.js";

/**
 * What `--with-tool` carries: the file given, as bundle.mjs; else this very tool, self-contained:
 * the standalone bundle.mjs itself, or the executables for linux x64 and arm64.
 */
export async function toolFiles(given: boolean | string, out: Output): Promise<CarriedTool[]> {
  const self = STANDALONE_FILE ? fileURLToPath(import.meta.url) : undefined;
  const file = typeof given === "string" ? path.resolve(given) : self;
  if (file) {
    if (!(await stat(file).catch(() => undefined))) {
      throw new InputError(`--with-tool: ${file} does not exist; build it with npm run build:standalone`);
    }
    return [{ source: file, path: TOOL_FILE }];
  }
  const { isSea } = await import("node:sea");
  const exes = isSea() ? await besideExecutable() : await checkoutExecutables(out);
  return TOOL_EXECUTABLES.map((p, i) => ({ source: exes[i]!, path: p }));
}

/**
 * Run as an executable: itself for this machine's architecture, and the other one from the same
 * folder under its own name (where `--with-tool` put them beside each other).
 */
async function besideExecutable(): Promise<string[]> {
  const dir = path.dirname(process.execPath);
  const files = TOOL_EXECUTABLES.map((p) => path.basename(p));
  const own = `bundle-linux-${process.arch}`;
  const paths = files.map((f) => (f === own ? process.execPath : path.join(dir, f)));
  const missing = [];
  for (const p of paths) if (!(await stat(p).catch(() => undefined))) missing.push(p);
  if (missing.length > 0) {
    throw new InputError(`--with-tool: ${missing.join(", ")} missing (the executables travel as a pair)`);
  }
  return paths;
}

/**
 * Run from a checkout: dist/exe's executables, made by scripts/build-exe.mjs (npm run build:exe)
 * first when they are not there.
 */
async function checkoutExecutables(out: Output): Promise<string[]> {
  const root = PACKAGE_ROOT;
  const paths = TOOL_EXECUTABLES.map((p) => path.join(root, "dist/exe", path.basename(p)));
  const present = await Promise.all(paths.map((p) => stat(p).then(Boolean, () => false)));
  if (present.every(Boolean)) return paths;
  const script = path.join(root, "scripts/build-exe.mjs");
  if (!(await stat(script).catch(() => undefined))) {
    throw new InputError(
      `--with-tool: no executables in ${path.dirname(paths[0]!)}; build them with npm run build:exe in a checkout of bundle`,
    );
  }
  out.info(`--with-tool: building ${paths.map((p) => path.basename(p)).join(" and ")} (npm run build:exe)`);
  const { execFile } = await import("node:child_process");
  await new Promise<void>((resolve, reject) =>
    execFile(process.execPath, [script, "--quiet"], { cwd: root }, (err, _stdout, stderr) =>
      err
        ? reject(new WorkError(`--with-tool: npm run build:exe failed: ${stderr.trim() || err.message}`))
        : resolve(),
    ),
  );
  return paths;
}
