/**
 * The public keys `prepare --verify-key` checks cosign signatures with: PEM as `cosign
 * generate-key-pair` writes cosign.pub (ECDSA P-256), or any other key node:crypto reads whose
 * algorithm cosign signs with (ECDSA P-384/P-521, RSA, Ed25519). Messages name the file and the
 * key's id, never key material.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { keyIdOf } from "../bundle/sign.js";
import { InputError } from "../util/errors.js";

export interface VerifyKey {
  /** The file it was read from, for messages. */
  file: string;
  key: KeyObject;
  /** 16 hex digits of the sha256 of its DER (the id `--sign-key` signatures name keys by). */
  id: string;
  /** The digest `crypto.verify` takes for it; null where the algorithm has its own (Ed25519). */
  hash: string | null;
}

/** ECDSA signs a digest of the curve's size, as cosign (sigstore's signature package) does. */
const CURVE_HASHES: Record<string, string> = {
  prime256v1: "sha256",
  secp384r1: "sha384",
  secp521r1: "sha512",
};

/** Parses one `--verify-key` file's text; a bad one is exit 2 naming the file. */
export function parseVerifyKey(pem: string, file: string): VerifyKey {
  const fail = (why: string): never => {
    throw new InputError(`--verify-key ${file}: ${why}`);
  };
  // createPublicKey would derive the public half of a private key: refuse it rather than
  // encourage carrying a private key around.
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem))
    fail("is a private key; give the public key (cosign.pub)");
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    return fail("not a PEM public key (expected -----BEGIN PUBLIC KEY-----, as cosign.pub)");
  }
  return { file, key, id: keyIdOf(key), hash: hashFor(key, fail) };
}

function hashFor(key: KeyObject, fail: (why: string) => never): string | null {
  const type = key.asymmetricKeyType;
  if (type === "ed25519") return null;
  if (type === "rsa") return "sha256";
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (type === "ec" && curve && CURVE_HASHES[curve]) return CURVE_HASHES[curve];
  return fail(
    `a ${type ?? "non-asymmetric"}${curve ? ` (${curve})` : ""} key; cosign keys are ECDSA P-256/P-384/P-521, RSA or Ed25519`,
  );
}
