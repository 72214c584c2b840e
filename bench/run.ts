/**
 * `npm run bench`: bundle against skopeo on the same generated images.
 *
 * 1. Pushes a set of multi-arch images (OCI indexes and Docker lists sharing base layers) into a
 *    local source registry.
 * 2. prepare: `skopeo copy --all` of each image into one OCI layout, one after another, as a user
 *    would script it, vs one `bundle prepare` of a bundle.yml listing the same images.
 * 3. no-op prepare: the same `bundle prepare` again.
 * 4. upload: skopeo pushing each image from its layout to an empty registry vs `bundle upload`
 *    into another empty registry.
 * 5. prepare and upload again on a pseudo-terminal (`script -qfec`), against the same runs with
 *    output to a log: what the progress display costs.
 * 6. The same for one image holding one large layer, for bundle's peak memory.
 * 7. Beside each prepare and upload, the bare floor (bench/floors.ts): the least a Node program
 *    does for the same copy. The goal is bundle within 10 % of it.
 * 8. The scale case (bench/scale.ts): 1,000 small images, per-image costs growing linearly.
 * 9. `bundle serve --registry-port` over that bundle while 20 clients pull it at once (serve.ts).
 * Every bundle command runs under GNU time for its peak RSS; every result is checked against the
 * source's digests with skopeo. Bundle stages that are not built yet are reported as such.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../test/helpers/ports.js";
import { startRegistry, type TestRegistry } from "../test/helpers/registry.js";
import { ENV_HELP, readConfig, type BenchConfig } from "./config.js";
import { planBigImage, planImages, planNextRelease, pushAll, type Dataset } from "./dataset.js";
import { errorLine, hasGnuTime, GNU_TIME, killChildren, run, type RunResult } from "./exec.js";
import {
  bundleLabel,
  fmt,
  mb,
  printTable,
  ratio,
  targets,
  writeJson,
  type Measured,
  type Outcome,
  type Row,
} from "./report.js";
import { printScale, scaleCase, scaleTargets } from "./scale.js";
import { servePulls } from "./serve.js";
import { checkLayout, checkRegistry, fullPathMirrorName, type Check, type Expected } from "./verify.js";

const FLOORS = fileURLToPath(new URL("./floors.js", import.meta.url));
const DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";

const log = (line = ""): void => console.log(line);

/** Registries and the working folder, released on every way out. */
class Resources {
  private readonly registries = new Set<TestRegistry>();
  constructor(readonly work: string) {}

  async registry(): Promise<TestRegistry> {
    const registry = await startRegistry();
    this.registries.add(registry);
    return registry;
  }

  async stop(...registries: TestRegistry[]): Promise<void> {
    await Promise.all(registries.map((r) => r.stop()));
    for (const r of registries) this.registries.delete(r);
  }

  private closing: Promise<void> | undefined;
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      killChildren();
      await Promise.allSettled([...this.registries].map((r) => r.stop()));
      await rm(this.work, { recursive: true, force: true });
    })());
  }
}

interface Case {
  /** The source registry's URL, for the floors. */
  source: string;
  /** Prefix of the row ids ("" for the main set, "big-" for the large layer). */
  id: string;
  label: string;
  images: Expected[];
  /** Leave the bundle folder for a later step (serve) to use and remove. */
  keep?: boolean;
  /** Also time a second, no-op bundle prepare. */
  noop: boolean;
  dir: string;
  config: BenchConfig;
  res: Resources;
  /** The set's next release, for the update-bundle rows: how many images change, and pushing them. */
  next?: { changed: number; push: () => Promise<Expected[]> };
}

/** Clients pulling from `bundle serve --registry-port` at once, for its peak RSS. */
const SERVE_PULLS = 20;

/** Images of the main set that change in its next release (update bundle rows). */
const NEXT_CHANGED = 2;

async function main(): Promise<number> {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    log("npm run bench   (after a build: node dist/bench/run.js)\n\n" + ENV_HELP);
    return 0;
  }
  const config = readConfig();
  await preflight(config);
  await mkdir(config.workRoot, { recursive: true });
  const res = new Resources(await mkdtemp(path.join(config.workRoot, "bundle-bench-")));
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: stopping registries and removing ${res.work}`);
    void res.close().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const startedAt = new Date();
  try {
    return await bench(config, res, startedAt);
  } finally {
    await res.close();
  }
}

async function bench(config: BenchConfig, res: Resources, startedAt: Date): Promise<number> {
  const skopeoVersion = (await run("skopeo", ["--version"])).stdout.trim();
  log(`bundle bench: ${os.cpus().length} CPUs, Node ${process.versions.node}, ${skopeoVersion}`);
  log(`working folder ${res.work}`);
  if (!hasGnuTime()) log(`warning: ${GNU_TIME} is missing (apt-get install time): no peak RSS figures`);

  const source = await res.registry();
  log(`source registry ${source.url}`);
  log();
  log(`Generating ${config.images} multi-arch images, about ${mb(config.totalBytes)} of blobs…`);
  const layers = path.join(res.work, "layers");
  const plans = planImages(config.images, config.totalBytes);
  const set = await pushAll(source, plans, layers, (image, i) => {
    if (config.verbose) log(`  pushed ${image.ref} (${i + 1}/${config.images})`);
  });
  logDataset(set);
  const generation: Record<string, unknown> = { set: datasetJson(set) };

  const rows: Row[] = [];
  const label = `${set.images.length} images, ${mb(set.distinctBytes)}`;
  rows.push(
    ...(await compare({
      source: source.url,
      id: "",
      label,
      images: expected(set),
      noop: true,
      dir: path.join(res.work, "set"),
      config,
      res,
      next: {
        changed: NEXT_CHANGED,
        push: async () =>
          expected(
            await pushAll(source, planNextRelease(plans, NEXT_CHANGED), path.join(res.work, "layers-v2")),
          ),
      },
    })),
  );

  if (config.bigBytes > 0) {
    log();
    log(`Generating one image with a ${mb(config.bigBytes)} layer…`);
    const big = await pushAll(source, [planBigImage(config.bigBytes)], layers);
    logDataset(big);
    generation.big = datasetJson(big);
    rows.push(
      ...(await compare({
        source: source.url,
        id: "big-",
        keep: true,
        label: `1 image, ${mb(config.bigBytes)} layer`,
        images: expected(big),
        noop: false,
        dir: path.join(res.work, "big"),
        config,
        res,
      })),
    );
  }

  if (config.bigBytes > 0) {
    log();
    log(`serve: ${SERVE_PULLS} parallel pulls of the large image's bundle…`);
    const big = path.join(res.work, "big", "bundle-out");
    rows.push(await servePulls(config.bundleCli, big, `1 image, ${mb(config.bigBytes)} layer`, SERVE_PULLS));
    await rm(path.join(res.work, "big"), { recursive: true, force: true });
  }

  const scale =
    config.many > 0
      ? await scaleCase({
          config,
          source,
          registry: () => res.registry(),
          stop: (r) => res.stop(r),
          dir: path.join(res.work, "many"),
          log,
        })
      : undefined;

  const list = [...targets(rows), ...(scale ? scaleTargets(scale) : [])];
  log();
  printTable(rows, list, log);
  if (scale) {
    log();
    printScale(scale, log);
  }
  const results = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: { cpus: os.cpus().length, node: process.versions.node, skopeo: skopeoVersion },
    config: {
      images: config.images,
      totalMb: round(config.totalBytes / 2 ** 20),
      bigMb: round(config.bigBytes / 2 ** 20),
    },
    generation,
    rows: rows.map((row) => ({
      id: row.id,
      step: row.step,
      skopeoSeconds: row.skopeo?.seconds ?? null,
      skopeoPeakMb: row.skopeo?.peakMb ?? null,
      floorSeconds: row.floor?.seconds ?? null,
      floorPeakMb: row.floor?.peakMb ?? null,
      bundle: row.bundle,
      bundleSeconds: row.bundle.status === "ok" ? row.bundle.seconds : null,
      bundlePeakMb: row.bundle.status === "skipped" ? null : row.bundle.peakMb,
      ratio: ratio(row),
      checks: {
        ...(row.checks.skopeo ? { skopeo: plainCheck(row.checks.skopeo) } : {}),
        ...(row.checks.bundle ? { bundle: plainCheck(row.checks.bundle) } : {}),
      },
      notes: row.notes,
      ...(row.sizes ? { sizes: row.sizes } : {}),
    })),
    targets: list,
    ...(scale ? { scale } : {}),
  };
  await writeJson(config.resultsPath, results);
  log();
  log(`results written to ${config.resultsPath}`);
  return 0;
}

/** prepare (+ no-op prepare) and upload, skopeo then bundle, on one set of images. */
async function compare(c: Case): Promise<Row[]> {
  const { dir, images, config, res } = c;
  const echo = config.verbose;
  const layout = path.join(dir, "skopeo-layout");
  const out = path.join(dir, "bundle-out");
  const def = path.join(dir, "def", "bundle.yml");
  await mkdir(path.dirname(def), { recursive: true });
  await writeFile(def, definition(images));
  await lint(config.bundleCli, def);

  log();
  log(`prepare (${c.label})`);
  const prepare: Row = { id: `${c.id}prepare`, step: `prepare (${c.label})`, ...empty() };
  prepare.skopeo = await skopeoEach(images, echo, (image) => [
    "copy",
    "--all",
    "--src-tls-verify=false",
    `docker://${image.ref}`,
    `oci:${layout}:${image.ref}`,
  ]);
  const skopeoLayout = await checkLayout(layout, images, (image) => image.ref, true);
  prepare.checks.skopeo = skopeoLayout;
  const converted = dockerListsOnly(skopeoLayout, images);
  logSkopeo(prepare.skopeo, images.length, skopeoLayout, converted > 0);
  if (converted) {
    addNote(
      prepare,
      `skopeo's oci: destination rewrote ${converted} Docker manifest lists (and their manifests) as OCI, ` +
        `so their digests are not the source's; bundle must keep them (SPEC.md)`,
    );
  }
  const floorOut = path.join(dir, "floor");
  await alternate(config.repeat, prepare, {
    floor: async () => {
      await rm(floorOut, { recursive: true, force: true });
      return floor(["prepare", c.source, floorOut, ...images.map((image) => image.ref)]);
    },
    bundle: async () => {
      await rm(out, { recursive: true, force: true });
      return bundle(config, ["prepare", "-f", def, "-o", out]);
    },
  });
  const bundleLayout =
    prepare.bundle.status === "ok"
      ? await checkLayout(path.join(out, "images"), images, (image) => image.ref, true)
      : undefined;
  if (bundleLayout) prepare.checks.bundle = bundleLayout;
  logBundle(prepare);
  if (bundleLayout) addNote(prepare, agreement(skopeoLayout, bundleLayout, images));
  const rows = [prepare];
  rows.push(await onTerminal(config, prepare, "prepare", c.id, ["prepare", "-f", def, "-o", `${out}-tty`]));
  await rm(`${out}-tty`, { recursive: true, force: true });

  if (c.noop) {
    const noop: Row = { id: `${c.id}noop`, step: "no-op prepare", ...empty() };
    noop.bundle = await bundle(config, ["prepare", "-f", def, "-o", out]);
    logBundle(noop);
    rows.push(noop);
  }

  log();
  log(`upload (${c.label})`);
  const skopeoDest = await res.registry();
  const upload: Row = { id: `${c.id}upload`, step: `upload (${c.label})`, ...empty() };
  upload.skopeo = await skopeoEach(images, echo, (image) => [
    "copy",
    "--all",
    "--dest-tls-verify=false",
    `oci:${layout}:${image.ref}`,
    `docker://${skopeoDest.host}/${fullPathMirrorName(image.ref)}`,
  ]);
  const skopeoPushed = await checkRegistry(skopeoDest.host, images, (image) => fullPathMirrorName(image.ref));
  upload.checks.skopeo = skopeoPushed;
  logSkopeo(upload.skopeo, images.length, skopeoPushed, dockerListsOnly(skopeoPushed, images) > 0);
  await res.stop(skopeoDest);
  // Each run pushes into a registry of its own, started for it: the floor's and bundle's alike.
  await alternate(config.repeat, upload, {
    floor: () => withRegistry(res, (dest) => floor(["upload", floorOut, dest.url])),
    bundle: (last) =>
      withRegistry(res, async (dest) => {
        const run = await bundleUpload(config, out, dest.host, upload);
        if (last && run.status === "ok")
          upload.checks.bundle = await checkRegistry(dest.host, images, (image) =>
            fullPathMirrorName(image.ref),
          );
        return run;
      }),
  });
  await rm(floorOut, { recursive: true, force: true });
  logBundle(upload);
  rows.push(upload);
  const ttyDest = await res.registry();
  rows.push(await onTerminal(config, upload, "upload", c.id, ["upload", out, "--registry", ttyDest.host]));
  await res.stop(ttyDest);
  if (c.noop) rows.push(...(await packRows(c, out, upload.skopeo)));
  if (c.next) rows.push(await updateRow(c, c.next, out));

  if (!c.keep) await rm(dir, { recursive: true, force: true });
  return rows;
}

/**
 * One-file bundles against plain GNU tar on the same folder: `bundle pack` (index of members
 * first, every member hashed as it goes) vs `tar -cf`, and `bundle unpack` (every member checked
 * against its sha256) vs `tar -xf`; the reference column holds tar's figures. Then `bundle
 * upload` straight out of the archive, against skopeo's upload from its layout.
 */
async function packRows(c: Case, out: string, skopeoUpload: Measured | null): Promise<Row[]> {
  const { config, dir, res, images } = c;
  const rows: Row[] = [];
  const archive = path.join(dir, "bundle.tar");
  const plain = path.join(dir, "plain.tar");
  log();
  log("pack / unpack (against GNU tar)");
  const pack: Row = { id: "pack", step: "pack vs tar -cf", ...empty() };
  pack.skopeo = await timed("tar", ["-cf", plain, "-C", out, "."]);
  pack.bundle = await bundle(config, ["pack", out, archive]);
  addNote(pack, "reference column: GNU tar -cf on the same bundle folder");
  logBundle(pack);
  rows.push(pack);
  const unpack: Row = { id: "unpack", step: "unpack vs tar -xf", ...empty() };
  const [tarDest, bundleDest] = [path.join(dir, "tar-x"), path.join(dir, "bundle-x")];
  await mkdir(tarDest, { recursive: true });
  unpack.skopeo = await timed("tar", ["-xf", plain, "-C", tarDest]);
  unpack.bundle = await bundle(config, ["unpack", archive, bundleDest]);
  addNote(unpack, "reference column: GNU tar -xf; bundle unpack also checks every member's sha256");
  logBundle(unpack);
  rows.push(unpack);
  await Promise.all([plain, tarDest, bundleDest].map((p) => rm(p, { recursive: true, force: true })));

  log();
  log("upload straight out of the archive");
  const dest = await res.registry();
  const fromArchive: Row = { id: "upload-archive", step: "upload from the archive", ...empty() };
  fromArchive.skopeo = skopeoUpload;
  fromArchive.bundle = await bundle(config, ["upload", archive, "--registry", dest.host]);
  if (fromArchive.bundle.status === "ok")
    fromArchive.checks.bundle = await checkRegistry(dest.host, images, (image) =>
      fullPathMirrorName(image.ref),
    );
  addNote(fromArchive, "reference column: skopeo's upload from its OCI layout folder (the upload row)");
  logBundle(fromArchive);
  rows.push(fromArchive);
  await res.stop(dest);
  await rm(archive, { force: true });
  return rows;
}

/**
 * The next release of the set, with `changed` images rebuilt on the same bases: a full prepare
 * of it (the reference column) against `prepare --since` the bundle the site has, and the sizes
 * of the two bundles.
 */
async function updateRow(c: Case, next: NonNullable<Case["next"]>, out: string): Promise<Row> {
  const { config, dir } = c;
  log();
  log(`update bundle (${next.changed} of ${c.images.length} images changed)`);
  const images = await next.push();
  const def = path.join(dir, "def-next", "bundle.yml");
  await mkdir(path.dirname(def), { recursive: true });
  await writeFile(def, definition(images));
  const [full, update] = [path.join(dir, "next-full"), path.join(dir, "next-update")];
  const row: Row = { id: "update", step: `update bundle (${next.changed} images changed)`, ...empty() };
  const fullRun = await bundle(config, ["prepare", "-f", def, "-o", full]);
  if (fullRun.status !== "ok")
    throw new Error(`full prepare of the next release failed: ${bundleLabel(fullRun)}`);
  row.skopeo = { seconds: fullRun.seconds, peakMb: fullRun.peakMb };
  row.bundle = await bundle(config, ["prepare", "-f", def, "-o", update, "--since", out]);
  if (row.bundle.status === "ok") {
    const [fullBytes, updateBytes] = [await folderBytes(full), await folderBytes(update)];
    const share = ((100 * updateBytes) / fullBytes).toFixed(1);
    addNote(row, `update bundle ${mb(updateBytes)} against a full bundle of ${mb(fullBytes)} (${share} %)`);
    log(`  full bundle ${mb(fullBytes)}, update bundle ${mb(updateBytes)} (${share} %)`);
    row.sizes = { fullBytes, updateBytes };
  }
  addNote(row, "reference column: a full bundle prepare of the same release");
  logBundle(row);
  await Promise.all([full, update].map((p) => rm(p, { recursive: true, force: true })));
  return row;
}

/**
 * The same bundle command on a pseudo-terminal (`script -qfec`), so that the progress display
 * is drawn as a user sees it; the reference column holds the run with output to a log.
 */
async function onTerminal(
  config: BenchConfig,
  logged: Row,
  step: string,
  id: string,
  args: string[],
): Promise<Row> {
  log();
  log(`${step} on a terminal`);
  const row: Row = { id: `${id}${step}-tty`, step: `${step} on a terminal`, ...empty() };
  if (logged.bundle.status === "ok")
    row.skopeo = { seconds: logged.bundle.seconds, peakMb: logged.bundle.peakMb };
  const command = [process.execPath, config.bundleCli, ...args].map(shellQuote).join(" ");
  await settle();
  row.bundle = outcome(await run("script", ["-qfec", command, "/dev/null"], { echo: config.verbose }));
  addNote(row, `reference column: the same bundle ${step} with its output to a log`);
  logBundle(row);
  return row;
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Bytes of every file under `dir`. */
async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += (await stat(path.join(entry.parentPath, entry.name))).size;
  }
  return total;
}

async function timed(cmd: string, args: string[]): Promise<Measured> {
  await settle();
  const result = await run(cmd, args);
  if (result.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${errorLine(result)}`);
  return { seconds: result.seconds, peakMb: result.peakMb };
}

function addNote(row: Row, note: string): void {
  row.notes.push(note);
  log(`  note: ${note}`);
}

function empty(): Pick<Row, "skopeo" | "bundle" | "checks" | "notes"> {
  return { skopeo: null, bundle: { status: "skipped", reason: "not run" }, checks: {}, notes: [] };
}

/** The native definition: every image by its full source reference, mirrored by full path. */
function definition(images: Expected[]): string {
  return [
    "name: bench",
    "platforms: [linux/amd64, linux/arm64]",
    "mirror:",
    "  prefix: teleinfra",
    "  naming: full-path",
    "images:",
    ...images.map((image) => `  - ${image.ref}`),
    "",
  ].join("\n");
}

/** `bundle lint` is built; a definition it rejects would make every figure meaningless. */
async function lint(cli: string, def: string): Promise<void> {
  const result = await run(process.execPath, [cli, "lint", "-f", def]);
  if (result.code !== 0) log(`warning: bundle lint rejects the generated definition: ${errorLine(result)}`);
}

/** One skopeo run per image, one after another; the sum of their times, the largest peak. */
async function skopeoEach(
  images: Expected[],
  echo: boolean,
  args: (image: Expected) => string[],
): Promise<Measured> {
  await settle();
  let seconds = 0;
  let peakMb: number | null = null;
  for (const image of images) {
    const result = await run("skopeo", args(image), { echo });
    if (result.code !== 0) throw new Error(`skopeo ${args(image).join(" ")}: ${errorLine(result)}`);
    seconds += result.seconds;
    if (result.peakMb !== null) peakMb = Math.max(peakMb ?? 0, result.peakMb);
  }
  return { seconds, peakMb };
}

/**
 * The floor and bundle of one row, `times` times each, alternating (floor, bundle, floor, …) so
 * that a slow moment of the machine hits both; the row holds each one's median run (a failed
 * bundle run, if any), and a note lists every run when there were several.
 */
async function alternate(
  times: number,
  row: Row,
  runs: { floor: () => Promise<Measured>; bundle: (last: boolean) => Promise<Outcome> },
): Promise<void> {
  const floors: Measured[] = [];
  const bundles: Outcome[] = [];
  for (let i = 0; i < times; i++) {
    floors.push(await runs.floor());
    bundles.push(await runs.bundle(i === times - 1));
  }
  row.floor = median(floors);
  log(`  floor: ${fmt(row.floor.seconds, 2)} s${peakText(row.floor)}`);
  const failed = bundles.find((b) => b.status !== "ok");
  row.bundle = failed ?? (median(bundles as Measured[]) as Outcome);
  if (times > 1) {
    const list = (ms: Measured[]) => ms.map((m) => fmt(m.seconds, 2)).join(", ");
    addNote(
      row,
      `medians of ${times} runs each: floor ${list(floors)} s; bundle ${list(bundles as Measured[])} s`,
    );
  }
}

/** The run with the median time (the upper one of an even count). */
function median<T extends Measured>(runs: T[]): T {
  return [...runs].sort((a, b) => a.seconds - b.seconds)[Math.floor(runs.length / 2)] as T;
}

async function withRegistry<T>(res: Resources, fn: (dest: TestRegistry) => Promise<T>): Promise<T> {
  const dest = await res.registry();
  try {
    return await fn(dest);
  } finally {
    await res.stop(dest);
  }
}

/** bench/floors.ts, the bare Node program for the same step, as its own process. */
async function floor(args: string[]): Promise<Measured> {
  return timed(process.execPath, [FLOORS, ...args]);
}

function peakText(m: Measured): string {
  return m.peakMb === null ? "" : `, peak ${fmt(m.peakMb, 0)} MB`;
}

async function bundle(config: BenchConfig, args: string[]): Promise<Outcome> {
  await settle();
  return outcome(await run(process.execPath, [config.bundleCli, ...args], { echo: config.verbose }));
}

/**
 * SPEC.md makes --fileserver necessary only for bundles with files, but the command line may
 * still require it: then retry with an address nothing listens on (this bundle has no files).
 */
async function bundleUpload(config: BenchConfig, out: string, registry: string, row: Row): Promise<Outcome> {
  const args = ["upload", out, "--registry", registry];
  const first = await bundle(config, args);
  if (first.status !== "failed" || !/required option '--fileserver/.test(first.error)) return first;
  const unused = `http://127.0.0.1:${await freePort()}`;
  addNote(row, `bundle upload requires --fileserver although the bundle has no files; ran with ${unused}`);
  return bundle(config, [...args, "--fileserver", unused]);
}

function outcome(result: RunResult): Outcome {
  const measured = { seconds: result.seconds, peakMb: result.peakMb };
  return result.code === 0
    ? { status: "ok", ...measured }
    : { status: "failed", error: errorLine(result), ...measured };
}

/** Writes back what the previous step left dirty, so that it does not slow the next one down. */
async function settle(): Promise<void> {
  await run("sync", []);
}

function agreement(
  skopeo: Check & { digests: Map<string, string> },
  bundle: Check & { digests: Map<string, string> },
  images: Expected[],
): string {
  const same = images.filter((image) => {
    const digest = skopeo.digests.get(image.ref);
    return digest !== undefined && digest === bundle.digests.get(image.ref);
  }).length;
  return `skopeo's and bundle's layouts agree on ${same} of ${images.length} top manifest digests`;
}

/** Without the digests map a layout check carries (JSON would make it {}). */
function plainCheck(check: Check): Omit<Check, "badRefs"> {
  return { checked: check.checked, mismatches: check.mismatches };
}

/** How many images failed a check, when every one of them is a Docker list at the source. */
function dockerListsOnly(check: Check, images: Expected[]): number {
  const bad = images.filter((image) => check.badRefs.includes(image.ref));
  const lists = bad.filter((image) => image.mediaType === DOCKER_LIST);
  return bad.length > 0 && lists.length === bad.length ? bad.length : 0;
}

function expected(data: Dataset): Expected[] {
  return data.images.map((image) => ({ ref: image.ref, digest: image.digest, mediaType: image.mediaType }));
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function datasetJson(data: Dataset): Record<string, unknown> {
  return {
    images: data.images.map((image) => ({
      ref: image.ref,
      digest: image.digest,
      mediaType: image.mediaType,
    })),
    distinctBlobs: data.distinctBlobs,
    distinctMb: round(data.distinctBytes / 2 ** 20),
    unsharedMb: round(data.unsharedBytes / 2 ** 20),
    seconds: round(data.seconds),
  };
}

function logDataset(data: Dataset): void {
  const kinds = new Map<string, number>();
  for (const image of data.images) kinds.set(image.mediaType, (kinds.get(image.mediaType) ?? 0) + 1);
  const kindText = [...kinds].map(([type, n]) => `${n} ${type.split(".").slice(-2).join(".")}`).join(", ");
  log(
    `  ${data.images.length} image${data.images.length === 1 ? "" : "s"} (${kindText}), ${data.distinctBlobs} distinct blobs, ` +
      `${mb(data.distinctBytes)} (${mb(data.unsharedBytes)} without sharing); ` +
      `generated and pushed in ${fmt(data.seconds, 1)} s (not part of the comparison)`,
  );
}

function logSkopeo(measured: Measured, count: number, check: Check, explained: boolean): void {
  const peak = measured.peakMb === null ? "" : `, peak ${fmt(measured.peakMb, 0)} MB`;
  log(
    `  skopeo: ${count} ${count === 1 ? "copy" : "copies"} in ${fmt(measured.seconds, 2)} s${peak}; ${checkText(check, explained)}`,
  );
}

function logBundle(row: Row): void {
  const b = row.bundle;
  if (b.status === "skipped") log(`  bundle ${row.step}: skipped (${b.reason})`);
  else if (b.status === "failed") log(`  bundle: ${b.error} after ${fmt(b.seconds, 2)} s`);
  else {
    const peak = b.peakMb === null ? "" : `, peak ${fmt(b.peakMb, 0)} MB`;
    const r = ratio(row);
    const vs =
      r === null
        ? ""
        : ` = ${fmt(r, 2)}× ${row.notes.some((n) => n.startsWith("reference column")) ? "the reference" : "skopeo"}`;
    log(
      `  bundle: ${fmt(b.seconds, 3)} s${vs}${peak}${row.checks.bundle ? `; ${checkText(row.checks.bundle)}` : ""}`,
    );
  }
}

function checkText(check: Check, explained = false): string {
  if (check.mismatches.length === 0) return `all ${check.checked} digests equal the source's`;
  const summary = `${check.mismatches.length} of ${check.checked} digests differ from the source's`;
  if (explained) return `${summary} (the Docker lists, see the note)`;
  const shown = check.mismatches.slice(0, 5).map((m) => `\n    ${shortDigests(m)}`);
  const more = check.mismatches.length > 5 ? `\n    … ${check.mismatches.length - 5} more` : "";
  return `${summary}:${shown.join("")}${more}`;
}

/** sha256:0123456789ab… for the console; the JSON keeps them whole. */
function shortDigests(text: string): string {
  return text.replace(/sha256:([0-9a-f]{12})[0-9a-f]{52}/g, "sha256:$1…");
}

async function preflight(config: BenchConfig): Promise<void> {
  const cli = config.bundleCli;
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  for (const [cmd, hint] of [
    ["skopeo", "apt-get install skopeo"],
    ["docker-registry", "apt-get install docker-registry"],
  ] as const) {
    const result = await run(cmd, ["--version"]).catch(() => undefined);
    if (!result || result.code !== 0)
      throw new Error(`${cmd} is not usable: ${hint} (scripts/install-deps.sh)`);
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
