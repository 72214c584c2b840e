/**
 * `bundle prepare`, the online side: its flags and help, and the handler that reads every input,
 * runs the prepare stage, then makes the update bundle, signs the lock and packs the archive the
 * flags ask for. The stage and its helpers are imported when the command runs.
 */
import type { Command } from "commander";
import os from "node:os";
import path from "node:path";
import { DEFAULT_DEFINITION } from "../../config/defaults.js";
import type { ChartSource, Definition, ImageItem } from "../../config/model.js";
import type { GitOps } from "../../stages/files.js";
import type { PrepareResult } from "../../stages/prepare.js";
import type { DockerDaemonSource } from "../../store/docker.js";
import { formatBytes, parseByteSize, table } from "../../util/format.js";
import type { Output } from "../output.js";
import type { RegistryFlags } from "../registries.js";
import {
  ALLOW_OUTSIDE,
  collect,
  docker,
  example,
  packArchive,
  packedLine,
  readKeyFile,
  retryLogger,
  withHttpLimits,
  withRegistryAccess,
  withValues,
  type LazyOutput,
  type ValueFlags,
} from "../shared.js";

interface PrepareFlags extends RegistryFlags, ValueFlags {
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

export function define(program: Command, out: LazyOutput): void {
  const prepare = program
    .command("prepare")
    .description(
      "online side: pull every image for every platform, archive pinned git commits, fetch charts from Helm repositories and OCI registries, download files, package each git or local chart as charts/<name>-<version>.tgz, write the bundle",
    )
    .option("-f, --file <FILE>", "the definition", DEFAULT_DEFINITION)
    .option("-o, --output <DIR>", "where to write the bundle (default ./bundle-out/<name>)")
    .option("--name <NAME>", "the bundle's name (default: the definition's name or folder)")
    .option(
      "--platform <LIST>",
      "comma-separated platforms (default: the definition's, else linux/amd64,linux/arm64)",
    )
    .option(
      "--mirror <SRC=URL>",
      "pull images and oci:// charts of registry SRC from URL first (repeatable)",
      collect,
    )
    .option("--archive <FILE>", "also write the bundle as one tar file (its index first, blobs as they are)")
    .option("--split <SIZE>", "with --archive: parts of at most SIZE (e.g. 4G), FILE.000, FILE.001, …")
    .option("--continue-on-error", "keep going past a failed item and list every failure at the end")
    .option(
      "--no-referrers",
      "leave behind the signatures, SBOMs and attestations that refer to each image (default: carry them)",
    )
    .option(
      "--with-tool [FILE]",
      "carry the tool as files/tool/bundle-linux-{x64,arm64}, executables that need no Node.js (npm run build:exe); with FILE, that standalone bundle.mjs as files/bundle.mjs",
    )
    .option(
      "--since <OLD>",
      "write an update bundle: leave out what bundle OLD (a folder, an archive or its lock file) carried",
    )
    .option(
      "--sign-key <FILE>",
      "sign bundle.lock.json with this ed25519 private key (PEM) into bundle.lock.json.sig",
    )
    .option(
      "--verify-key <FILE>",
      "carry only images with a cosign signature (the .sig tag at the source) by this public key, e.g. cosign.pub; checked offline, without Rekor (repeatable: any key)",
      collect,
    )
    .option(
      "--max-download <SIZE>",
      "refuse a download of files: (or a chart from a repository) larger than SIZE when no earlier run recorded its size",
      "4G",
    )
    .option("--allow-outside", ALLOW_OUTSIDE);
  withHttpLimits(withValues(withRegistryAccess(prepare)));
  example(
    prepare,
    "bundle prepare -f bundle.yml -o /media/usb/openwhisk",
    "bundle prepare --mirror docker.io=http://127.0.0.1:5001",
    "bundle prepare --verify-key cosign.pub",
    "bundle prepare --username me --password-stdin < pw   # also for a chart's Helm repository or oci:// registry",
  );
  prepare.action((opts: PrepareFlags) => runPrepare(opts, out()));
}

async function runPrepare(flags: PrepareFlags, out: Output): Promise<void> {
  // A private repository without a credential helper would wait on a password prompt nobody
  // sees behind the progress display: fail instead, naming the URL.
  process.env.GIT_TERMINAL_PROMPT ??= "0";
  const { envRetry, httpTimeouts, registryAccess } = await import("../registries.js");
  const downloads = {
    timeouts: httpTimeouts(flags),
    maxBytes: parseByteSize(flags.maxDownload, "--max-download"),
    retry: envRetry(),
  };
  const { def, siteLayers, signKey, verifyKeys } = await readInputs(flags);
  // Prepare's only target is the bundle's layout, which hashes every blob as it writes it (a
  // resumed prefix too) and refuses one whose size or digest is not the descriptor's before it
  // gets its name; the download stops at the descriptor's size. A second sha256 pass in the
  // source store would cost as much as the copy on two cores and check nothing more.
  const access = await registryAccess(flags, await loginHosts(def), retryLogger(out), { verifyBlobs: false });
  const daemon = await lazyDaemonSource(
    path.resolve(flags.output ?? path.join("bundle-out", def.name), ".docker-export"),
    def.images.some((i) => i.source === "docker"),
  );
  const tools = flags.withTool ? await carriedTool(flags.withTool, out) : undefined;
  const { prepare } = await import("../../stages/prepare.js");
  const result = await prepare({
    def,
    ...(flags.output ? { output: flags.output } : {}),
    continueOnError: flags.continueOnError ?? false,
    openSource: (img: ImageItem) =>
      img.source === "docker" ? daemon.source() : access.source(img.ref.registry),
    git: lazyGit(),
    ...(tools ? { tools } : {}),
    gitCacheDir: gitCacheDir(),
    downloads,
    out,
    ...(siteLayers ? { siteLayers } : {}),
    ...(verifyKeys ? { verifyKeys } : {}),
    chartRegistry: (host) => access.store(host).client,
    ...(access.credentials ? { chartCredentials: access.credentials } : {}),
    chartMirror: (host) => access.mirrorClient(host),
    ...(flags.referrers === false ? { noReferrers: true } : {}),
  }).finally(() => daemon.dispose());
  await finish(result, flags, signKey, out);
}

/** Read before the long work, so a wrong path, key or lock fails at once. */
async function readInputs(flags: PrepareFlags) {
  const update = flags.since ? await import("../../bundle/update.js") : undefined;
  const oldLock = flags.since ? await update?.readOldLock(flags.since) : undefined;
  const signKey = flags.signKey ? await readKeyFile(flags.signKey, "--sign-key") : undefined;
  const verifyKeys = flags.verifyKey?.length ? await readVerifyKeys(flags.verifyKey) : undefined;
  const { loadDefinition, parsePlatformList } = await import("../../config/load.js");
  const def = await loadDefinition(flags.file, {
    ...(flags.name ? { name: flags.name } : {}),
    ...(flags.platform ? { platforms: parsePlatformList(flags.platform) } : {}),
    set: flags.set ?? [],
    valuesFiles: flags.values ?? [],
    ...(flags.allowOutside ? { allowOutside: true } : {}),
  });
  const siteLayers = oldLock && update ? update.lockLayers(oldLock) : undefined;
  return { def, siteLayers, signKey, verifyKeys };
}

/** `--verify-key` files, each a public key: a bad one is exit 2 naming it. */
async function readVerifyKeys(files: string[]) {
  const { parseVerifyKey } = await import("../../signatures/keys.js");
  return Promise.all(files.map(async (f) => parseVerifyKey(await readKeyFile(f, "--verify-key"), f)));
}

/** Which registries (and Helm repositories) the images and charts come from decides where --username applies. */
async function loginHosts(def: Definition): Promise<string[]> {
  const { parseOciRef } = await import("../../charts/fetch.js");
  const chartHost = (source: ChartSource): string[] => {
    if (source.kind === "oci") return [parseOciRef(source.ref).host];
    return source.kind === "repo" ? [new URL(source.url).host] : [];
  };
  return [
    ...def.images.filter((i) => i.source === "registry").map((i) => i.ref.registry),
    ...def.charts.flatMap((c) => chartHost(c.source)),
  ];
}

/** What `--with-tool` carries; src/cli/tool.ts finds it from its own place in the checkout. */
async function carriedTool(given: boolean | string, out: Output) {
  const { toolFiles } = await import("../tool.js");
  return toolFiles(given, out);
}

/** src/git, loaded (with simple-git and tar) only when a definition has git items to fetch. */
function lazyGit(): GitOps {
  const git = () => import("../../git/index.js");
  return {
    fetchCommit: async (...args) => (await git()).fetchCommit(...args),
    writeArchive: async (...args) => (await git()).writeArchive(...args),
    copyChart: async (...args) => (await git()).copyChart(...args),
  };
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
      const { rm } = await import("node:fs/promises");
      await rm(tmpDir, { recursive: true, force: true });
    },
  };
}

/** Clones kept between prepares: $BUNDLE_CACHE_DIR, else the XDG cache folder. */
function gitCacheDir(): string {
  const base =
    process.env.BUNDLE_CACHE_DIR ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "bundle");
  return path.join(base, "git");
}

/** After the stage: the update bundle, the signature, the archive, then the one result. */
async function finish(result: PrepareResult, flags: PrepareFlags, signKey: string | undefined, out: Output) {
  if (flags.since) await makeUpdate(result.dir, flags.since, out);
  if (signKey) {
    const { signLock } = await import("../../bundle/sign.js");
    await signLock(result.dir, signKey);
    out.info(`signed ${result.dir}/bundle.lock.json with ${flags.signKey}`);
  }
  // One result on stdout (one JSON document with --json): the archive is part of it.
  const archive = flags.archive ? await packArchive(result.dir, flags.archive, flags.split) : undefined;
  const { imageTable } = await import("../../stages/transfer.js");
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

/** Turns the full bundle just written into an update bundle against OLD. */
async function makeUpdate(dir: string, since: string, out: Output): Promise<void> {
  const { applyUpdate, planUpdate, readOldLock } = await import("../../bundle/update.js");
  const { readLock } = await import("../../bundle/lock.js");
  const plan = planUpdate(await readLock(dir), await readOldLock(since));
  await applyUpdate(dir, plan);
  out.info(
    `update bundle against ${since}: ${formatBytes(plan.neededBytes)} carried, ` +
      `${formatBytes(plan.savedBytes)} left to the site's earlier upload`,
  );
}
