/**
 * `bundle deploy`: preflight first (helm, every image digest on the site's registry, every file
 * on the file server, every value bound), then each release's chart is prepared (overlays,
 * generated mirror overrides, the definition's values files), checked against the rules known to
 * break it, rendered with `helm template` exactly as it will be installed, and proved: every image
 * the rendered objects run must be on the site registry under its mirror name. Only when every
 * release passes does `helm upgrade --install` run, release by release. `--dry-run` does all of
 * it but the install and prints the commands.
 */
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { access, chmod, constants, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "yaml";
import { type Lock, type LockRelease } from "../bundle/lock.js";
import { extractFile, extractFolder, type BundleContents } from "../bundle/contents.js";
import type { Values } from "../config/model.js";
import { parseImageRef } from "../config/imageRef.js";
import { parseMirror } from "../config/mirror.js";
import type { ImageSource } from "../store/types.js";
import type { Reporter } from "../util/reporter.js";
import { InputError, WorkError, formatDiagnostic } from "../util/errors.js";
import { resolveInside, writeInside } from "../util/paths.js";
import { plural } from "../util/format.js";
import { bundleValues, mirrorLocation } from "./upload.js";
import { plannedFiles, renderLockTemplate, type FileTarget } from "./siteFiles.js";
import type { ValueOptions } from "../config/values.js";
import { proveRelease, type Proof } from "./proof.js";
import { verifyCharts } from "./verify.js";

export interface DeployOptions {
  /** The bundle, a folder or an archive: only its charts (and a carried helm) are copied out. */
  bundle: BundleContents;
  /** The site's registry `host[:port]` and a client for it; needed when the bundle has images. */
  registryHost?: string;
  registry?: ImageSource;
  /** The file server; needed when the bundle has files. */
  fileserver?: FileTarget;
  fileserverUrl?: string;
  valueOptions?: ValueOptions;
  dryRun: boolean;
  helm?: string;
  kubeContext?: string;
  kubeconfig?: string;
  atomic?: boolean;
  timeout: string;
  /** Where the final charts and values files go; default `<DIR>/deploy`, `./bundle-deploy` for an archive. */
  workDir?: string;
  /** Outside fetches in the rendered charts are errors, not warnings. */
  strict?: boolean;
  /** Lint rules not to apply (`--skip-lint RULE`). */
  skipLint?: string[];
  out: Reporter;
}

export interface DeployedRelease {
  name: string;
  namespace: string;
  command: string[];
  valuesFiles: string[];
  ran: boolean;
  /** What the render proof found; absent when no helm was there to render with (a dry run). */
  proof?: { images: number; outside: number; file: string };
}

export async function deploy(opts: DeployOptions): Promise<{ lock: Lock; releases: DeployedRelease[] }> {
  const bundle = opts.bundle;
  const lock = bundle.lock;
  const values = await bundleValues(bundle, siteOf(opts));
  await requireSite(lock, values, opts);
  const workDir = path.resolve(opts.workDir ?? (await defaultWorkDir(bundle)));
  const helm = await preflight(lock, values, workDir, opts);
  if (lock.releases.length === 0) {
    opts.out.info(
      `the bundle ${lock.name} has no releases: nothing to deploy (the mirrors hold what it carries)`,
    );
    return { lock, releases: [] };
  }
  const prepared: PreparedRelease[] = [];
  await mkdir(workDir, { recursive: true });
  for (const release of lock.releases) {
    const dir = await resolveInside(workDir, release.name, "a release's work folder");
    prepared.push(await prepareRelease(lock, release, values, dir, opts));
  }
  await lintGate(prepared, opts);
  const proofs = await proveAll(prepared, helm, opts);
  const releases: DeployedRelease[] = [];
  for (const [i, p] of prepared.entries()) {
    const command = [helm ?? "helm", ...helmArgs("upgrade", p, opts)];
    if (!opts.dryRun) await runHelm(command, p.release.name, opts.out);
    const proof = proofs[i];
    releases.push({
      name: p.release.name,
      namespace: p.release.namespace,
      command,
      valuesFiles: p.valuesFiles,
      ran: !opts.dryRun,
      ...(proof
        ? { proof: { images: distinctImages(proof), outside: proof.outside.length, file: proof.file } }
        : {}),
    });
  }
  return { lock, releases };
}

function siteOf(opts: DeployOptions) {
  return {
    ...(opts.registryHost ? { registryHost: opts.registryHost } : {}),
    ...(opts.fileserverUrl ? { fileserverUrl: opts.fileserverUrl } : {}),
    ...(opts.valueOptions ? { valueOptions: opts.valueOptions } : {}),
  };
}

/** The SPEC: --registry is needed when the bundle has images, --fileserver when it has files. */
async function requireSite(lock: Lock, values: Values, opts: DeployOptions): Promise<void> {
  if (lock.images.length > 0 && (!opts.registryHost || !opts.registry))
    throw new InputError(`the bundle carries ${lock.images.length} images: give --registry REG`);
  if (!opts.fileserver) {
    const files = await plannedFiles(opts.bundle, values).catch(() => [{}]);
    if (files.length > 0)
      throw new InputError(`the bundle carries ${files.length} files: give --fileserver URL`);
  }
}

/** A folder's own `deploy/` (not a link out of it); an archive is not written to, so `./bundle-deploy`. */
async function defaultWorkDir(bundle: BundleContents): Promise<string> {
  return bundle.isArchive ? "bundle-deploy" : resolveInside(bundle.where, "deploy", "deploy's work folder");
}

/** Everything that must hold before helm runs, listed together; returns the helm to run. */
async function preflight(
  lock: Lock,
  values: Values,
  workDir: string,
  opts: DeployOptions,
): Promise<string | undefined> {
  const problems: string[] = [];
  const helm = await findHelm(lock, workDir, opts).catch(
    (err: Error) => (problems.push(err.message), undefined),
  );
  const images = await missingImages(lock, opts);
  const files = await missingFiles(lock, values, opts);
  problems.push(...images.problems, ...files.problems);
  // The charts are used as the lock lists them, byte for byte (a signature covers that list).
  const charts = await verifyCharts(opts.bundle, lock, [...new Set(lock.releases.map((r) => r.chart))]);
  problems.push(...charts.problems.map((p) => `${p.kind}: ${p.item}: ${p.detail}`));
  for (const t of lock.templates) {
    await renderLockTemplate(t, opts.bundle, values).catch((err: Error) => problems.push(err.message));
  }
  if (problems.length > 0) {
    throw new WorkError(
      `preflight failed; nothing was deployed:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  }
  const out = opts.out;
  out.debug(`preflight: helm ${helm ?? "not found (dry run: the render proof is skipped)"}`);
  out.debug(
    `preflight: ${images.checked} images on ${opts.registryHost ?? "no registry"} with the lock's digests`,
  );
  out.debug(
    `preflight: ${files.checked} files on ${opts.fileserverUrl ?? "no file server"} with the lock's sha256`,
  );
  out.debug(`preflight: ${lock.templates.length} templates render with the site's values`);
  out.info(
    `preflight: ${images.checked} images, ${files.checked} files and ${lock.templates.length} templates in place`,
  );
  return helm;
}

async function missingImages(
  lock: Lock,
  opts: DeployOptions,
): Promise<{ checked: number; problems: string[] }> {
  const { registry, registryHost } = opts;
  if (!registry || !registryHost) return { checked: 0, problems: [] };
  const checks = lock.images.map(async (img) => {
    const loc = mirrorLocation(img, registryHost);
    const head = await registry.headManifest(loc).catch((err: Error) => err);
    if (head instanceof Error) return `${loc.name}: ${head.message}`;
    if (!head)
      return `${loc.name} is not on the registry (expected ${img.mirrorDigest}); run bundle upload first`;
    if (head.digest !== img.mirrorDigest)
      return `${loc.name} names ${head.digest}; the bundle expects ${img.mirrorDigest}`;
    return undefined;
  });
  const problems = (await Promise.all(checks)).filter((p): p is string => p !== undefined);
  return { checked: lock.images.length, problems };
}

async function missingFiles(
  lock: Lock,
  values: Values,
  opts: DeployOptions,
): Promise<{ checked: number; problems: string[] }> {
  const fileserver = opts.fileserver;
  if (!fileserver) return { checked: 0, problems: [] };
  const planned = await plannedFiles(opts.bundle, values).catch((err: Error) => err);
  if (planned instanceof Error) return { checked: 0, problems: [planned.message] };
  const remote = new Map((await fileserver.list(lock.name)).map((f) => [f.path, f.sha256]));
  const problems = planned
    .filter((f) => remote.get(f.path) !== f.sha256)
    .map((f) =>
      remote.has(f.path)
        ? `${fileserver.url(lock.name, f.path)} holds sha256 ${remote.get(f.path)}; the bundle expects ${f.sha256}`
        : `${fileserver.url(lock.name, f.path)} is missing; run bundle upload first`,
    );
  return { checked: planned.length, problems };
}

/**
 * `--helm PATH`, else a helm the bundle carries (a file named `helm`, e.g. from an extracted
 * release archive; copied out to the work folder's bin/, checked against the lock), else helm
 * on PATH. A dry run needs none (and then proves nothing).
 */
async function findHelm(lock: Lock, workDir: string, opts: DeployOptions): Promise<string | undefined> {
  if (opts.helm) {
    await access(opts.helm, constants.X_OK).catch(() => {
      throw new WorkError(`--helm ${opts.helm}: not an executable file`);
    });
    return opts.helm;
  }
  const carried = lock.files.find((f) => path.posix.basename(f.path) === "helm");
  if (carried) {
    // Copied out, its bytes checked against the lock on the way, from a folder as from an
    // archive: what runs is what was prepared, and the bundle's own file is not touched.
    const file = path.join(workDir, "bin", "helm");
    await extractFile(opts.bundle, `files/${carried.path}`, file);
    await chmod(file, 0o755);
    return file;
  }
  const onPath = await helmOnPath();
  if (onPath || opts.dryRun) return onPath;
  throw new WorkError(
    "helm was not found: install it, give --helm PATH, or carry it in the bundle as a file named helm",
  );
}

/** The first executable `helm` on PATH. */
export async function helmOnPath(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter).filter(Boolean)) {
    const file = path.join(dir, "helm");
    const found = await access(file, constants.X_OK).then(
      () => true,
      () => false,
    );
    if (found) return file;
  }
  return undefined;
}

export interface PreparedRelease {
  release: LockRelease;
  dir: string;
  chartDir: string;
  generated: string;
  valuesFiles: string[];
  /** Each values file's name for messages: its bundle path. */
  valuesNames: string[];
}

/**
 * The chart copied with the definition's overlays applied, then the generated overrides that
 * point every image it names at the site registry (overlaid files and a values file placed first),
 * then the definition's values files, which have the last word.
 */
export async function prepareRelease(
  lock: Lock,
  release: LockRelease,
  values: Values,
  dir: string,
  opts: Pick<DeployOptions, "bundle" | "registryHost">,
): Promise<PreparedRelease> {
  await rm(dir, { recursive: true, force: true });
  const chartDir = path.join(dir, "chart");
  await extractFolder(opts.bundle, `charts/${release.chart}`, chartDir);
  const prefix = `charts/${release.chart}/`;
  for (const t of lock.templates.filter((x) => x.dest.startsWith(prefix))) {
    // writeInside keeps the path inside the chart and the mode to permission bits.
    await writeInside(
      chartDir,
      t.dest.slice(prefix.length),
      await renderLockTemplate(t, opts.bundle, values),
      t.mode,
    );
  }
  const valuesFiles: string[] = [];
  for (const [i, bundlePath] of release.valuesFiles.entries()) {
    const file = path.join(dir, `values-${i + 1}-${path.posix.basename(bundlePath)}`);
    await writeFile(file, await valuesFileText(lock, bundlePath, release, chartDir, values, opts));
    valuesFiles.push(file);
  }
  const generated = path.join(dir, "generated-values.yaml");
  const overrides = opts.registryHost
    ? await generatedOverrides(chartDir, lock, opts.registryHost, valuesFiles)
    : { yaml: "{}\n", overlays: [] };
  for (const o of overrides.overlays) await writeInside(chartDir, o.path, o.text);
  await writeFile(generated, overrides.yaml);
  return { release, dir, chartDir, generated, valuesFiles, valuesNames: release.valuesFiles };
}

/** A values file of the definition: a template rendered now, a bundle file, or a file of the chart. */
async function valuesFileText(
  lock: Lock,
  bundlePath: string,
  release: LockRelease,
  chartDir: string,
  values: Values,
  opts: Pick<DeployOptions, "bundle">,
): Promise<string> {
  const template = lock.templates.find((t) => t.dest === bundlePath);
  if (template) return renderLockTemplate(template, opts.bundle, values);
  const inChart = `charts/${release.chart}/`;
  if (bundlePath.startsWith(inChart))
    return readFile(await resolveInside(chartDir, bundlePath.slice(inChart.length)), "utf8");
  return (await opts.bundle.readFile(bundlePath)).toString("utf8");
}

/**
 * The values that point every image the chart names at its mirror, read from the chart with the
 * definition's overlays and values files, so what they leave pointing outside is pointed at the
 * mirror too. Where the values set `docker.registry.name` (OpenWhisk's prefix of every
 * imageName), imageNames are paths under it; otherwise each is the full mirror reference, as
 * Telego writes them.
 */
export async function generatedOverrides(
  chartDir: string,
  lock: Lock,
  registryHost: string,
  valuesFiles: string[],
): Promise<{ yaml: string; overlays: { path: string; text: string }[] }> {
  const { chartOverrides } = await import("../charts/overrides.js");
  const images = lock.images.map((i) => ({
    ref: parseImageRef(i.ref.replace(/^docker-daemon:/, "")),
    mirror: parseMirror(i.mirror),
  }));
  const registryName = await userRegistryName(valuesFiles);
  const o = await chartOverrides(chartDir, { images }, registryHost, {
    style: registryName ? "registry-name" : "image-name",
    valuesFiles,
  });
  return {
    yaml: o.yaml,
    overlays: [
      ...(o.runtimes ? [{ path: o.runtimes.file, text: o.runtimes.json }] : []),
      ...o.templates.map((t) => ({ path: t.file, text: t.text })),
    ],
  };
}

/** The last `docker.registry.name` the values files set to something other than "". */
async function userRegistryName(files: string[]): Promise<string | undefined> {
  let name: string | undefined;
  for (const file of files) {
    const data: unknown = parse(await readFile(file, "utf8"));
    const value = (data as { docker?: { registry?: { name?: unknown } } } | null)?.docker?.registry?.name;
    if (typeof value === "string") name = value === "" ? undefined : value;
  }
  return name;
}

/** The OpenWhisk rules (CONTEXT.md) on the values each OpenWhisk release will be installed with. */
async function lintGate(prepared: PreparedRelease[], opts: DeployOptions): Promise<void> {
  const { lintOpenWhiskValues, isOpenWhiskChart } = await import("../charts/lint.js");
  const lines: string[] = [];
  for (const p of prepared) {
    if (!(await isOpenWhiskChart(p.chartDir))) continue;
    const named = [
      { file: `charts/${p.release.chart}/values.yaml`, path: path.join(p.chartDir, "values.yaml") },
      { file: "generated overrides", path: p.generated },
      ...p.valuesFiles.map((f, i) => ({ file: p.valuesNames[i] ?? f, path: f })),
    ];
    const files = await Promise.all(
      named.map(async (n) => ({ file: n.file, text: await readFile(n.path, "utf8").catch(() => "") })),
    );
    for (const d of lintOpenWhiskValues(files, opts.skipLint ?? [])) {
      lines.push(
        `  - release ${p.release.name}: ${formatDiagnostic(d)}${d.rule ? ` (--skip-lint ${d.rule} to go on)` : ""}`,
      );
    }
  }
  if (lines.length > 0)
    throw new InputError(`the values would break the deployment; nothing was deployed:\n${lines.join("\n")}`);
}

/** Renders and proves every release before any is installed; writes each proof.json. */
async function proveAll(
  prepared: PreparedRelease[],
  helm: string | undefined,
  opts: DeployOptions,
): Promise<(Proof | undefined)[]> {
  if (!helm) {
    opts.out.warn(
      "helm was not found: the charts were not rendered, so no image was proved to be on the mirror",
    );
    return prepared.map(() => undefined);
  }
  const proofs: Proof[] = [];
  const problems: string[] = [];
  for (const p of prepared) {
    const rendered = path.join(p.dir, "rendered.yaml");
    await renderChart(helm, helmArgs("template", p, opts), rendered, p.release.name);
    const proof = await proveRelease({
      release: p.release.name,
      rendered,
      file: path.join(p.dir, "proof.json"),
      lock: opts.bundle.lock,
      ...siteOf(opts),
      ...(opts.registry ? { registry: opts.registry } : {}),
    });
    proofs.push(proof);
    problems.push(...proof.problems.map((x) => `release ${p.release.name}: ${x}`));
    const outside = proof.outside.map(
      (f) => `release ${p.release.name}: ${f.object} ${f.where}: ${f.text} (${f.why})`,
    );
    if (opts.strict) problems.push(...outside);
    else for (const line of outside) opts.out.warn(line);
    opts.out.info(
      `proof: release ${p.release.name} runs ${plural(distinctImages(proof), "image")}, ` +
        (proof.problems.length > 0
          ? `${proof.problems.length} of them pulled from outside the site registry`
          : "all on the site registry") +
        `; ${proof.outside.length} fetches from outside the site (${path.relative(process.cwd(), proof.file) || proof.file})`,
    );
  }
  if (problems.length > 0) {
    throw new WorkError(
      `the rendered charts reach outside the site; helm upgrade did not run:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  }
  return proofs;
}

function distinctImages(proof: Proof): number {
  return new Set(proof.images.map((i) => i.image)).size;
}

/**
 * `upgrade --install` or `template`, with exactly the same chart, values files and flags. The
 * release name and chart come last, after `--`: whatever they say, helm takes them as names,
 * never as an option (`--post-renderer=…`).
 */
export function helmArgs(
  verb: "upgrade" | "template",
  p: PreparedRelease,
  opts: Pick<DeployOptions, "timeout" | "kubeContext" | "kubeconfig" | "atomic">,
): string[] {
  return [
    ...(verb === "upgrade" ? ["upgrade", "--install"] : ["template"]),
    "--namespace",
    p.release.namespace,
    "--create-namespace",
    "-f",
    p.generated,
    ...p.valuesFiles.flatMap((f) => ["-f", f]),
    "--wait",
    "--timeout",
    opts.timeout,
    ...(opts.kubeContext ? ["--kube-context", opts.kubeContext] : []),
    ...(opts.kubeconfig ? ["--kubeconfig", opts.kubeconfig] : []),
    ...(opts.atomic ? ["--atomic"] : []),
    "--",
    p.release.name,
    p.chartDir,
  ];
}

/** `helm template` into `file`; a failure (a schema error, a template error) names the release. */
export async function renderChart(
  helm: string,
  args: string[],
  file: string,
  release: string,
): Promise<void> {
  const out = createWriteStream(file);
  let err = "";
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(helm, args, { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.pipe(out);
    child.stderr.on("data", (chunk: Buffer) => (err = (err + chunk.toString()).slice(-4000)));
    child.on("error", reject);
    child.on("close", (c) => resolve(c ?? 1));
  });
  await new Promise<void>((resolve) =>
    out.writableFinished ? resolve() : out.on("finish", () => resolve()),
  );
  if (code !== 0)
    throw new WorkError(
      `helm template ${release} failed (exit ${code}); nothing was deployed:\n${err.trim()}`,
    );
}

/** Runs helm with its output shown as it comes; a failure is exit 1 with helm's last lines. */
async function runHelm(command: string[], release: string, out: Reporter): Promise<void> {
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
