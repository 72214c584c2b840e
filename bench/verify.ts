/**
 * Digest checks, read by skopeo as an independent reader: what each tool wrote must be what the
 * source registry served, byte for byte.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { skopeoInspectRaw } from "../test/helpers/skopeo.js";

const execFileAsync = promisify(execFile);

export const REF_NAME = "org.opencontainers.image.ref.name";

export interface Check {
  /** Images checked. */
  checked: number;
  /** One line per image whose digest is not the source's. */
  mismatches: string[];
  /** The source references of those images. */
  badRefs: string[];
}

export interface Expected {
  /** The full source reference, e.g. 127.0.0.1:PORT/bench/img01:v1. */
  ref: string;
  /** Top manifest digest at the source. */
  digest: string;
  mediaType: string;
}

export function sha256(bytes: Buffer): string {
  return "sha256:" + createHash("sha256").update(bytes).digest("hex");
}

/** `skopeo inspect --raw oci:LAYOUT:REF`, as a digest; an Error when skopeo cannot read it. */
export async function ociLayoutDigest(layout: string, refName: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync("skopeo", ["inspect", "--raw", `oci:${layout}:${refName}`], {
      encoding: "buffer",
      maxBuffer: 64 * 1024 * 1024,
    });
    return sha256(stdout);
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`skopeo inspect oci:${layout}:${refName}: ${stderr || (error as Error).message}`);
  }
}

/** The descriptor digests that index.json of an OCI layout lists, by ref-name annotation. */
export async function layoutIndex(
  layout: string,
): Promise<Map<string, { digest: string; mediaType: string }>> {
  const index = JSON.parse(await readFile(path.join(layout, "index.json"), "utf8")) as {
    manifests?: { digest: string; mediaType: string; annotations?: Record<string, string> }[];
  };
  const byRef = new Map<string, { digest: string; mediaType: string }>();
  for (const m of index.manifests ?? []) {
    const ref = m.annotations?.[REF_NAME];
    if (ref !== undefined) byRef.set(ref, { digest: m.digest, mediaType: m.mediaType });
  }
  return byRef;
}

/**
 * Each image in an OCI layout under `refName(image)`: index.json's descriptor (when `checkIndex`)
 * and skopeo's reading of it must both carry the source digest. Returns the digests found too.
 */
export async function checkLayout(
  layout: string,
  images: Expected[],
  refName: (image: Expected) => string,
  checkIndex: boolean,
): Promise<Check & { digests: Map<string, string> }> {
  const mismatches: string[] = [];
  const badRefs: string[] = [];
  const digests = new Map<string, string>();
  let index: Awaited<ReturnType<typeof layoutIndex>> | undefined;
  if (checkIndex) {
    try {
      index = await layoutIndex(layout);
    } catch (error) {
      mismatches.push(`${layout}/index.json unreadable: ${(error as Error).message}`);
    }
  }
  for (const image of images) {
    const name = refName(image);
    const problems: string[] = [];
    if (index) {
      const entry = index.get(name);
      if (!entry) problems.push(`no index.json entry with ${REF_NAME}=${name}`);
      else if (entry.digest !== image.digest) {
        problems.push(`index.json lists ${entry.digest} (${shortType(entry.mediaType)})`);
      }
    }
    try {
      const digest = await ociLayoutDigest(layout, name);
      digests.set(image.ref, digest);
      if (digest !== image.digest) problems.push(`skopeo reads ${digest}`);
    } catch (error) {
      problems.push((error as Error).message.split("\n")[0] ?? String(error));
    }
    if (problems.length > 0) {
      badRefs.push(image.ref);
      mismatches.push(
        `${image.ref}: ${problems.join("; ")}; source ${image.digest} (${shortType(image.mediaType)})`,
      );
    }
  }
  return { checked: images.length, mismatches, badRefs, digests };
}

/** Each image on a registry under `name(image)` must carry the source digest. */
export async function checkRegistry(
  host: string,
  images: Expected[],
  name: (image: Expected) => string,
): Promise<Check> {
  const mismatches: string[] = [];
  const badRefs: string[] = [];
  for (const image of images) {
    const ref = `${host}/${name(image)}`;
    let problem: string | undefined;
    try {
      const raw = await skopeoInspectRaw(ref);
      const digest = sha256(raw);
      if (digest !== image.digest) problem = `registry has ${digest} (${shortType(mediaTypeOf(raw))})`;
    } catch (error) {
      problem = (error as Error).message.split("\n")[0] ?? String(error);
    }
    if (problem !== undefined) {
      badRefs.push(image.ref);
      mismatches.push(`${ref}: ${problem}; source ${image.digest} (${shortType(image.mediaType)})`);
    }
  }
  return { checked: images.length, mismatches, badRefs };
}

function mediaTypeOf(manifest: Buffer): string {
  try {
    return String(
      (JSON.parse(manifest.toString("utf8")) as { mediaType?: unknown }).mediaType ?? "no mediaType",
    );
  } catch {
    return "not JSON";
  }
}

/** "OCI index", "Docker list", … for messages. */
export function shortType(mediaType: string): string {
  const names: Record<string, string> = {
    "application/vnd.oci.image.index.v1+json": "OCI index",
    "application/vnd.oci.image.manifest.v1+json": "OCI manifest",
    "application/vnd.docker.distribution.manifest.list.v2+json": "Docker list",
    "application/vnd.docker.distribution.manifest.v2+json": "Docker manifest",
  };
  return names[mediaType] ?? mediaType;
}

/** The mirror name under `mirror: { naming: full-path }` with the default prefix (SPEC.md). */
export function fullPathMirrorName(ref: string): string {
  const slash = ref.indexOf("/");
  const host = ref
    .slice(0, slash)
    .toLowerCase()
    .replace(/[:[\]]/g, "-");
  return `teleinfra/${host}/${ref.slice(slash + 1)}`;
}
