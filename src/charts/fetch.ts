/**
 * Packaged charts from a Helm repository (`index.yaml` plus a `.tgz`) or an OCI registry (the
 * manifest a tag names, then its Helm chart layer), fetched into a work file with their sha256
 * taken while streaming, and checked against every pin there is: the definition's, the
 * repository index's `digest`, and what an earlier prepare into the same folder recorded. A
 * mismatch leaves nothing behind; the caller moves the file under its final name.
 */
import { createWriteStream } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parse as parseYaml } from "yaml";
import type { RemoteChartSource } from "../config/model.js";
import type { LockChartOrigin } from "../bundle/lock.js";
import { download, DEFAULT_MAX_DOWNLOAD, type DownloadAuth, type DownloadLimits } from "../files/download.js";
import { HELM_CHART_LAYER } from "../oci/mediaTypes.js";
import { parseManifest } from "../oci/parse.js";
import type { Descriptor, RawManifest } from "../oci/types.js";
import { basicAuthorization } from "../registry/auth.js";
import type { RegistryClient } from "../registry/client.js";
import { NotFoundError } from "../registry/errors.js";
import { describeCredentials, type CredentialSource } from "../registry/credentials.js";
import { InputError, WorkError } from "../util/errors.js";
import { checkedBytes } from "../util/streams.js";

export interface FetchOptions {
  /** Where work files go (the bundle's `.partial/charts`). */
  workDir: string;
  downloads: DownloadLimits;
  /** A client for an OCI registry host, with the credentials images use. */
  registry: (host: string) => RegistryClient;
  /** A client for the `--mirror` of an OCI registry host, when it has one: asked first, as for images. */
  mirror?: (host: string) => RegistryClient | undefined;
  /** Repository indexes read so far in this run, by URL: charts and subcharts of one repository read it once. */
  indexes: Map<string, Promise<unknown>>;
  /** Credentials by host, as images find theirs: a Helm repository's host gets them as Basic auth. */
  credentials?: CredentialSource;
}

/** A chart archive in a work file, checked, and where it came from. */
export interface FetchedChart {
  file: string;
  size: number;
  sha256: string;
  /** The archive's URL (a repository's download, or the OCI blob), for messages. */
  url: string;
  origin: LockChartOrigin;
}

/** A digest some source says the bytes must have: `by` names the source in messages. */
export interface Pin {
  sha256?: string;
  /** For OCI: the manifest's digest. */
  digest?: string;
  by: string;
}

/** An index.yaml larger than this is refused: the largest public ones are a few tens of MB. */
export const MAX_INDEX_BYTES = 64 << 20;

export async function fetchChart(
  source: RemoteChartSource,
  pins: Pin[],
  opts: FetchOptions,
): Promise<FetchedChart> {
  await mkdir(opts.workDir, { recursive: true });
  const got =
    source.kind === "repo" ? await fetchFromRepo(source, opts) : await fetchFromOci(source, pins, opts);
  try {
    const digest = got.origin.kind === "oci" ? { digest: got.origin.digest } : {};
    checkPins(source, { url: got.url, sha256: got.sha256, ...digest }, [...pins, ...got.indexPins]);
  } catch (err) {
    await rm(got.file, { force: true });
    throw err;
  }
  return got;
}

/** Exit 1 naming the chart, its version, the URL and both digests when any pin disagrees. */
function checkPins(
  source: RemoteChartSource,
  got: { url: string; sha256?: string; digest?: string },
  pins: Pin[],
): void {
  const name = source.kind === "repo" ? source.chart : source.ref;
  for (const pin of pins) {
    const [want, have, what] =
      pin.digest !== undefined
        ? [pin.digest, got.digest, "manifest digest"]
        : [pin.sha256, got.sha256, "sha256"];
    if (want === undefined || want === have) continue;
    throw new WorkError(
      `chart ${name} ${source.version} from ${got.url}: ${what} ${have} differs from ${want} (${pin.by}); ` +
        "the same version with other bytes is refused, nothing was kept",
    );
  }
}

interface IndexEntry {
  version: string;
  urls: string[];
  digest?: string;
}

/** GET index.yaml (bounded), find the version, download its first URL. */
async function fetchFromRepo(
  source: Extract<RemoteChartSource, { kind: "repo" }>,
  opts: FetchOptions,
): Promise<FetchedChart & { indexPins: Pin[] }> {
  const base = source.url.endsWith("/") ? source.url : `${source.url}/`;
  const indexUrl = new URL("index.yaml", base).toString();
  const auth = await repoAuth(base, opts.credentials);
  if (!opts.indexes.has(indexUrl)) opts.indexes.set(indexUrl, readIndex(indexUrl, auth, opts));
  const entry = findEntry(await opts.indexes.get(indexUrl), source, indexUrl);
  const url = new URL(entry.urls[0] ?? "", base).toString();
  const file = workFile(opts, `${source.chart}-${source.version}.tgz`);
  const got = await download(url, file, {
    ...opts.downloads,
    partialDir: path.join(opts.workDir, "partial"),
    auth,
  });
  return {
    file,
    ...got,
    url,
    origin: {
      kind: "repo",
      url: source.url,
      name: source.chart,
      version: source.version,
      sha256: got.sha256,
    },
    indexPins: entry.digest ? [{ sha256: entry.digest, by: `the digest ${indexUrl} gives it` }] : [],
  };
}

/**
 * Basic auth for the repository's origin only, from the credentials images use (as helm sends
 * them, before any challenge). A chart URL or redirect to another origin goes without.
 */
async function repoAuth(base: string, credentials: CredentialSource | undefined): Promise<DownloadAuth> {
  const { origin, host } = new URL(base);
  const creds = await credentials?.(host);
  if (creds && "password" in creds)
    return {
      origin,
      header: basicAuthorization(creds.username, creds.password),
      denied: `it refused ${describeCredentials(creds)}, given for ${host}`,
    };
  const why = creds
    ? `the credentials for ${host} are an identity token, not a user and password`
    : `no credentials for ${host}`;
  return {
    origin,
    denied: `${why}; give them as for images: docker login ${host} (or a credential helper), or --username with --password-stdin`,
  };
}

async function readIndex(indexUrl: string, auth: DownloadAuth, opts: FetchOptions): Promise<unknown> {
  const file = workFile(opts, `index-${Date.now()}-${process.pid}.yaml`);
  try {
    await download(indexUrl, file, {
      ...opts.downloads,
      auth,
      maxBytes: Math.min(MAX_INDEX_BYTES, opts.downloads.maxBytes ?? DEFAULT_MAX_DOWNLOAD),
      partialDir: path.join(opts.workDir, "partial"),
    });
    return parseYaml(await readFile(file, "utf8"), { maxAliasCount: 1000 }) as unknown;
  } catch (err) {
    if (err instanceof InputError || err instanceof WorkError) throw err;
    throw new WorkError(`${indexUrl}: not a Helm repository index (${(err as Error).message})`);
  } finally {
    await rm(file, { force: true });
  }
}

/** The index's entry for the chart's version, its shape checked before any of it is used. */
function findEntry(
  index: unknown,
  source: Extract<RemoteChartSource, { kind: "repo" }>,
  indexUrl: string,
): IndexEntry {
  const entries = (index as { entries?: unknown } | null)?.entries;
  if (entries === null || typeof entries !== "object")
    throw new WorkError(`${indexUrl}: not a Helm repository index (no entries)`);
  const list = (entries as Record<string, unknown>)[source.chart];
  if (!Array.isArray(list))
    throw new InputError(`${indexUrl}: the repository has no chart named ${source.chart}`);
  const entry = (list as unknown[]).find(
    (e) => (e as { version?: unknown } | null)?.version === source.version,
  );
  if (entry === undefined) {
    const versions = (list as { version?: unknown }[]).map((e) => String(e?.version)).slice(0, 10);
    throw new InputError(
      `${indexUrl}: chart ${source.chart} has no version ${source.version} (it has ${versions.join(", ") || "none"})`,
    );
  }
  const { urls, digest } = entry as { urls?: unknown; digest?: unknown };
  if (!Array.isArray(urls) || typeof urls[0] !== "string" || !/^(https?:\/\/|[^:]*$)/.test(urls[0]))
    throw new WorkError(`${indexUrl}: chart ${source.chart} ${source.version} has no http(s) download URL`);
  if (digest !== undefined && (typeof digest !== "string" || !/^[a-f0-9]{64}$/.test(digest)))
    throw new WorkError(
      `${indexUrl}: chart ${source.chart} ${source.version} has a digest that is not a sha256`,
    );
  return { version: source.version, urls: urls as string[], ...(digest ? { digest } : {}) };
}

/**
 * `oci://host/path/x` → the manifest tagged with the version → its Helm chart layer, streamed:
 * from the host's `--mirror` when it has the whole chart, else from the host (a mirror lacking
 * the manifest or its archive is not an error, as for images).
 */
async function fetchFromOci(
  source: Extract<RemoteChartSource, { kind: "oci" }>,
  pins: Pin[],
  opts: FetchOptions,
): Promise<FetchedChart & { indexPins: Pin[] }> {
  const { host } = parseOciRef(source.ref);
  const mirror = opts.mirror?.(host);
  if (mirror) {
    try {
      return await fetchOciChart(mirror, source, pins, opts);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  return fetchOciChart(opts.registry(host), source, pins, opts);
}

async function fetchOciChart(
  client: RegistryClient,
  source: Extract<RemoteChartSource, { kind: "oci" }>,
  pins: Pin[],
  opts: FetchOptions,
): Promise<FetchedChart & { indexPins: Pin[] }> {
  const { repo } = parseOciRef(source.ref);
  // Helm writes `+` of a SemVer build as `_` in a tag, which cannot hold a `+`.
  const tag = source.version.replaceAll("+", "_");
  const manifest = await client.getManifest(repo, tag, `${source.ref}:${tag}`);
  // A moved tag is refused before its blob is read.
  const manifestUrl = `${client.endpoint.baseUrl}/v2/${repo}/manifests/${tag}`;
  const digestPins = pins.filter((p) => p.digest !== undefined);
  checkPins(source, { url: manifestUrl, digest: manifest.digest }, digestPins);
  const layer = await chartLayer(manifest, `${source.ref}:${tag}`);
  const max = opts.downloads.maxBytes ?? DEFAULT_MAX_DOWNLOAD;
  const url = `${client.endpoint.baseUrl}/v2/${repo}/blobs/${layer.digest}`;
  if (layer.size > max)
    throw new WorkError(
      `${url}: larger than ${max} bytes (--max-download); raise --max-download if it is that large`,
    );
  const file = workFile(opts, `${path.posix.basename(repo)}-${source.version}.tgz`);
  const sha256 = layer.digest.slice("sha256:".length);
  const blob = await client.getBlob(repo, layer.digest, 0, `${source.ref}@${layer.digest}`, layer.size);
  const bad = (detail: string) => new WorkError(`${url}: ${detail}; nothing was kept`);
  try {
    await pipeline(
      Readable.from(
        checkedBytes(
          blob,
          { size: layer.size, sha256 },
          {
            over: () => bad(`more than the ${layer.size} bytes its manifest gives`),
            differ: (size, got) =>
              bad(`${size} bytes with sha256 ${got}, not the ${layer.size} bytes of ${layer.digest}`),
          },
        ),
      ),
      createWriteStream(file),
    );
  } catch (err) {
    await rm(file, { force: true });
    throw err;
  }
  const origin = {
    kind: "oci" as const,
    ref: source.ref,
    version: source.version,
    digest: manifest.digest,
    sha256,
  };
  return { file, size: layer.size, sha256, url, origin, indexPins: [] };
}

/** `oci://127.0.0.1:5000/charts/x` → host and repository. */
export function parseOciRef(ref: string): { host: string; repo: string } {
  const m = /^oci:\/\/([^/]+)\/(.+[^/])$/.exec(ref);
  if (!m) throw new InputError(`${ref}: write oci://host/path/chart`);
  return { host: m[1] ?? "", repo: m[2] ?? "" };
}

/** The Helm chart layer of a manifest read through the one OCI parser (an index is not a chart). */
async function chartLayer(manifest: RawManifest, name: string): Promise<Descriptor> {
  const doc = await parseManifest(name, manifest);
  const layer = "layers" in doc ? doc.layers.find((l) => l.mediaType === HELM_CHART_LAYER) : undefined;
  if (!layer)
    throw new WorkError(`${name} is not a Helm chart: its manifest has no ${HELM_CHART_LAYER} layer`);
  return layer;
}

function workFile(opts: FetchOptions, name: string): string {
  return path.join(opts.workDir, name);
}
