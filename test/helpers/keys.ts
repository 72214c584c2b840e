/** Signing keys made the way a user makes them: `openssl genpkey -algorithm ed25519` (README). */
import { execFile, execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

export interface KeyPairPem {
  privateKeyPem: string;
  publicKeyPem: string;
}

export function opensslKeyPair(): KeyPairPem {
  const privateKeyPem = execFileSync("openssl", ["genpkey", "-algorithm", "ed25519"]).toString();
  const publicKeyPem = execFileSync("openssl", ["pkey", "-pubout"], { input: privateKeyPem }).toString();
  return { privateKeyPem, publicKeyPem };
}

/**
 * A self-signed certificate made by openssl: for 127.0.0.1 by default (a TLS server's), or with
 * another common name and no address (a token issuer's signing certificate).
 */
export async function selfSignedCert(
  dir: string,
  cn = "127.0.0.1",
): Promise<{ key: string; cert: string; certFile: string; keyFile: string }> {
  const keyFile = path.join(dir, "tls-key.pem");
  const certFile = path.join(dir, "tls-cert.pem");
  await promisify(execFile)("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-sha256",
    "-days",
    "1",
    "-subj",
    `/CN=${cn}`,
    ...(cn === "127.0.0.1" ? ["-addext", "subjectAltName=IP:127.0.0.1"] : []),
    "-keyout",
    keyFile,
    "-out",
    certFile,
  ]);
  return { key: await readFile(keyFile, "utf8"), cert: await readFile(certFile, "utf8"), certFile, keyFile };
}
