/**
 * Cosign signatures, checked offline before an image is carried (`prepare --verify-key`).
 * `cosign sign IMAGE` stores, under the tag `sha256-<hex>.sig` of the image's repository, an
 * image manifest whose layers are simple-signing payloads naming the signed digest, each with its
 * signature in the annotation `dev.cosignproject.cosign/signature`. An image passes when one such
 * layer's payload is the blob its descriptor names, the signature over its bytes verifies with a
 * given key, and it claims this image's digest (and repository, when it names one).
 * Offline: no Rekor transparency log, no Fulcio certificates; keys only.
 */
import { verify } from "node:crypto";
import pLimit from "p-limit";
import { formatImageRef, parseImageRef, type ImageRef } from "../config/imageRef.js";
import { isImageManifest } from "../oci/mediaTypes.js";
import { parseManifest } from "../oci/parse.js";
import { digestHex, type Descriptor } from "../oci/types.js";
import { NotFoundError } from "../registry/errors.js";
import type { ImageLocation, ImageSource } from "../store/types.js";
import { InputError, WorkError, firstLine } from "../util/errors.js";
import { checkedBytes } from "../util/streams.js";
import type { VerifyKey } from "./keys.js";

export const SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json";
export const SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
export const SIGNATURE_TYPE = "cosign container image signature";
/** cosign's payloads are a few hundred bytes; a larger "payload" is not one and is not read. */
const MAX_PAYLOAD = 256 * 1024;
/** Signatures looked at per image: each is a blob read, and a tag holds a handful at most. */
const MAX_SIGNATURES = 32;

/** The tag cosign stores an image's signatures under: `sha256-<hex>.sig`. */
export function signatureTag(digest: string): string {
  return `sha256-${digestHex(digest)}.sig`;
}

export interface CosignCheck {
  /** Where the image is read from (its registry, or through its mirror). */
  source: ImageSource;
  /** The image as the definition names it; its repository is the one signatures should name. */
  ref: ImageRef;
  /** What its tag resolves to: the index for a multi-platform image, as `cosign sign` signs. */
  digest: string;
  keys: VerifyKey[];
}

export interface CosignVerified {
  /** The key whose signature verified. */
  key: VerifyKey;
  /** The digest of the `.sig` manifest holding it. */
  signature: string;
}

/** Checks one image's cosign signature; a WorkError naming the image, its digest and why when none passes. */
export async function verifyCosign(c: CosignCheck): Promise<CosignVerified> {
  const refuse = (why: string) =>
    new WorkError(`image ${formatImageRef(c.ref)} (${c.digest}) refused: ${why}`);
  const tag = signatureTag(c.digest);
  const loc: ImageLocation = {
    repository: c.ref.repository,
    reference: tag,
    name: `${c.ref.registry}/${c.ref.repository}:${tag}`,
  };
  const raw = await c.source.getManifest(loc).catch((err: unknown) => {
    if (err instanceof NotFoundError)
      throw refuse(`no cosign signature (no tag ${tag} in ${c.source.description})`);
    throw err;
  });
  const manifest = await parseManifest(loc.name, raw).catch((err: unknown) => {
    throw refuse(firstLine(err));
  });
  if (!("layers" in manifest) || !isImageManifest(raw.mediaType))
    throw refuse(`${loc.name} is a ${raw.mediaType}, not an image manifest of signatures`);
  const layers = manifest.layers.filter((l) => l.mediaType === SIMPLE_SIGNING).slice(0, MAX_SIGNATURES);
  if (layers.length === 0) throw refuse(`${loc.name} holds no ${SIMPLE_SIGNING} layer`);
  const reasons = new Set<string>();
  for (const layer of layers) {
    const outcome = await checkLayer(c, loc, layer);
    if ("key" in outcome) return { key: outcome.key, signature: raw.digest };
    reasons.add(outcome.reason);
  }
  throw refuse([...reasons].join("; "));
}

type Outcome = { key: VerifyKey } | { reason: string };

/** One simple-signing layer: its signature, its payload's bytes, then what the payload claims. */
async function checkLayer(c: CosignCheck, loc: ImageLocation, layer: Descriptor): Promise<Outcome> {
  const encoded = layer.annotations?.[SIGNATURE_ANNOTATION];
  if (!encoded || !/^[A-Za-z0-9+/]+={0,2}$/.test(encoded))
    return { reason: `payload ${layer.digest} has no base64 ${SIGNATURE_ANNOTATION} annotation` };
  if (layer.size > MAX_PAYLOAD)
    return {
      reason: `payload ${layer.digest} is ${layer.size} bytes, more than a signature payload's ${MAX_PAYLOAD}`,
    };
  let payload: Buffer;
  try {
    payload = await readPayload(c.source, loc, layer);
  } catch (err) {
    return { reason: `payload ${layer.digest}: ${firstLine(err)}` };
  }
  const signature = Buffer.from(encoded, "base64");
  const key = c.keys.find((k) => signedBy(k, payload, signature));
  if (!key) return { reason: `bad signature: it does not verify with ${keyNames(c.keys)}` };
  const claimError = claimProblem(payload, c);
  return claimError ? { reason: claimError } : { key };
}

/** The payload's bytes, hashed as they stream and never past its descriptor's size. */
async function readPayload(source: ImageSource, loc: ImageLocation, layer: Descriptor): Promise<Buffer> {
  const stream = await source.openBlob(loc, layer);
  const chunks: Buffer[] = [];
  const checked = checkedBytes(
    stream,
    { size: layer.size, sha256: digestHex(layer.digest) },
    {
      over: () => new WorkError(`more than the ${layer.size} bytes its descriptor says`),
      differ: (size, sha) =>
        new WorkError(`the blob read (${size} bytes, sha256:${sha}) is not the one named`),
    },
  );
  try {
    for await (const chunk of checked) chunks.push(chunk);
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks);
}

function signedBy(k: VerifyKey, payload: Buffer, signature: Buffer): boolean {
  try {
    return verify(k.hash, payload, k.key, signature);
  } catch {
    return false; // a signature that is not even DER for this key type
  }
}

function keyNames(keys: VerifyKey[]): string {
  return keys.map((k) => `${k.file} (key ${k.id})`).join(" or ");
}

interface SimpleSigning {
  critical?: {
    identity?: { "docker-reference"?: unknown };
    image?: { "docker-manifest-digest"?: unknown };
    type?: unknown;
  };
}

/**
 * What is wrong with a (validly signed) payload's claims, or undefined. The digest must be this
 * image's, the type cosign's; a docker-reference, when present, must name this repository
 * (Docker Hub's aliases count as one): a signature made for another repository is refused.
 */
function claimProblem(payload: Buffer, c: CosignCheck): string | undefined {
  let doc: SimpleSigning;
  try {
    doc = (JSON.parse(payload.toString("utf8")) as SimpleSigning | null) ?? {};
  } catch {
    return "the signed payload is not JSON";
  }
  const claimed = doc.critical?.image?.["docker-manifest-digest"];
  if (claimed !== c.digest) return `the signature is for digest ${String(claimed)}, not this image's`;
  if (doc.critical?.type !== SIGNATURE_TYPE)
    return `the payload's type is ${JSON.stringify(doc.critical?.type)}, not "${SIGNATURE_TYPE}"`;
  const reference = doc.critical?.identity?.["docker-reference"];
  if (reference === undefined || reference === "") return undefined;
  const named = typeof reference === "string" ? repositoryOf(reference) : undefined;
  const own = `${c.ref.registry}/${c.ref.repository}`;
  if (named !== own) return `the signature names repository ${JSON.stringify(reference)}, not ${own}`;
  return undefined;
}

function repositoryOf(reference: string): string | undefined {
  try {
    const ref = parseImageRef(reference);
    return `${ref.registry}/${ref.repository}`;
  } catch {
    return undefined;
  }
}

/**
 * Checks every image, a few at a time (`toCheck` resolves each one's digest, a request too);
 * one WorkError lists each image refused, so a run names them all. Returns, in order, what each
 * was checked against and what verified it.
 */
export async function verifyCosignAll<T>(
  items: T[],
  toCheck: (item: T) => Promise<CosignCheck>,
  concurrency = 4,
): Promise<{ check: CosignCheck; verified: CosignVerified }[]> {
  const limit = pLimit(concurrency);
  const outcomes = await Promise.allSettled(
    items.map((item) =>
      limit(async () => {
        const check = await toCheck(item);
        return { check, verified: await verifyCosign(check) };
      }),
    ),
  );
  const failed = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as unknown] : []));
  if (failed.length === 0) return outcomes.map((o) => (o as PromiseFulfilledResult<never>).value);
  // A definition naming an image that is not there is the input's fault, as without --verify-key.
  const input = failed.find((e) => e instanceof InputError);
  if (input) throw input;
  const lines = failed.map((e) => `  ${(e as Error)?.message ?? String(e)}`);
  throw new WorkError(
    `--verify-key: ${failed.length} of ${items.length} images refused; nothing was carried:\n${lines.join("\n")}`,
  );
}
