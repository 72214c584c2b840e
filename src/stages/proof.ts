/**
 * The render proof of `bundle deploy`: every image a rendered release runs is on the site
 * registry, under the mirror name of an image the bundle carries (whose digest the preflight
 * checked) or, failing that, present on the registry all the same. Anything else would be pulled
 * from outside the site and is named with the object, the container and what to add. Fetches
 * from outside (URLs, git clones, package installs) are listed beside.
 */
import { readFile, writeFile } from "node:fs/promises";
import type { Lock, LockImage } from "../bundle/lock.js";
import { readRendered, type RenderedFetch, type RenderedImage } from "../audit/rendered.js";
import { makeSite } from "../audit/site.js";
import { formatImageRef, type ImageRef } from "../config/imageRef.js";
import { parseOrUndefined } from "../audit/references.js";
import { normalise } from "../charts/discover.js";
import type { ImageSource } from "../store/types.js";

export interface ProvedImage extends RenderedImage {
  /** The carried image it mirrors (its source reference), when it is one. */
  mirrorOf?: string;
  digest?: string;
}

export interface Proof {
  release: string;
  file: string;
  images: ProvedImage[];
  outside: RenderedFetch[];
  problems: string[];
}

export interface ProofInput {
  release: string;
  /** `helm template` output. */
  rendered: string;
  /** Where proof.json goes. */
  file: string;
  lock: Lock;
  registryHost?: string;
  fileserverUrl?: string;
  registry?: ImageSource;
}

export async function proveRelease(input: ProofInput): Promise<Proof> {
  const site = makeSite({
    ...(input.registryHost ? { registryHost: input.registryHost } : {}),
    ...(input.fileserverUrl ? { fileserverUrl: input.fileserverUrl } : {}),
  });
  const view = readRendered(await readFile(input.rendered, "utf8"), `release ${input.release}`, site);
  const mirrors = new Map<string, LockImage>();
  if (input.registryHost) {
    for (const img of input.lock.images)
      mirrors.set(normalise(`${input.registryHost}/${img.mirror}`) ?? "", img);
  }
  const verdicts = new Map<string, Promise<string | undefined>>();
  const images: ProvedImage[] = [];
  const problems: string[] = [];
  for (const r of view.images) {
    const key = normalise(r.image);
    const carried = key === undefined ? undefined : mirrors.get(key);
    images.push({ ...r, ...(carried ? { mirrorOf: carried.ref, digest: carried.mirrorDigest } : {}) });
    if (carried) continue;
    const verdict = verdicts.get(r.image) ?? judge(r.image, input);
    verdicts.set(r.image, verdict);
    const why = await verdict;
    if (why) problems.push(`${r.object} container ${r.container}: image ${r.image} ${why}`);
  }
  const proof: Proof = { release: input.release, file: input.file, images, outside: view.fetches, problems };
  await writeFile(input.file, `${JSON.stringify(proof, null, 2)}\n`);
  return proof;
}

/** Why an image the bundle does not carry under that name would not be pulled from the site; undefined when it would. */
async function judge(image: string, input: ProofInput): Promise<string | undefined> {
  const ref = parseOrUndefined(image);
  if (!ref) return "is not an image reference";
  const host = input.registryHost;
  if (host && ref.registry === host && input.registry) {
    const head = await input.registry
      .headManifest({ repository: ref.repository, reference: ref.digest ?? ref.tag ?? "latest", name: image })
      .catch(() => undefined);
    if (head) return undefined;
    return `is not on the site registry ${host}; carry it in the bundle's images and upload again`;
  }
  const carried = input.lock.images.find((i) =>
    sameName(parseOrUndefined(i.ref.replace(/^docker-daemon:/, "")), ref),
  );
  if (carried && host)
    return `is pulled from ${ref.registry}: the bundle carries it as ${host}/${carried.mirror}, but nothing points the chart there (set the value that names it, or overlay the template)`;
  return `is pulled from ${ref.registry}, outside the site: add ${formatImageRef(ref)} to the definition's images and prepare again`;
}

function sameName(a: ImageRef | undefined, b: ImageRef): boolean {
  return a !== undefined && a.registry === b.registry && a.repository === b.repository && a.tag === b.tag;
}
