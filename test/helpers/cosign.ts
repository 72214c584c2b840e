/**
 * Cosign-style signatures made with node:crypto, stored the way `cosign sign --key` stores them:
 * under the tag `sha256-<hex>.sig` of the image's repository, an OCI image manifest whose one
 * layer is the simple-signing payload, its ECDSA P-256 signature (DER, base64) in the layer's
 * `dev.cosignproject.cosign/signature` annotation.
 */
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { MediaTypes, pushBlob, pushManifest, type RegistryTarget } from "./images.js";

export const SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json";
export const SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";

export interface CosignKeyPair {
  privateKey: KeyObject;
  /** As cosign.pub: `-----BEGIN PUBLIC KEY-----`, SPKI. */
  publicKeyPem: string;
}

/** An ECDSA P-256 key pair, the kind `cosign generate-key-pair` makes. */
export function cosignKeyPair(): CosignKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return { privateKey, publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString() };
}

/** The payload cosign signs, byte for byte as cosign writes it. */
export function simpleSigningPayload(digest: string, dockerReference?: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: {
        identity: { "docker-reference": dockerReference ?? "" },
        image: { "docker-manifest-digest": digest },
        type: "cosign container image signature",
      },
      optional: null,
    }),
  );
}

export interface SignImageOptions {
  registry: RegistryTarget;
  repo: string;
  /** The image's digest: the signature tag is named after it. */
  digest: string;
  privateKey: KeyObject;
  /** Default `HOST/repo`, as cosign records it. */
  dockerReference?: string;
  /** The digest the payload claims, when not `digest` (a signature moved from another image). */
  claimedDigest?: string;
  /** Changes the payload after it was signed (a tampered signature). */
  tamper?: (payload: Buffer) => Buffer;
}

export interface SignedImage {
  tag: string;
  /** Digest of the `.sig` manifest. */
  manifestDigest: string;
  payload: Buffer;
}

export async function signImage(opts: SignImageOptions): Promise<SignedImage> {
  const host = new URL(typeof opts.registry === "string" ? opts.registry : opts.registry.url).host;
  const signed = simpleSigningPayload(
    opts.claimedDigest ?? opts.digest,
    opts.dockerReference ?? `${host}/${opts.repo}`,
  );
  // Ed25519 hashes inside the algorithm; ECDSA and RSA sign a sha256, as cosign does.
  const hash = opts.privateKey.asymmetricKeyType === "ed25519" ? null : "sha256";
  const signature = sign(hash, signed, opts.privateKey).toString("base64");
  const payload = opts.tamper ? opts.tamper(signed) : signed;
  const layer = await pushBlob(opts.registry, opts.repo, payload);
  const config = await pushBlob(opts.registry, opts.repo, Buffer.from(signatureConfig(layer.digest)));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      config: { mediaType: MediaTypes.ociConfig, ...config },
      layers: [{ mediaType: SIMPLE_SIGNING, ...layer, annotations: { [SIGNATURE_ANNOTATION]: signature } }],
    }),
  );
  const tag = `sha256-${opts.digest.slice("sha256:".length)}.sig`;
  const manifestDigest = await pushManifest(opts.registry, opts.repo, tag, MediaTypes.ociManifest, manifest);
  return { tag, manifestDigest, payload };
}

/** The config cosign writes for a signature image: its one "layer" is the payload. */
function signatureConfig(payloadDigest: string): string {
  return JSON.stringify({
    architecture: "",
    created: "0001-01-01T00:00:00Z",
    history: [{ created: "0001-01-01T00:00:00Z" }],
    os: "",
    rootfs: { type: "layers", diff_ids: [payloadDigest] },
    config: {},
  });
}
