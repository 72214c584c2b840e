/**
 * Signed bundles: an ed25519 signature over the exact bytes of `bundle.lock.json`, stored base64
 * in `bundle.lock.json.sig`. The lock names every blob and file by digest, so a valid signature
 * plus `verify` vouches for the whole bundle. Messages never include key material.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { LOCK_FILE } from "./lock.js";
import { writeAtomic } from "../util/cas.js";
import { InputError, WorkError } from "../util/errors.js";
import type { BundleContents } from "./contents.js";

export const SIGNATURE_FILE = `${LOCK_FILE}.sig`;

function privateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new InputError("the signing key is not a PEM private key");
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new InputError(
      `the signing key is ${key.asymmetricKeyType ?? "not asymmetric"}; bundle signs with ed25519`,
    );
  }
  return key;
}

function publicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new InputError("the public key is not a PEM public key");
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new InputError(
      `the public key is ${key.asymmetricKeyType ?? "not asymmetric"}; bundle signs with ed25519`,
    );
  }
  return key;
}

/** A short, non-secret name for a public key: the first 16 hex digits of its DER's sha256. */
export function keyId(publicKeyPem: string): string {
  return keyIdOf(publicKey(publicKeyPem));
}

/** The same id for a KeyObject (a private key's is its public key's). */
export function keyIdOf(key: KeyObject): string {
  const der = key.export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("hex").slice(0, 16);
}

async function readLockBytes(dir: string): Promise<Buffer> {
  try {
    return await readFile(path.join(dir, LOCK_FILE));
  } catch {
    throw new InputError(`${dir} is not a prepared bundle: ${LOCK_FILE} is missing`);
  }
}

/**
 * Writes `bundle.lock.json.sig` for the lock as it is now on disk: the base64 signature on the
 * first line, then `key <id>` naming the signer's public key (see `keyId`).
 */
export async function signLock(dir: string, privateKeyPem: string): Promise<void> {
  const key = privateKey(privateKeyPem);
  const bytes = await readLockBytes(dir);
  const signature = sign(null, bytes, key).toString("base64");
  await writeAtomic(path.join(dir, SIGNATURE_FILE), `${signature}\nkey ${keyIdOf(createPublicKey(key))}\n`);
}

/**
 * Checks `bundle.lock.json.sig` of a bundle folder or archive against `publicKeyPem`. Throws a
 * WorkError that says whether the signature is missing, malformed, made by another key, or does
 * not match the lock's bytes.
 */
export async function verifyLockSignature(
  bundle: Pick<BundleContents, "where" | "isArchive" | "readFile">,
  publicKeyPem: string,
): Promise<void> {
  const key = publicKey(publicKeyPem);
  const expected = keyIdOf(key);
  const sigFile = bundle.isArchive
    ? `${SIGNATURE_FILE} in ${bundle.where}`
    : path.join(bundle.where, SIGNATURE_FILE);
  const text = await bundle.readFile(SIGNATURE_FILE).then(
    (b) => b.toString("utf8"),
    () => {
      throw new WorkError(`${sigFile} is missing: the bundle is not signed`);
    },
  );
  const [first = "", ...rest] = text.split("\n").map((l) => l.trim());
  const signature = Buffer.from(first, "base64");
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(first) || signature.length !== 64) {
    throw new WorkError(`${sigFile} is invalid: its first line is not a base64 ed25519 signature`);
  }
  const signer = rest
    .find((l) => l.startsWith("key "))
    ?.slice(4)
    .trim();
  if (signer && signer !== expected) {
    throw new WorkError(
      `${sigFile} was made by another key (${signer}), not the given public key (${expected})`,
    );
  }
  const bytes = await bundle.readFile(LOCK_FILE);
  if (verify(null, bytes, key, signature)) return;
  throw new WorkError(
    signer
      ? `${sigFile} is invalid: ${LOCK_FILE} changed after it was signed with key ${expected}`
      : `${sigFile} is invalid for the given public key (${expected}): ${LOCK_FILE} changed after signing, or another key signed it`,
  );
}
