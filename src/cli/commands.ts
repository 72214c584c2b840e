/**
 * The stage commands: flags in, a stage run, a result out (a table, or JSON with --json).
 * Loaded only when one of them runs, so `bundle lint` and `--help` stay quick.
 */
import { loadDefinition, parsePlatformList } from "../config/load.js";
import { formatImageRef } from "../config/imageRef.js";
import { prepare } from "../stages/prepare.js";
import { parseOciRef } from "../charts/fetch.js";
import { imageTable } from "../stages/transfer.js";
import { readLock } from "../bundle/lock.js";
import { resolveEndpoint } from "../registry/endpoint.js";
import { formatBytes, parseByteSize, table } from "../util/format.js";
import { InputError, WorkError, firstLine } from "../util/errors.js";
import type { ChartSource, Definition, ImageItem } from "../config/model.js";
import type { Output } from "./output.js";
import path from "node:path";
import { readFile, rm, stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import os from "node:os";
import type { DockerDaemonSource } from "../store/docker.js";
import type { BundleContents } from "../bundle/contents.js";
import { envRetry, httpTimeouts, registryAccess, type HttpFlags, type RegistryFlags } from "./registries.js";
import { fsReason } from "../util/files.js";
import { TOOL_EXECUTABLES, TOOL_FILE, type CarriedTool, type GitOps } from "../stages/files.js";

/** src/git, loaded (with simple-git and tar) only when a definition has git items to fetch. */
function lazyGit(): GitOps {
  const git = () => import("../git/index.js");
  return {
    fetchCommit: async (...args) => (await git()).fetchCommit(...args),
    writeArchive: async (...args) => (await git()).writeArchive(...args),
    copyChart: async (...args) => (await git()).copyChart(...args),
  };
}

interface ValueFlags {
  set?: string[];
  values?: string[];
}

export interface PrepareFlags extends RegistryFlags, ValueFlags {
  file: string;
  output?: string;
  name?: string;
  platform?: string;
  archive?: string;
  continueOnError?: boolean;
  /** false with --no-referrers. */
  referrers?: boolean;
  withTool?: boolean | string;
  signKey?: string;
  verifyKey?: string[];
  since?: string;
  split?: string;
  maxDownload: string;
  allowOutside?: boolean;
}

export interface UploadFlags extends RegistryFlags, ValueFlags {
  registry?: string;
  fileserver?: string;
  tokenFile?: string;
  continueOnError?: boolean;
  publicKey?: string;
}

/** Transient faults are retried quietly; --verbose shows each retry. */
function retryLogger(out: Output) {
  return (err: unknown, attempt: number, delayMs: number) =>
    out.debug(`retrying (attempt ${attempt + 1}, in ${Math.round(delayMs)} ms): ${firstLine(err)}`);
}

/** The host a chart comes from when it comes from a server: what Docker's config and --username key by. */
function chartHost(source: ChartSource): string[] {
  if (source.kind === "oci") return [parseOciRef(source.ref).host];
  return source.kind === "repo" ? [new URL(source.url).host] : [];
}

export async function prepareCommand(flags: PrepareFlags, out: Output): Promise<void> {
  // A private repository without a credential helper would wait on a password prompt nobody
  // sees behind the progress display: fail instead, naming the URL.
  process.env.GIT_TERMINAL_PROMPT ??= "0";
  const downloads = {
    timeouts: httpTimeouts(flags),
    maxBytes: parseByteSize(flags.maxDownload, "--max-download"),
    retry: envRetry(),
  };
  // Read before the long work, so a wrong path or lock fails at once.
  const update = flags.since ? await import("../bundle/update.js") : undefined;
  const old = flags.since ? await update?.readOldLock(flags.since) : undefined;
  const signKey = flags.signKey ? await readKeyFile(flags.signKey, "--sign-key") : undefined;
  const verifyKeys = flags.verifyKey?.length ? await readVerifyKeys(flags.verifyKey) : undefined;
  const def = await loadDefinition(flags.file, {
    ...(flags.name ? { name: flags.name } : {}),
    ...(flags.platform ? { platforms: parsePlatformList(flags.platform) } : {}),
    set: flags.set ?? [],
    valuesFiles: flags.values ?? [],
    ...(flags.allowOutside ? { allowOutside: true } : {}),
  });
  // Which registries (and Helm repositories) the images and charts come from decides where --username applies.
  const hosts = [
    ...def.images.filter((i) => i.source === "registry").map((i) => i.ref.registry),
    ...def.charts.flatMap((c) => chartHost(c.source)),
  ];
  // Prepare's only target is the bundle's layout, which hashes every blob as it writes it (a
  // resumed prefix too) and refuses one whose size or digest is not the descriptor's before it
  // gets its name; the download stops at the descriptor's size. A second sha256 pass in the
  // source store would cost as much as the copy on two cores and check nothing more.
  const access = await registryAccess(flags, hosts, retryLogger(out), { verifyBlobs: false });
  const daemon = await lazyDaemonSource(
    path.resolve(flags.output ?? path.join("bundle-out", def.name), ".docker-export"),
    def.images.some((i) => i.source === "docker"),
  );
  const result = await prepare({
    def,
    ...(flags.output ? { output: flags.output } : {}),
    continueOnError: flags.continueOnError ?? false,
    openSource: (img: ImageItem) =>
      img.source === "docker" ? daemon.source() : access.source(img.ref.registry),
    git: lazyGit(),
    ...(flags.withTool ? { tools: await toolFiles(flags.withTool, out) } : {}),
    gitCacheDir: gitCacheDir(),
    downloads,
    out,
    ...(old && update ? { siteLayers: update.lockLayers(old) } : {}),
    ...(verifyKeys ? { verifyKeys } : {}),
    chartRegistry: (host) => access.store(host).client,
    ...(access.credentials ? { chartCredentials: access.credentials } : {}),
    chartMirror: (host) => access.mirrorClient(host),
    ...(flags.referrers === false ? { noReferrers: true } : {}),
  }).finally(() => daemon.dispose());
  if (flags.since) await makeUpdate(result.dir, flags.since, out);
  if (signKey) {
    const { signLock } = await import("../bundle/sign.js");
    await signLock(result.dir, signKey);
    out.info(`signed ${result.dir}/bundle.lock.json with ${flags.signKey}`);
  }
  // One result on stdout (one JSON document with --json): the archive is part of it.
  const archive = flags.archive ? await packArchive(result.dir, flags.archive, flags.split) : undefined;
  out.result(
    {
      ok: true,
      dir: result.dir,
      name: result.lock.name,
      bytesMoved: result.bytesMoved,
      images: result.lock.images,
      ...(archive ? { archive } : {}),
    },
    () => [
      ...table(["IMAGE", "PLATFORMS", "SIZE", "MIRROR"], imageTable(result.lock.images)),
      `bundle "${result.lock.name}" written to ${result.dir} (${formatBytes(result.bytesMoved)} fetched)`,
      ...(archive ? [packedLine(result.dir, archive)] : []),
    ],
  );
}

/** dockerode (and ssh2 under it) costs a tenth of a second to load: only when a daemon is used. */
async function docker() {
  const [{ default: Dockerode }, store] = await Promise.all([
    import("dockerode"),
    import("../store/docker.js"),
  ]);
  return { client: new Dockerode(), store };
}

/** One export area for `docker-daemon:` images, made on first use, on the bundle's own disk. */
async function lazyDaemonSource(tmpDir: string, needed: boolean) {
  const d = needed ? await docker() : undefined;
  let source: DockerDaemonSource | undefined;
  return {
    source: () => {
      if (!d) throw new Error("no Docker daemon source was set up");
      return (source ??= new d.store.DockerDaemonSource(d.client, { tmpDir }));
    },
    dispose: async () => {
      await source?.dispose();
      await rm(tmpDir, { recursive: true, force: true });
    },
  };
}

export interface LoadFlags {
  docker?: boolean;
  image?: string[];
  tagAs: string;
  registry?: string;
}

export async function loadCommand(dir: string, flags: LoadFlags, out: Output): Promise<void> {
  if (!flags.docker)
    throw new InputError("bundle load needs --docker (the only place it loads into for now)");
  if (flags.tagAs !== "source" && flags.tagAs !== "mirror") {
    throw new InputError(`--tag-as ${flags.tagAs}: expected source or mirror`);
  }
  const { loadIntoDocker } = await import("../stages/load.js");
  const result = await loadIntoDocker(dir, {
    docker: (await docker()).client,
    tagAs: flags.tagAs,
    ...(flags.image?.length ? { images: flags.image } : {}),
    ...(flags.registry ? { registry: resolveEndpoint(flags.registry).host } : {}),
  });
  out.result({ ok: true, ...result }, () => [
    ...table(
      ["IMAGE", "TAG", "IMAGE ID", "DONE"],
      result.images.map((i) => [i.ref, i.tag ?? "(untagged)", i.imageId.slice(0, 19), i.action]),
    ),
    `${result.images.length} images for ${result.platform} are in the Docker daemon`,
  ]);
}

/**
 * What `--with-tool` carries: the file given, as bundle.mjs; else this very tool, self-contained:
 * the standalone bundle.mjs itself, or the executables for linux x64 and arm64.
 */
async function toolFiles(given: boolean | string, out: Output): Promise<CarriedTool[]> {
  const self = fileURLToPath(import.meta.url);
  const file = typeof given === "string" ? path.resolve(given) : self.endsWith(".mjs") ? self : undefined;
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
  const root = fileURLToPath(new URL("../../../", import.meta.url));
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

/** Turns the full bundle just written into an update bundle against OLD. */
async function makeUpdate(dir: string, since: string, out: Output): Promise<void> {
  const { applyUpdate, planUpdate, readOldLock } = await import("../bundle/update.js");
  const plan = planUpdate(await readLock(dir), await readOldLock(since));
  await applyUpdate(dir, plan);
  out.info(
    `update bundle against ${since}: ${formatBytes(plan.neededBytes)} carried, ` +
      `${formatBytes(plan.savedBytes)} left to the site's earlier upload`,
  );
}

/** Clones kept between prepares: $BUNDLE_CACHE_DIR, else the XDG cache folder. */
function gitCacheDir(): string {
  const base =
    process.env.BUNDLE_CACHE_DIR ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "bundle");
  return path.join(base, "git");
}

async function fileServer(
  flags: HttpFlags & { fileserver?: string; tokenFile?: string; insecure?: boolean; caFile?: string },
) {
  if (!flags.fileserver) return undefined;
  const { FileServerClient } = await import("../fileserver/client.js");
  const { readTokenFile } = await import("../fileserver/serve.js");
  const token = flags.tokenFile ? await readTokenFile(flags.tokenFile) : undefined;
  return new FileServerClient(flags.fileserver, {
    ...(token ? { token } : {}),
    ...(flags.insecure ? { insecure: true } : {}),
    ...(flags.caFile ? { caFile: flags.caFile } : {}),
    timeouts: httpTimeouts(flags),
    retry: envRetry(),
  });
}

export async function uploadCommand(bundle: BundleContents, flags: UploadFlags, out: Output): Promise<void> {
  await checkSignature(bundle, flags.publicKey, out);
  const lock = bundle.lock;
  const host = flags.registry ? resolveEndpoint(flags.registry).host : undefined;
  const access = flags.registry ? await registryAccess(flags, [flags.registry], retryLogger(out)) : undefined;
  const fileserver = await fileServer(flags);
  const { upload } = await import("../stages/upload.js");
  const result = await upload({
    bundle,
    ...(host ? { registryHost: host } : {}),
    ...(access && flags.registry ? { target: access.store(flags.registry) } : {}),
    ...(fileserver && flags.fileserver ? { fileserver, fileserverUrl: flags.fileserver } : {}),
    fileserverToken: flags.tokenFile !== undefined,
    valueOptions: { set: flags.set ?? [], valuesFiles: flags.values ?? [] },
    continueOnError: flags.continueOnError ?? false,
    out,
  }).finally(() => fileserver?.close());
  const files = result.files;
  out.result(
    {
      ok: true,
      name: lock.name,
      bytesMoved: result.bytesMoved,
      images: result.images,
      charts: result.charts,
      files,
    },
    () => [
      ...(lock.images.length
        ? table(["IMAGE", "PLATFORMS", "SIZE", "MIRROR"], imageTable(lock.images, host))
        : []),
      ...result.charts.map((c) => `chart ${c.name} → ${c.mirror} (${c.digest})`),
      ...(files.sent.length + files.skipped.length
        ? [
            `files: ${files.sent.length} sent, ${files.skipped.length} already on ${flags.fileserver}/${lock.name}/`,
          ]
        : []),
      `bundle "${lock.name}" uploaded (${formatBytes(result.bytesMoved)} sent)`,
    ],
  );
}

export interface ServeFlags {
  root: string;
  port: string;
  host: string;
  tokenFile?: string;
  maxUploadSize: string;
  registryPort?: string;
  fileserver: boolean;
  tlsCert?: string;
  tlsKey?: string;
}

/**
 * Runs the file server, the registry over bundles, or both, until SIGINT or SIGTERM, then lets
 * running uploads finish.
 */
export async function serveCommand(bundles: string[], flags: ServeFlags, out: Output): Promise<void> {
  const port = Number(flags.port);
  if (!/^\d+$/.test(flags.port)) throw new InputError(`--port ${flags.port}: not a TCP port (0-65535)`);
  const registry = registryFlags(bundles, flags);
  const { serve, parseByteSize } = await import("../fileserver/serve.js");
  await serve({
    ...(registry ? { registry } : {}),
    files: flags.fileserver,
    root: path.resolve(flags.root),
    host: flags.host,
    port,
    maxUploadBytes: parseByteSize(flags.maxUploadSize),
    ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}),
    log: (line) => out.info(line),
  });
}

function registryFlags(bundles: string[], flags: ServeFlags) {
  if (flags.registryPort === undefined) {
    const stray = bundles[0] ?? (flags.fileserver ? (flags.tlsCert ?? flags.tlsKey) : "--no-fileserver");
    if (stray !== undefined)
      throw new InputError(
        `${stray}: bundles, TLS and --no-fileserver are for the registry; add --registry-port PORT`,
      );
    return undefined;
  }
  const port = Number(flags.registryPort);
  if (!/^\d+$/.test(flags.registryPort) || port > 65535)
    throw new InputError(`--registry-port ${flags.registryPort}: not a TCP port (0-65535)`);
  return {
    bundles,
    port,
    ...(flags.tlsCert ? { tlsCert: flags.tlsCert } : {}),
    ...(flags.tlsKey ? { tlsKey: flags.tlsKey } : {}),
  };
}

export interface DeployFlags extends RegistryFlags, ValueFlags {
  registry?: string;
  fileserver?: string;
  dryRun?: boolean;
  helm?: string;
  kubeContext?: string;
  kubeconfig?: string;
  atomic?: boolean;
  timeout: string;
  workDir?: string;
  strict?: boolean;
  skipLint?: string[];
}

export async function deployCommand(bundle: BundleContents, flags: DeployFlags, out: Output): Promise<void> {
  const access = flags.registry ? await registryAccess(flags, [flags.registry], retryLogger(out)) : undefined;
  const fileserver = await fileServer(flags);
  const { deploy, shellQuote } = await import("../stages/deploy.js");
  const result = await deploy({
    bundle,
    ...(flags.registry && access
      ? { registryHost: resolveEndpoint(flags.registry).host, registry: access.store(flags.registry) }
      : {}),
    ...(fileserver && flags.fileserver ? { fileserver, fileserverUrl: flags.fileserver } : {}),
    valueOptions: { set: flags.set ?? [], valuesFiles: flags.values ?? [] },
    dryRun: flags.dryRun ?? false,
    timeout: flags.timeout,
    ...(flags.helm ? { helm: flags.helm } : {}),
    ...(flags.kubeContext ? { kubeContext: flags.kubeContext } : {}),
    ...(flags.kubeconfig ? { kubeconfig: flags.kubeconfig } : {}),
    ...(flags.atomic ? { atomic: true } : {}),
    ...(flags.workDir ? { workDir: flags.workDir } : {}),
    ...(flags.strict ? { strict: true } : {}),
    ...(flags.skipLint ? { skipLint: flags.skipLint } : {}),
    out,
  }).finally(() => fileserver?.close());
  out.result(
    { ok: true, name: result.lock.name, dryRun: flags.dryRun ?? false, releases: result.releases },
    () =>
      result.releases.length === 0
        ? [`${result.lock.name}: no releases to deploy`]
        : result.releases.map((r) =>
            flags.dryRun
              ? r.command.map(shellQuote).join(" ")
              : `release ${r.name} deployed in namespace ${r.namespace}` +
                (r.proof ? ` (${r.proof.images} images proved on the site registry)` : ""),
          ),
  );
}

export async function auditCommand(
  bundle: BundleContents,
  flags: { registry?: string; fileserver?: string; helm?: string },
  out: Output,
) {
  const { formatAuditFindings } = await import("../audit/index.js");
  const { audit } = await import("../stages/audit.js");
  const { helmOnPath } = await import("../stages/deploy.js");
  const helm = flags.helm ?? (await helmOnPath());
  const { findings, mode } = await audit(bundle, {
    ...(flags.registry ? { registryHost: resolveEndpoint(flags.registry).host } : {}),
    ...(flags.fileserver ? { fileserverUrl: flags.fileserver } : {}),
    ...(helm ? { helm } : {}),
  });
  out.info(
    mode === "rendered"
      ? `audit: each release rendered with ${helm} as deploy renders it, and the files the file server serves`
      : "audit: the chart files read as they are (no helm here: give --helm PATH to audit what the charts render)",
  );
  out.result({ ok: findings.length === 0, mode, findings }, () =>
    findings.length === 0
      ? ["nothing in the bundle reaches outside the site"]
      : [formatAuditFindings(findings).trimEnd(), `${findings.length} references reach outside the site`],
  );
  if (findings.length > 0) process.exitCode = 1;
}

export async function imagesCommand(
  chartDir: string,
  flags: { file?: string; values?: string[] },
  out: Output,
) {
  const { findChartImages, compareImages } = await import("../charts/discover.js");
  const def = flags.file ? await loadDefinition(flags.file) : undefined;
  const release = def ? await releaseOfChart(def, chartDir) : undefined;
  if (def && release)
    out.info(
      `with the values files of release ${release.name}: ${release.files.map((f) => (typeof f === "string" ? f : f.file)).join(", ") || "none"}`,
    );
  const found = await findChartImages(chartDir, [...(release?.files ?? []), ...(flags.values ?? [])]);
  const compared = def ? compareImages(found, def) : undefined;
  out.result(
    {
      images: found,
      ...(compared
        ? { missing: compared.missing, unused: compared.unused.map((i) => formatImageRef(i.ref)) }
        : {}),
    },
    () => [
      ...table(
        ["IMAGE", "SET BY", "WHERE", ""],
        found.map((i) => [
          i.ref,
          i.valuesPath ?? i.kind,
          `${i.file}:${i.line}`,
          i.enabled === false ? "(disabled)" : "",
        ]),
      ),
      ...(compared
        ? [
            "",
            `not in ${flags.file}: ${compared.missing.map((i) => i.ref).join(", ") || "none"}`,
            `in ${flags.file} but unused by the chart: ${compared.unused.map((i) => formatImageRef(i.ref)).join(", ") || "none"}`,
          ]
        : []),
    ],
  );
}

/**
 * The definition's first release of the chart in `chartDir` (a local chart at that folder, or a
 * chart of the same name), with the values files it is deployed with, as `bundle images` reads them.
 */
async function releaseOfChart(def: Definition, chartDir: string) {
  const { releaseValuesFiles } = await import("../stages/lint.js");
  const dir = path.resolve(chartDir);
  const chart =
    def.charts.find((c) => c.source.kind === "local" && path.resolve(c.source.dir) === dir) ??
    def.charts.find((c) => c.name === path.basename(dir));
  const release = chart && def.releases.find((r) => r.chart === chart.name);
  if (!release) return undefined;
  const inChart = release.valuesFiles
    .filter((v) => v.startsWith(`charts/${release.chart}/`))
    .map((v) => path.join(dir, ...v.split("/").slice(2)));
  return { name: release.name, files: [...releaseValuesFiles(def, release), ...inChart] };
}

/**
 * With a public key, a lock not signed by it stops the command (exit 1) before anything else;
 * so do charts, templates and values that differ from it, unless the command (verify) is about
 * to check and report every file itself.
 */
async function checkSignature(
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

/** `--verify-key` files, each a public key: a bad one is exit 2 naming it. */
async function readVerifyKeys(files: string[]) {
  const { parseVerifyKey } = await import("../signatures/keys.js");
  return Promise.all(files.map(async (f) => parseVerifyKey(await readKeyFile(f, "--verify-key"), f)));
}

async function readKeyFile(file: string, flag: string): Promise<string> {
  return readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    throw new InputError(`${flag} ${file}: cannot read it: ${fsReason(err)}`);
  });
}

/** Exit 1 when anything is missing, corrupt or extra. */
export async function verifyCommand(
  bundle: BundleContents,
  flags: { publicKey?: string },
  out: Output,
): Promise<void> {
  await checkSignature(bundle, flags.publicKey, out, { covered: false });
  const { verifyBundle, formatVerify } = await import("../stages/verify.js");
  const report = await verifyBundle(bundle);
  out.result(report, () => formatVerify(report));
  if (!report.ok) process.exitCode = 1;
}

export async function inspectCommand(bundle: BundleContents, out: Output): Promise<void> {
  const { inspectBundle, formatInspect } = await import("../stages/inspect.js");
  const report = await inspectBundle(bundle);
  out.result(report, () => formatInspect(report));
}

/** Exit 1 when the bundles differ, as diff(1) does; 0 when they are equal. */
export async function diffCommand(oldPath: string, newPath: string, out: Output): Promise<void> {
  const { openSide, diffBundles, formatDiff } = await import("../stages/diff.js");
  const report = await diffBundles(await openSide(oldPath), await openSide(newPath));
  out.result(report, () => formatDiff(report));
  if (!report.equal) process.exitCode = 1;
}

/**
 * Every command that takes a bundle folder takes a one-file archive too (whole or split), and
 * reads it in place: members are streamed from their offsets, nothing is unpacked to disk.
 */
export async function withBundle(arg: string, run: (bundle: BundleContents) => Promise<void>): Promise<void> {
  const { openBundle } = await import("../bundle/contents.js");
  await run(await openBundle(arg));
}

async function packArchive(dir: string, file: string, split: string | undefined) {
  const { packBundle } = await import("../bundle/archive.js");
  const splitBytes = split ? parseByteSize(split, "--split") : undefined;
  return packBundle(dir, file, splitBytes ? { splitBytes } : {});
}

function packedLine(dir: string, packed: { files: string[]; bytes: number }): string {
  return `${dir} packed into ${packed.files.join(", ")} (${formatBytes(packed.bytes)})`;
}

export async function packCommand(dir: string, file: string, flags: { split?: string }, out: Output) {
  const result = await packArchive(dir, file, flags.split);
  out.result({ ok: true, ...result }, () => [packedLine(dir, result)]);
}

export async function unpackCommand(file: string, dir: string, out: Output) {
  const { unpackBundle } = await import("../bundle/contents.js");
  const result = await unpackBundle(file, dir);
  out.result({ ok: true, ...result }, () => [
    `${file} unpacked into ${dir} (${result.files} files, ${formatBytes(result.bytes)})`,
  ]);
}
