/**
 * `bundle inspect DIR [--json]`: what a prepared bundle holds, from its lock: images (source
 * ref, digest, platforms, size, mirror name), git archives, files, templates still to render,
 * charts, releases and the site values still to bind, with what sharing blobs between images
 * saves on disk.
 */
import type { Lock, LockChartOrigin, LockReferrer, LockRelease } from "../bundle/lock.js";
import type { BundleContents } from "../bundle/contents.js";
import { redactUrlPassword } from "../config/gitUrl.js";
import { DIGEST_PATTERN } from "../oci/types.js";
import { formatBytes, shortDigest, table } from "../util/format.js";
import { imageBlobMember } from "../bundle/contents.js";

export interface InspectImage {
  ref: string;
  digest: string;
  platforms: string[];
  missingPlatforms: string[];
  /** Compressed bytes: the sum of the image's config and layer blob sizes. */
  size: number;
  /** Mirror name without the registry host: `teleinfra/redis:4.0`. */
  mirror: string;
  /** `prepare --verify-key`: the id of the key whose cosign signature verified, and the `.sig` digest. */
  verified?: { key: string; signature: string };
}

/** A signature, SBOM or attestation carried with an image. */
export interface InspectReferrer {
  image: string;
  /** What it is: cosign's kind for a cosign tag, else its artifactType (or media type). */
  type: string;
  /** The manifest it is about: the image's digest or one platform's. */
  subject: string;
  digest: string;
  size: number;
  /** cosign's tag, for an artifact found under one. */
  tag?: string;
}

export interface InspectChart {
  name: string;
  version?: string;
  /** The Helm archive carried: `charts/<name>-<version>.tgz`. */
  archive?: string;
  /** Where upload pushes it, without the registry host: `teleinfra/charts/<name>:<version>`. */
  mirror?: string;
}

export interface InspectReport {
  name: string;
  images: InspectImage[];
  referrers: InspectReferrer[];
  git: { url: string; commit: string; archive: string; size: number }[];
  files: { path: string; size: number; sha256: string }[];
  /**
   * Templates that use site values, kept to be rendered at upload (`files/…`, then served like
   * the files) or deploy (chart overlays), with the site values each needs.
   */
  templates: { dest: string; renderedAt: "upload" | "deploy"; siteValues: string[] }[];
  /** Each chart, with its version and archive and where upload pushes it, when it has them. */
  charts: InspectChart[];
  /** Charts prepare fetched from a Helm repository or an OCI registry, with the pin of each. */
  chartSources: { name: string; version: string; from: string; pin: string; dependencies: string[] }[];
  releases: LockRelease[];
  /** Site values the templates still need, bound at upload and deploy. */
  siteValues: string[];
  total: {
    /** What the bundle holds: each distinct config/layer blob once, plus the files. */
    bytes: number;
    /** The images' sizes added up as if nothing were shared, plus the files. */
    unshared: number;
    /** unshared - bytes: what storing shared blobs once saves. */
    saved: number;
  };
}

export async function inspectBundle(bundle: BundleContents): Promise<InspectReport> {
  const lock = bundle.lock;
  const images: InspectImage[] = lock.images.map((img) => ({
    ref: img.ref,
    digest: img.digest,
    platforms: img.platforms.map((p) => p.platform),
    missingPlatforms: [...img.missingPlatforms],
    size: img.blobs.reduce((sum, b) => sum + b.size, 0),
    mirror: img.mirror,
    ...(img.verified ? { verified: { ...img.verified } } : {}),
  }));
  const files = lock.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 }));
  // A lock written before passwords were kept out of it may hold one: never shown.
  const git = lock.git.map((g) => ({
    url: redactUrlPassword(g.url),
    commit: g.commit,
    archive: g.archive,
    size: g.size,
  }));

  // Distinct blobs, sized from the layout where the blob is there (the lock's size otherwise).
  const distinct = new Map<string, number>();
  for (const img of lock.images) for (const b of img.blobs) distinct.set(b.digest, b.size);
  let blobBytes = 0;
  for (const [digest, size] of distinct) {
    const held = DIGEST_PATTERN.test(digest) ? await bundle.stat(imageBlobMember(digest)) : undefined;
    blobBytes += held?.size ?? size;
  }
  // Git archives are usually among the files already; count each path once.
  const filePaths = new Set(files.map((f) => f.path));
  const fileBytes =
    files.reduce((sum, f) => sum + f.size, 0) +
    git.filter((g) => !filePaths.has(g.archive)).reduce((sum, g) => sum + g.size, 0);

  const bytes = blobBytes + fileBytes;
  const unshared = images.reduce((sum, i) => sum + i.size, 0) + fileBytes;
  return {
    name: lock.name,
    images,
    referrers: inspectReferrers(lock),
    git,
    files,
    templates: lock.templates.map((x) => ({
      dest: x.dest,
      renderedAt: x.dest.startsWith("files/") ? "upload" : "deploy",
      siteValues: [...x.siteValues],
    })),
    charts: lock.charts.map((c) => ({
      name: c.name,
      ...(c.version !== undefined ? { version: c.version } : {}),
      ...(c.archive ? { archive: c.archive.path } : {}),
      ...(c.mirror !== undefined ? { mirror: c.mirror } : {}),
    })),
    chartSources: lock.charts.flatMap((c) => (c.origin ? [chartSource(c.name, c.origin)] : [])),
    releases: lock.releases,
    siteValues: [...lock.siteValues].sort(),
    total: { bytes, unshared, saved: unshared - bytes },
  };
}

const COSIGN_KINDS: Record<string, string> = { sig: "signature", att: "attestation", sbom: "SBOM" };

function inspectReferrers(lock: Lock): InspectReferrer[] {
  return lock.images.flatMap((img) =>
    (img.referrers ?? []).map((r) => ({
      image: img.ref,
      type: referrerType(r),
      subject: r.subject,
      digest: r.digest,
      size: r.size,
      ...(r.tag ? { tag: r.tag } : {}),
    })),
  );
}

function referrerType(r: LockReferrer): string {
  const suffix = r.tag?.split(".").pop();
  if (suffix && COSIGN_KINDS[suffix]) return `cosign ${COSIGN_KINDS[suffix]} (.${suffix})`;
  return r.artifactType ?? r.mediaType;
}

/** Human output: a table per section, then the totals. */
export function formatInspect(report: InspectReport): string[] {
  const lines = [`bundle ${report.name}`];
  const section = (title: string, header: string[], rows: string[][]) => {
    if (rows.length === 0) return;
    lines.push("", `${title} (${rows.length})`, ...table(header, rows).map((l) => `  ${l}`));
  };
  section(
    "images",
    ["REF", "DIGEST", "PLATFORMS", "SIZE", "MIRROR"],
    report.images.map((i) => [
      i.ref,
      shortDigest(i.digest),
      i.platforms.join(",") + (i.missingPlatforms.length ? ` (missing ${i.missingPlatforms.join(",")})` : ""),
      formatBytes(i.size),
      i.mirror,
    ]),
  );
  lines.push(...verifiedLine(report.images));
  section(
    "referrers",
    ["IMAGE", "TYPE", "SUBJECT", "DIGEST"],
    report.referrers.map((r) => [r.image, r.type, shortDigest(r.subject), shortDigest(r.digest)]),
  );
  section(
    "git",
    ["URL", "COMMIT", "ARCHIVE", "SIZE"],
    report.git.map((g) => [g.url, g.commit.slice(0, 12), g.archive, formatBytes(g.size)]),
  );
  section(
    "files",
    ["PATH", "SIZE", "SHA256"],
    report.files.map((f) => [f.path, formatBytes(f.size), f.sha256.slice(0, 12)]),
  );
  section(
    "templates, rendered with the site's values",
    ["DEST", "RENDERED AT", "SITE VALUES"],
    report.templates.map((x) => [x.dest, x.renderedAt, x.siteValues.join(", ")]),
  );
  section(
    "charts",
    ["CHART", "VERSION", "ARCHIVE", "PUSHED TO (REG/…)"],
    report.charts.map((c) => [c.name, c.version ?? "-", c.archive ?? "-", c.mirror ?? "(not pushed)"]),
  );
  section(
    "charts from repositories",
    ["CHART", "VERSION", "FROM", "PINNED", "DEPENDENCIES"],
    report.chartSources.map((c) => [c.name, c.version, c.from, c.pin, c.dependencies.join(", ")]),
  );
  section(
    "releases",
    ["RELEASE", "CHART", "NAMESPACE"],
    report.releases.map((r) => [r.name, r.chart, r.namespace]),
  );
  lines.push("");
  lines.push(
    report.siteValues.length
      ? `site values to bind at upload/deploy: ${report.siteValues.join(", ")}`
      : "no site values to bind",
  );
  const { bytes, unshared, saved } = report.total;
  lines.push(
    `total ${formatBytes(bytes)} on disk` +
      (saved > 0 ? ` (${formatBytes(unshared)} unshared, ${formatBytes(saved)} saved by sharing blobs)` : ""),
  );
  return lines;
}

/** Which images prepare carried only after checking their cosign signature, and by which keys. */
function verifiedLine(images: InspectImage[]): string[] {
  const verified = images.filter((i) => i.verified);
  if (verified.length === 0) return [];
  const keys = [...new Set(verified.map((i) => i.verified!.key))].join(", ");
  const which =
    verified.length === images.length ? `all ${images.length}` : `${verified.length} of ${images.length}`;
  return [`  cosign signatures checked at prepare: ${which} images, by key ${keys}`];
}

/** Where a chart came from and what pins it: the archive's sha256, or the OCI manifest's digest. */
function chartSource(name: string, o: LockChartOrigin): InspectReport["chartSources"][number] {
  return {
    name,
    version: o.version,
    from: o.kind === "repo" ? `${o.url} (${o.name})` : o.ref,
    pin: o.kind === "repo" ? `sha256:${o.sha256}` : o.digest,
    dependencies: (o.dependencies ?? []).map(
      (d) => `${d.parent ? `${d.parent}/` : ""}${d.name} ${d.version}`,
    ),
  };
}
