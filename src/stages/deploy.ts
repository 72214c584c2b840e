/**
 * `bundle deploy`: preflight first (helm, every image digest on the site's registry, every file
 * on the file server, every value bound), then `helm upgrade --install` for each release of the
 * bundle against the local mirrors, each under its own name, helm's exit code and output
 * surfaced. `--dry-run` prints the commands and writes the final values files instead.
 */
import { spawn } from "node:child_process";
import { access, chmod, constants, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { LOCK_FILE, type Lock, type LockRelease } from "../bundle/lock.js";
import { extractFile, extractFolder, type BundleContents } from "../bundle/contents.js";
import type { Definition, Values } from "../config/model.js";
import { parseImageRef } from "../config/imageRef.js";
import { parseMirror } from "../config/mirror.js";
import type { ImageSource } from "../store/types.js";
import type { Output } from "../cli/output.js";
import { WorkError } from "../util/errors.js";
import { bundleValues, mirrorLocation } from "./upload.js";
import { plannedFiles, renderLockTemplate, type FileTarget } from "./uploadFiles.js";
import type { ValueOptions } from "../config/values.js";

/** Values that point a chart's images at the site's registry, made from the chart and the lock. */
export type OverrideMaker = (
  chartDir: string,
  lock: Lock,
  registryHost: string,
) => Promise<GeneratedOverrides>;

export interface GeneratedOverrides {
  /** A values file applied before the definition's own. */
  yaml: string;
  /** Files to overlay in the chart (e.g. a runtimes manifest), before the definition's overlays. */
  overlays?: { path: string; text: string }[];
}

export interface DeployOptions {
  /** The bundle, a folder or an archive: only its charts (and a carried helm) are copied out. */
  bundle: BundleContents;
  registryHost: string;
  /** The site's registry, asked for every image's digest. */
  registry: ImageSource;
  fileserver: FileTarget;
  fileserverUrl: string;
  valueOptions?: ValueOptions;
  dryRun: boolean;
  helm?: string;
  kubeContext?: string;
  kubeconfig?: string;
  atomic?: boolean;
  timeout: string;
  /** Where the final charts and values files go; default `<DIR>/deploy`, `./bundle-deploy` for an archive. */
  workDir?: string;
  overrides?: OverrideMaker;
  out: Output;
}

export interface DeployedRelease {
  name: string;
  namespace: string;
  command: string[];
  valuesFiles: string[];
  ran: boolean;
}

export async function deploy(opts: DeployOptions): Promise<{ lock: Lock; releases: DeployedRelease[] }> {
  const bundle = opts.bundle;
  const lock = bundle.lock;
  const values = await bundleValues(bundle, opts);
  const workDir = path.resolve(opts.workDir ?? defaultWorkDir(bundle));
  const helm = await preflight(lock, values, workDir, opts);
  const releases: DeployedRelease[] = [];
  for (const release of lock.releases) {
    const prepared = await prepareRelease(lock, release, values, path.join(workDir, release.name), opts);
    const command = [helm, ...helmArgs(release, prepared, opts)];
    if (!opts.dryRun) await runHelm(command, release.name, opts.out);
    releases.push({
      name: release.name,
      namespace: release.namespace,
      command,
      valuesFiles: prepared.valuesFiles,
      ran: !opts.dryRun,
    });
  }
  return { lock, releases };
}

/** A folder's own `deploy/`; an archive is not written to, so `./bundle-deploy`. */
function defaultWorkDir(bundle: BundleContents): string {
  return bundle.isArchive ? "bundle-deploy" : path.join(bundle.where, "deploy");
}

/** Everything that must hold before helm runs, listed together; returns the helm to run. */
async function preflight(lock: Lock, values: Values, workDir: string, opts: DeployOptions): Promise<string> {
  const problems: string[] = [];
  const helm = await findHelm(lock, workDir, opts).catch(
    (err: Error) => (problems.push(err.message), "helm"),
  );
  problems.push(...(await missingImages(lock, opts)), ...(await missingFiles(lock, values, opts)));
  for (const t of lock.templates) {
    await renderLockTemplate(t, opts.bundle, values).catch((err: Error) => problems.push(err.message));
  }
  if (problems.length > 0) {
    throw new WorkError(
      `preflight failed; nothing was deployed:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  }
  return helm;
}

async function missingImages(lock: Lock, opts: DeployOptions): Promise<string[]> {
  const checks = lock.images.map(async (img) => {
    const loc = mirrorLocation(img, opts.registryHost);
    const head = await opts.registry.headManifest(loc).catch((err: Error) => err);
    if (head instanceof Error) return `${loc.name}: ${head.message}`;
    if (!head)
      return `${loc.name} is not on the registry (expected ${img.mirrorDigest}); run bundle upload first`;
    if (head.digest !== img.mirrorDigest)
      return `${loc.name} names ${head.digest}; the bundle expects ${img.mirrorDigest}`;
    return undefined;
  });
  return (await Promise.all(checks)).filter((p): p is string => p !== undefined);
}

async function missingFiles(lock: Lock, values: Values, opts: DeployOptions): Promise<string[]> {
  const planned = await plannedFiles(opts.bundle, values).catch((err: Error) => err);
  if (planned instanceof Error) return [planned.message];
  const remote = new Map((await opts.fileserver.list(lock.name)).map((f) => [f.path, f.sha256]));
  return planned
    .filter((f) => remote.get(f.path) !== f.sha256)
    .map((f) =>
      remote.has(f.path)
        ? `${opts.fileserver.url(lock.name, f.path)} holds sha256 ${remote.get(f.path)}; the bundle expects ${f.sha256}`
        : `${opts.fileserver.url(lock.name, f.path)} is missing; run bundle upload first`,
    );
}

/**
 * `--helm PATH`, else a helm the bundle carries (a file named `helm`, e.g. from an extracted
 * release archive; copied out to the work folder when the bundle is an archive), else helm on
 * PATH. A dry run needs none.
 */
async function findHelm(lock: Lock, workDir: string, opts: DeployOptions): Promise<string> {
  if (opts.helm) {
    await access(opts.helm, constants.X_OK).catch(() => {
      throw new WorkError(`--helm ${opts.helm}: not an executable file`);
    });
    return opts.helm;
  }
  const carried = lock.files.find((f) => path.posix.basename(f.path) === "helm");
  if (carried) {
    const rel = `files/${carried.path}`;
    const file = opts.bundle.isArchive
      ? path.join(workDir, "bin", "helm")
      : path.join(opts.bundle.where, rel);
    if (opts.bundle.isArchive) await extractFile(opts.bundle, rel, file);
    await chmod(file, 0o755).catch(() => undefined);
    return file;
  }
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).filter(Boolean)) {
    const file = path.join(dir, "helm");
    if (
      await access(file, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return file;
  }
  if (opts.dryRun) return "helm";
  throw new WorkError(
    "helm was not found: install it, give --helm PATH, or carry it in the bundle as a file named helm",
  );
}

interface PreparedRelease {
  chartDir: string;
  generated: string;
  valuesFiles: string[];
}

/** The chart copied with its overlays applied, the generated overrides and the definition's values files. */
async function prepareRelease(
  lock: Lock,
  release: LockRelease,
  values: Values,
  dir: string,
  opts: DeployOptions,
): Promise<PreparedRelease> {
  await rm(dir, { recursive: true, force: true });
  const chartDir = path.join(dir, "chart");
  await extractFolder(opts.bundle, `charts/${release.chart}`, chartDir);
  const generated = opts.overrides
    ? await opts.overrides(chartDir, lock, opts.registryHost)
    : { yaml: "{}\n" };
  for (const o of generated.overlays ?? []) await writeInside(chartDir, o.path, o.text);
  const prefix = `charts/${release.chart}/`;
  for (const t of lock.templates.filter((x) => x.dest.startsWith(prefix))) {
    await writeInside(
      chartDir,
      t.dest.slice(prefix.length),
      await renderLockTemplate(t, opts.bundle, values),
      t.mode,
    );
  }
  const generatedFile = path.join(dir, "generated-values.yaml");
  await writeFile(generatedFile, generated.yaml);
  const valuesFiles: string[] = [];
  for (const [i, bundlePath] of release.valuesFiles.entries()) {
    const file = path.join(dir, `values-${i + 1}-${path.posix.basename(bundlePath)}`);
    await writeFile(file, await valuesFileText(lock, bundlePath, release, chartDir, values, opts));
    valuesFiles.push(file);
  }
  return { chartDir, generated: generatedFile, valuesFiles };
}

/** A values file of the definition: a template rendered now, a bundle file, or a file of the chart. */
async function valuesFileText(
  lock: Lock,
  bundlePath: string,
  release: LockRelease,
  chartDir: string,
  values: Values,
  opts: DeployOptions,
): Promise<string> {
  const template = lock.templates.find((t) => t.dest === bundlePath);
  if (template) return renderLockTemplate(template, opts.bundle, values);
  const inChart = `charts/${release.chart}/`;
  if (bundlePath.startsWith(inChart))
    return readFile(path.join(chartDir, bundlePath.slice(inChart.length)), "utf8");
  return (await opts.bundle.readFile(bundlePath)).toString("utf8");
}

async function writeInside(root: string, rel: string, text: string, mode = 0o644): Promise<void> {
  const file = path.join(root, rel);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
  await chmod(file, mode);
}

/**
 * The values that point every image the chart names at its mirror, read from the chart as
 * prepared (before the definition's overlays, which then have the last word). Telego's
 * image-name style: `docker.registry.name` empty and each imageName the full mirror path, which
 * agrees with a Telego override that sets the same.
 */
export const generatedOverrides: OverrideMaker = async (chartDir, lock, registryHost) => {
  const { chartOverrides } = await import("../charts/overrides.js");
  const images = lock.images.map((i) => ({
    ref: parseImageRef(i.ref),
    source: i.source,
    platforms: i.platforms.map((p) => p.platform),
    allowMissingPlatforms: true,
    mirror: parseMirror(i.mirror),
    at: { file: LOCK_FILE, line: 1, col: 1 },
  }));
  const o = await chartOverrides(chartDir, { images } as unknown as Definition, registryHost, {
    style: "image-name",
  });
  return {
    yaml: o.yaml,
    overlays: [
      ...(o.runtimes ? [{ path: o.runtimes.file, text: o.runtimes.json }] : []),
      ...o.templates.map((t) => ({ path: t.file, text: t.text })),
    ],
  };
};

function helmArgs(release: LockRelease, prepared: PreparedRelease, opts: DeployOptions): string[] {
  return [
    "upgrade",
    "--install",
    release.name,
    prepared.chartDir,
    "--namespace",
    release.namespace,
    "--create-namespace",
    "-f",
    prepared.generated,
    ...prepared.valuesFiles.flatMap((f) => ["-f", f]),
    "--wait",
    "--timeout",
    opts.timeout,
    ...(opts.kubeContext ? ["--kube-context", opts.kubeContext] : []),
    ...(opts.kubeconfig ? ["--kubeconfig", opts.kubeconfig] : []),
    ...(opts.atomic ? ["--atomic"] : []),
  ];
}

/** Runs helm with its output shown as it comes; a failure is exit 1 with helm's last lines. */
async function runHelm(command: string[], release: string, out: Output): Promise<void> {
  const [bin, ...args] = command as [string, ...string[]];
  out.info(`$ ${command.map(shellQuote).join(" ")}`);
  let tail = "";
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    const show = (chunk: Buffer) => {
      process.stderr.write(chunk);
      tail = (tail + chunk.toString()).slice(-4000);
    };
    child.stdout.on("data", show);
    child.stderr.on("data", show);
    child.on("error", reject);
    child.on("close", (c) => resolve(c ?? 1));
  });
  if (code !== 0) {
    throw new WorkError(
      `helm upgrade --install ${release} failed (exit ${code}); later releases were not deployed:\n${tail.trim()}`,
    );
  }
}

export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}
