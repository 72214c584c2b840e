/** Signing keys made the way a user makes them: `openssl genpkey -algorithm ed25519` (README). */
import { execFileSync } from "node:child_process";

export interface KeyPairPem {
  privateKeyPem: string;
  publicKeyPem: string;
}

export function opensslKeyPair(): KeyPairPem {
  const privateKeyPem = execFileSync("openssl", ["genpkey", "-algorithm", "ed25519"]).toString();
  const publicKeyPem = execFileSync("openssl", ["pkey", "-pubout"], { input: privateKeyPem }).toString();
  return { privateKeyPem, publicKeyPem };
}
