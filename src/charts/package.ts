/**
 * A git or local chart of the bundle as a Helm chart archive, `charts/<name>-<version>.tgz`,
 * laid out as `helm package` lays it out (every file under `<name>/`), for upload to push as an
 * OCI artifact. Made the same way every time (entries sorted, one fixed mtime, owner 0, the
 * modes the lock lists, gzip without a name or time), so two prepares write the same bytes and
 * the artifact keeps its digest from one upload to the next.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { pipeline, Readable } from "node:stream";
import { createGzip } from "node:zlib";
import { Header, Pax, t as listTar, type ReadEntry } from "tar";
import type { LockChart, LockChartArchive, LockChartFile } from "../bundle/lock.js";
import { chartMirror } from "../config/mirror.js";
import type { MirrorConfig } from "../config/model.js";
import { writeVerified } from "../util/cas.js";
import { WorkError } from "../util/errors.js";
import type { Reporter } from "../util/reporter.js";
import { checkedBytes } from "../util/streams.js";
import { chartId, readChartFile } from "./metadata.js";

/** Every entry's mtime: a fixed one, so the bytes do not depend on when the chart was copied. */
const MTIME = new Date("2000-01-01T00:00:00Z");
const BLOCK = 512;

/**
 * The chart's version, archive and mirror name for the lock. A chart whose Chart.yaml has no
 * valid name or version gets none of them (a warning says so): it is deployed from its folder
 * as before, but not pushed. A Chart.yaml that is not one (bad YAML, a field of the wrong kind)
 * is exit 2 at its line: helm could not load the chart either.
 */
export async function chartArchive(
  dir: string,
  chart: LockChart,
  mirror: MirrorConfig,
  out: Reporter,
): Promise<Pick<LockChart, "version" | "archive" | "mirror">> {
  const where = `${chart.path}/Chart.yaml`;
  const skip = (why: string) => {
    out.warn(`chart ${chart.name}: ${why}; it is not packaged, and upload does not push it`);
    return {};
  };
  const meta = chart.files?.some((f) => f.path === "Chart.yaml")
    ? await readChartFile("Chart.yaml", path.join(dir, ...where.split("/")), { where })
    : undefined;
  if (!meta) return skip(`${where} is missing`);
  const id = chartId(meta);
  if (!id.ok) return skip(`${where}: ${id.why}`);
  const archive = await archiveToPush(dir, chart, id.version, out);
  const name = chartMirror(chart.name, id.version, mirror);
  if (!name)
    out.warn(
      `chart ${chart.name} ${id.version}: makes no OCI repository and tag (lower-case names only); upload does not push it`,
    );
  return { version: id.version, archive, ...(name ? { mirror: name } : {}) };
}

/**
 * The archive upload pushes: the one a repository served (byte for byte) while the chart folder
 * holds exactly its files; once the folder differs (a subchart prepare fetched into it, an
 * overlay), the folder packaged in its place, so that the site's `helm pull` gets the chart
 * deploy installs. The served archive's sha256 stays in the lock's `origin`.
 */
async function archiveToPush(
  dir: string,
  chart: LockChart,
  version: string,
  out: Reporter,
): Promise<LockChartArchive> {
  if (!chart.archive) return packageChart(dir, chart, version);
  const served = path.join(dir, ...chart.archive.path.split("/"));
  const differs = differences(await archiveFiles(served), chart.files ?? []);
  if (differs.length === 0) return chart.archive;
  const packed = await packageChart(dir, chart, version);
  if (packed.path !== chart.archive.path) await rm(served, { force: true });
  const shown = differs.slice(0, 3).join(", ") + (differs.length > 3 ? `, … ${differs.length - 3} more` : "");
  out.info(
    `  ✔ chart ${chart.name} ${version}: ${chart.path}/ is not the archive it came as (${shown}); packaged → ${packed.path}`,
  );
  return packed;
}

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);

/** Each file of a chart archive by its path under the top folder, sized and hashed as it streams. */
async function archiveFiles(file: string): Promise<Map<string, { size: number; sha256: string }>> {
  const files = new Map<string, { size: number; sha256: string }>();
  await listTar({
    file,
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      const rel = entry.path.split("/").filter(Boolean).slice(1).join("/");
      if (!FILE_TYPES.has(entry.type) || rel === "") return;
      const hash = createHash("sha256");
      let size = 0;
      entry.on("data", (c: Buffer) => {
        hash.update(c);
        size += c.length;
      });
      entry.on("end", () => files.set(rel, { size, sha256: hash.digest("hex") }));
    },
  });
  return files;
}

/** What the folder's files (as the lock lists them) have that the archive's do not, and the reverse. */
function differences(
  archived: Map<string, { size: number; sha256: string }>,
  files: LockChartFile[],
): string[] {
  const out: string[] = [];
  for (const f of files) {
    const a = archived.get(f.path);
    if (!a) out.push(`${f.path} added`);
    else if (a.size !== f.size || a.sha256 !== f.sha256) out.push(`${f.path} changed`);
  }
  const listed = new Set(files.map((f) => f.path));
  for (const p of archived.keys()) if (!listed.has(p)) out.push(`${p} removed`);
  return out;
}

/** Writes `charts/<name>-<version>.tgz` from the chart's folder, as the lock lists its files. */
export async function packageChart(
  dir: string,
  chart: LockChart,
  version: string,
): Promise<LockChartArchive> {
  const rel = `charts/${chart.name}-${version}.tgz`;
  const root = path.join(dir, ...chart.path.split("/"));
  const entries = tarEntries(root, chart.name, chart.files ?? []);
  // The callback form returns the gzip stream, destroyed with the error if a file cannot be read.
  const gzipped = pipeline(Readable.from(entries), createGzip(), () => {});
  const written = await writeVerified(path.join(dir, ...rel.split("/")), gzipped);
  return { path: rel, ...written };
}

/** The tar stream: each file's header (a pax header first for a long name), bytes and padding. */
async function* tarEntries(root: string, name: string, files: LockChartFile[]): AsyncGenerator<Buffer> {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const f of sorted) {
    const entry = `${name}/${f.path}`;
    const header = new Header({
      path: entry,
      mode: f.mode,
      uid: 0,
      gid: 0,
      size: f.size,
      mtime: MTIME,
      type: "File",
    });
    if (header.encode()) yield new Pax({ path: entry, mtime: MTIME }).encode();
    if (!header.block) throw new WorkError(`${entry}: cannot write its tar header`);
    yield header.block;
    yield* fileBytes(path.join(root, ...f.path.split("/")), f);
    if (f.size % BLOCK) yield Buffer.alloc(BLOCK - (f.size % BLOCK));
  }
  yield Buffer.alloc(2 * BLOCK);
}

/** A chart file's bytes, exactly those the lock lists: a header promised their size. */
function fileBytes(file: string, f: LockChartFile): AsyncGenerator<Buffer> {
  const changed = () => new WorkError(`${file}: changed while the chart was packaged`);
  return checkedBytes(createReadStream(file), f, { over: changed, differ: changed });
}
