/**
 * A chart archive of the bundle as the Helm OCI artifact `helm push` makes of it (Helm's
 * pkg/registry): the config blob is the archive's Chart.yaml as JSON, the one layer is the
 * archive's bytes, and an OCI image manifest names both, with Helm's annotations. It is served
 * to the copy engine as an image source, so upload pushes it with the registry store and the
 * engine every image goes through: blobs first, a manifest the registry has means no blob moves.
 */
import { Readable } from "node:stream";
import { Parser, type ReadEntry } from "tar";
import type { BundleContents } from "../bundle/contents.js";
import type { LockChart, LockChartArchive } from "../bundle/lock.js";
import { HELM_CHART_LAYER, HELM_CONFIG, OCI_MANIFEST } from "../oci/mediaTypes.js";
import { sha256Digest, type Descriptor, type ManifestHead, type RawManifest } from "../oci/types.js";
import { NotFoundError } from "../registry/errors.js";
import type { ImageLocation, ImageSource } from "../store/types.js";
import { WorkError } from "../util/errors.js";
import { chartId, helmConfig, MAX_CHART_YAML, parseChartFile, type ChartYaml } from "./metadata.js";

/** A chart ready to push: its manifest and config in memory, its layer read from the bundle. */
export class ChartArtifact implements ImageSource {
  readonly description: string;
  readonly manifest: RawManifest;

  private constructor(
    private readonly bundle: BundleContents,
    private readonly archive: LockChartArchive,
    private readonly config: Buffer,
    meta: ChartYaml,
  ) {
    this.description = `${archive.path} in ${bundle.where}`;
    this.manifest = helmManifest(this.configDescriptor(), this.layerDescriptor(), meta);
  }

  /**
   * Reads the archive once, whole, checked against the lock (the read fails naming the file
   * when its bytes differ), for the Chart.yaml it holds: nothing is pushed from an archive that
   * is not the one the lock names, nor from one whose Chart.yaml disagrees with the lock.
   */
  static async open(bundle: BundleContents, chart: LockChart & { archive: LockChartArchive }) {
    const where = `${chart.archive.path} in ${bundle.where}`;
    const text = await chartYamlOf(bundle.open(chart.archive.path), where);
    const meta = parseChartFile("Chart.yaml", text, { where: "Chart.yaml", from: where });
    const id = chartId(meta);
    if (!id.ok) throw new WorkError(`${where}: its Chart.yaml is not usable: ${id.why}`);
    if (chart.version !== undefined && id.version !== chart.version)
      throw new WorkError(`${where}: its Chart.yaml says version ${id.version}, the lock ${chart.version}`);
    return new ChartArtifact(bundle, chart.archive, helmConfig(meta), meta);
  }

  getManifest(): Promise<RawManifest> {
    return Promise.resolve(this.manifest);
  }

  headManifest(): Promise<ManifestHead> {
    const { digest, mediaType, bytes } = this.manifest;
    return Promise.resolve({ digest, mediaType, size: bytes.length });
  }

  async openBlob(loc: ImageLocation, desc: Descriptor, offset = 0): Promise<Readable> {
    if (desc.digest === this.configDescriptor().digest) return Readable.from([this.config.subarray(offset)]);
    if (desc.digest !== this.layerDescriptor().digest)
      throw new NotFoundError(
        `${loc.name}: ${this.description} holds no blob ${desc.digest}`,
        "BLOB_UNKNOWN",
      );
    // From the start the bytes are checked against the lock as they stream; a resumed part is not.
    return this.bundle.open(this.archive.path, offset > 0 ? { start: offset } : {});
  }

  /** The config and the layer: the blobs a registry serving this chart holds for it. */
  blobs(): Descriptor[] {
    return [this.configDescriptor(), this.layerDescriptor()];
  }

  /** Bytes `start`…`end` (inclusive) of one of its blobs, or the whole blob (then checked against the lock). */
  openRange(digest: string, range?: { start: number; end: number }): Readable {
    if (digest === this.configDescriptor().digest)
      return Readable.from([this.config.subarray(range?.start ?? 0, range ? range.end + 1 : undefined)]);
    return this.bundle.open(this.archive.path, range ?? {});
  }

  private configDescriptor(): Descriptor {
    return { mediaType: HELM_CONFIG, digest: sha256Digest(this.config), size: this.config.length };
  }

  private layerDescriptor(): Descriptor {
    return { mediaType: HELM_CHART_LAYER, digest: `sha256:${this.archive.sha256}`, size: this.archive.size };
  }
}

/**
 * The manifest `helm push` writes: config, the chart layer, and the annotations Helm derives
 * from Chart.yaml. Helm also adds `org.opencontainers.image.created` (the push time): left out,
 * so the same chart is always the same manifest and a second upload finds it there.
 */
function helmManifest(config: Descriptor, layer: Descriptor, meta: ChartYaml): RawManifest {
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: [layer],
    annotations: annotations(meta),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { bytes, mediaType: OCI_MANIFEST, digest: sha256Digest(bytes) };
}

/** Helm's generateOCIAnnotations, keys sorted as Go writes a map. */
function annotations(meta: ChartYaml): Record<string, string> {
  const str = (v: unknown) => (typeof v === "string" && v.trim() !== "" ? v : undefined);
  const first = Array.isArray(meta.sources) ? str(meta.sources[0]) : undefined;
  const out: Record<string, string | undefined> = {
    "org.opencontainers.image.description": str(meta.description),
    "org.opencontainers.image.title": str(meta.name),
    "org.opencontainers.image.version": str(meta.version),
    "org.opencontainers.image.url": str(meta.home),
    "org.opencontainers.image.source": first,
    "org.opencontainers.image.authors": authors(meta.maintainers),
  };
  const own = meta.annotations;
  if (own && typeof own === "object" && !Array.isArray(own))
    for (const [k, v] of Object.entries(own))
      if (k !== "org.opencontainers.image.title" && k !== "org.opencontainers.image.version")
        out[k] = String(v);
  const keys = Object.keys(out).filter((k) => out[k] !== undefined);
  return Object.fromEntries(
    keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((k) => [k, out[k] as string]),
  );
}

/** `Ann (ann@x.org), Bob` as Helm writes the maintainers. */
function authors(maintainers: unknown): string | undefined {
  if (!Array.isArray(maintainers) || maintainers.length === 0) return undefined;
  const one = (m: unknown) => {
    const { name, email } = (m ?? {}) as { name?: unknown; email?: unknown };
    return `${typeof name === "string" ? name : ""}${typeof email === "string" && email ? ` (${email})` : ""}`;
  };
  const text = maintainers.map(one).join(", ");
  return text.trim() === "" ? undefined : text;
}

/**
 * The text of `<top>/Chart.yaml` in a chart archive, streamed through a tar parser: Helm reads
 * the chart's own Chart.yaml, never one of a subchart, and so does this.
 */
async function chartYamlOf(source: Readable, where: string): Promise<string> {
  const chunks: Buffer[] = [];
  let found = false;
  let failure: Error | undefined;
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      const parts = entry.path.split("/").filter(Boolean);
      const wanted = !found && parts.length === 2 && parts[1] === "Chart.yaml";
      if (wanted && entry.size > MAX_CHART_YAML)
        failure ??= new WorkError(`${where}: its Chart.yaml is too large`);
      if (!wanted || failure) return entry.resume();
      found = true;
      entry.on("data", (c: Buffer) => chunks.push(c));
    },
  });
  const ended = new Promise<void>((resolve) => {
    parser.on("end", () => resolve());
    parser.on("error", (err: Error) => {
      failure ??= new WorkError(`${where}: not a chart archive (${err.message})`);
      resolve();
    });
  });
  // Read to the end even after the parser gave up: bytes that differ from the lock's say so first.
  for await (const chunk of source) if (!failure) parser.write(chunk as Buffer);
  if (failure) throw failure;
  parser.end();
  await ended;
  if (failure) throw failure;
  if (!found) throw new WorkError(`${where}: holds no <chart>/Chart.yaml; it is not a Helm chart archive`);
  return Buffer.concat(chunks).toString("utf8");
}
