/**
 * `bundle.lock.json`: what a bundle holds, with every digest (SPEC.md "The prepared bundle").
 * It is the bundle's manifest: upload, deploy and verify trust nothing that it does not list.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { InputError } from "../util/errors.js";
import { writeAtomic } from "../util/cas.js";
import type { UpdateInfo } from "./update.js";

export const LOCK_FILE = "bundle.lock.json";
export const LOCK_VERSION = 1;

export interface LockPlatform {
  platform: string;
  digest: string;
  mediaType: string;
  size: number;
}

export interface LockBlob {
  digest: string;
  size: number;
  mediaType: string;
}

export interface LockImage {
  /** Fully qualified source reference, also the layout's `org.opencontainers.image.ref.name`. */
  ref: string;
  source: "registry" | "docker";
  /** The top manifest or index exactly as the source served it. */
  digest: string;
  mediaType: string;
  size: number;
  platforms: LockPlatform[];
  /** Requested platforms the source lacks (allowed for this image). */
  missingPlatforms: string[];
  /** Mirror name without the registry host: `teleinfra/redis:4.0`. */
  mirror: string;
  /** What the mirror's reference will name: `digest`, or the reduced index's when platforms stay behind. */
  mirrorDigest: string;
  /** Config and layer blobs, each once. */
  blobs: LockBlob[];
  /** Sum of the blobs' sizes: what the image costs on disk before sharing. */
  bytes: number;
  /** `prepare --verify-key`: the id of the key whose cosign signature verified, and the `.sig` manifest's digest. */
  verified?: { key: string; signature: string };
  /** Signatures, SBOMs, attestations about the image; absent when none were looked for. */
  referrers?: LockReferrer[];
}

/** An artifact about an image, one of its platforms or another such artifact, carried next to it (issue 13). */
export interface LockReferrer {
  /** The manifest it is about: the image's digest, a platform's, or another referrer's (a signature on an SBOM). */
  subject: string;
  digest: string;
  mediaType: string;
  size: number;
  /** As a referrers list names it: the manifest's artifactType, else its config's media type. */
  artifactType?: string;
  /** The manifest's own annotations, which a referrers list repeats. */
  annotations?: Record<string, string>;
  /** cosign's tag it was found under (`sha256-<hex>.sig`); absent for an OCI referrer. */
  tag?: string;
  /** The manifests of an artifact that is an index. */
  manifests?: { digest: string; mediaType: string; size: number }[];
  /** Config and layer blobs, each once. */
  blobs: LockBlob[];
}

/** Every manifest and blob of an image's referrers, each with its size (they live in images/ too). */
export function referrerItems(img: LockImage): { digest: string; size: number; manifest: boolean }[] {
  return (img.referrers ?? []).flatMap(referrerParts);
}

/** A referrer's manifest, the manifests of an index, and the blobs. */
export function referrerParts(r: LockReferrer): { digest: string; size: number; manifest: boolean }[] {
  return [
    { digest: r.digest, size: r.size, manifest: true },
    ...(r.manifests ?? []).map((m) => ({ digest: m.digest, size: m.size, manifest: true })),
    ...r.blobs.map((b) => ({ digest: b.digest, size: b.size, manifest: false })),
  ];
}

export interface LockGit {
  url: string;
  commit: string;
  /** Path under files/. */
  archive: string;
  size: number;
  sha256: string;
}

export interface LockFile {
  path: string;
  size: number;
  sha256: string;
  url?: string;
}

/** Folders of a git archive whose npm dependencies prepare installed into one archive under files/. */
export interface LockNpm {
  /** The git archive (under files/) the folders' package.json came from. */
  git: string;
  /** Path under files/ of the `.tar.gz` holding `<dir>/node_modules/…` and `<dir>/package-lock.json`. */
  path: string;
  dirs: LockNpmDir[];
  /** sha256 of the inputs (every folder's package.json and lockfile): the same key, no npm run. */
  key: string;
  size: number;
  sha256: string;
}

export interface LockNpmDir {
  dir: string;
  /** sha256 of the folder's package.json (under its own name in the tree). */
  packageJson: string;
  /** The lockfile the tree held (`npm ci`), or none (`npm install` resolved one). */
  lockfileGiven: boolean;
  /** sha256 of the package-lock.json carried in the archive. */
  packageLock: string;
  /** How many packages node_modules holds. */
  packages: number;
}

/** A template whose site values are bound at upload (files) or deploy (chart overlays). */
export interface LockTemplate {
  /** Where it renders to: `files/x.yml` or `charts/<chart>/x.json`. */
  dest: string;
  /** The stored template, a bundle path under templates/. */
  source: string;
  syntax: "handlebars" | "dollar";
  mode: number;
  sha256: string;
  /** Where errors inside it point: the definition's file and line it came from. */
  origin: { file: string; line: number; col: number };
  siteValues: string[];
}

/** A chart folder of the bundle, every file of it after prepare's overlays. */
export interface LockChart {
  name: string;
  /** `charts/<name>` */
  path: string;
  /**
   * Each file, relative to the chart folder, sorted: verify, deploy and a signature cover every
   * byte. Absent in bundles prepared before charts were listed.
   */
  files?: LockChartFile[];
  // Issue 13: absent in older bundles; origin only for charts from a repository or registry.
  /** The chart's version from its Chart.yaml. */
  version?: string;
  /** The Helm chart archive carried beside the folder: `charts/<name>-<version>.tgz`; pushed by upload as an OCI artifact. */
  archive?: LockChartArchive;
  /** Where upload pushes the archive, without the registry host: `teleinfra/charts/<name>:<version>`. */
  mirror?: string;
  /** Where a packaged chart came from, pinned. */
  origin?: LockChartOrigin;
}

/** A chart from a Helm repository (the archive's sha256) or an OCI registry (the manifest's digest). */
export type LockChartOrigin = (
  | { kind: "repo"; url: string; name: string; version: string; sha256: string }
  | { kind: "oci"; ref: string; version: string; digest: string; sha256: string }
) & { dependencies?: LockChartDependency[] };

/** A subchart fetched from a repository into the chart's `charts/` folder as `<name>-<version>.tgz`. */
export interface LockChartDependency {
  name: string;
  version: string;
  /** The Chart.yaml's `repository`: an http(s) Helm repository or `oci://…`. */
  repository: string;
  sha256: string;
  /** For an OCI dependency, its manifest's digest. */
  digest?: string;
  /** A subchart's subchart: the folders it lies under from the chart's `charts/`, e.g. `lib` or `lib/common`. */
  parent?: string;
}

export interface LockChartArchive {
  /** Bundle path, `charts/<name>-<version>.tgz`. */
  path: string;
  size: number;
  sha256: string;
}

export interface LockChartFile {
  path: string;
  size: number;
  sha256: string;
  /** Permission bits only. */
  mode: number;
}

export interface LockRelease {
  name: string;
  chart: string;
  namespace: string;
  /** Bundle paths (`files/…`, `charts/<chart>/…`) of values files, applied after the generated overrides. */
  valuesFiles: string[];
}

export interface Lock {
  lockVersion: typeof LOCK_VERSION;
  name: string;
  tool: { name: "bundle"; version: string };
  platforms: string[];
  images: LockImage[];
  git: LockGit[];
  files: LockFile[];
  /** Absent in bundles with no npm item (and in those of older versions). */
  npm?: LockNpm[];
  charts: LockChart[];
  /** Helm releases, deployed in this order, each its own release. */
  releases: LockRelease[];
  /** Templates still to render; their values (the definition's, --values, --set) are in `values`. */
  templates: LockTemplate[];
  /** Bundle path of the JSON file holding the template values prepare used. */
  values: string;
  /**
   * Size and sha256 of the values file, so the lock (and a signature over it) covers its bytes.
   * Absent in bundles prepared before they were recorded: their values file is read unchecked.
   */
  valuesSize?: number;
  valuesSha256?: string;
  /** Site values the templates use, bound at upload and deploy. */
  siteValues: string[];
  /** Set on an update bundle (`prepare --since`): what it leaves to the site's earlier upload. */
  update?: UpdateInfo;
}

/** What the lock says a bundle file's bytes are. */
export interface LockedBytes {
  sha256: string;
  /** Absent for a template, whose size the lock does not record. */
  size?: number;
}

/**
 * Every bundle path the lock gives a digest for (files, git and npm archives, templates, the
 * values file, chart files and archives), with its sha256 and size: what a reader checks each byte against.
 * Blobs are named by their digest and are not listed here.
 */
export function lockedFiles(lock: Lock): Map<string, LockedBytes> {
  const known = new Map<string, LockedBytes>();
  for (const f of lock.files) known.set(`files/${f.path}`, { sha256: f.sha256, size: f.size });
  for (const t of lock.templates) known.set(t.source, { sha256: t.sha256 });
  for (const g of lock.git) known.set(`files/${g.archive}`, { sha256: g.sha256, size: g.size });
  for (const n of lock.npm ?? []) known.set(`files/${n.path}`, { sha256: n.sha256, size: n.size });
  for (const c of lock.charts) {
    for (const f of c.files ?? []) known.set(`${c.path}/${f.path}`, { sha256: f.sha256, size: f.size });
    if (c.archive) known.set(c.archive.path, { sha256: c.archive.sha256, size: c.archive.size });
  }
  if (lock.valuesSha256 !== undefined)
    known.set(lock.values, {
      sha256: lock.valuesSha256,
      ...(lock.valuesSize !== undefined ? { size: lock.valuesSize } : {}),
    });
  return known;
}

export async function readLock(bundleDir: string): Promise<Lock> {
  const file = path.join(bundleDir, LOCK_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    if (!(await stat(bundleDir).catch(() => undefined))) {
      throw new InputError(`${bundleDir}: no such bundle folder or archive`);
    }
    throw new InputError(
      `${bundleDir} is not a prepared bundle: ${LOCK_FILE} is missing (run bundle prepare first)`,
    );
  }
  return parseLock(text, file);
}

/**
 * A lock's text, parsed and checked against its schema (src/bundle/schema.ts): a lock that is
 * not JSON, of another version, or with a field that breaks its rule is exit 2 naming `file`,
 * the field and its value.
 */
export async function parseLock(text: string, file: string): Promise<Lock> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new InputError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const version = (data as { lockVersion?: unknown } | null)?.lockVersion;
  if (data !== null && typeof data === "object" && !Array.isArray(data) && version !== LOCK_VERSION) {
    throw new InputError(
      `${file}: lock version ${String(version)} is not supported (expected ${LOCK_VERSION})`,
    );
  }
  const { checkLockData } = await import("./parse.js");
  return checkLockData(data, file);
}

export async function writeLock(bundleDir: string, lock: Lock): Promise<void> {
  await writeAtomic(path.join(bundleDir, LOCK_FILE), `${JSON.stringify(lock, null, 2)}\n`);
}
