/**
 * `prepare --verify-key`: each image's cosign signature (made here with node:crypto and stored
 * under its `.sig` tag in a real Distribution registry, as cosign stores it) is checked before
 * anything is written; an unsigned or wrongly signed image is refused, naming it.
 */
import test, { type ExecutionContext } from "ava";
import { createHash, createPublicKey, generateKeyPairSync } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { pushImage, type PushedImage } from "./helpers/images.js";
import { cosignKeyPair, signImage, type CosignKeyPair } from "./helpers/cosign.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { snapshot } from "./helpers/bundles.js";
import { skopeoInspectRaw } from "./helpers/skopeo.js";
import type { Lock } from "../src/bundle/lock.js";
import { verifyCosign } from "../src/signatures/cosign.js";
import { parseVerifyKey } from "../src/signatures/keys.js";
import { RegistryStore } from "../src/store/registry.js";
import { RegistryClient } from "../src/registry/client.js";
import { parseImageRef } from "../src/config/imageRef.js";

let source: TestRegistry;
const right: CosignKeyPair = cosignKeyPair();
const wrong: CosignKeyPair = cosignKeyPair();

test.before(async () => {
  source = await startRegistry();
});
test.after.always(async () => {
  await source?.stop();
});

const multiArch = (repo: string) =>
  pushImage(source, repo, "v1", { kind: "oci-index", layers: [`${repo} base`, `${repo} app`] });

/** The id messages and the lock name a key by: the first 16 hex digits of its DER's sha256. */
function keyId(pem: string): string {
  const der = createPublicKey(pem).export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("hex").slice(0, 16);
}

/** A definition of `images`, with the keys beside it, and a canary file that must not change. */
async function project(t: { teardown(fn: () => Promise<void>): void }, images: string[]) {
  const { dir, cleanup } = await tempFiles({
    "bundle.yml": ["name: signed", "images:", ...images.map((i) => `  - ${i}`), ""].join("\n"),
    "right.pub": right.publicKeyPem,
    "wrong.pub": wrong.publicKeyPem,
    "canary.txt": "untouched\n",
  });
  t.teardown(cleanup);
  return { dir, out: path.join(dir, "out") };
}

test("a signed multi-arch image passes with the right key (any of those given); the lock names the key; the source's signature verifies against the mirrored digest", async (t) => {
  const image = await multiArch("signed/app");
  const sig = await signImage({
    registry: source,
    repo: image.repo,
    digest: image.digest,
    privateKey: right.privateKey,
  });
  // And a single-platform image pinned by digest: its manifest's digest is the one signed.
  const single = await pushImage(source, "signed/tool", "v1", { kind: "single", layers: ["signed tool"] });
  const singleSig = await signImage({
    registry: source,
    repo: single.repo,
    digest: single.digest,
    privateKey: wrong.privateKey,
  });
  const pinned = `${source.host}/${single.repo}@${single.digest}`;
  const { dir, out } = await project(t, [image.ref, `ref: ${pinned}\n    platforms: [linux/amd64]`]);
  const r = await runCli(
    ["--json", "prepare", "-o", out, "--verify-key", "wrong.pub", "--verify-key", "right.pub"],
    { cwd: dir },
  );
  t.is(r.code, 0, r.stderr);
  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  t.is(lock.images[0]?.digest, image.digest);
  t.deepEqual(lock.images[0]?.verified, { key: keyId(right.publicKeyPem), signature: sig.manifestDigest });
  t.deepEqual(
    lock.images[0]?.platforms.map((p) => p.digest),
    image.platforms.map((p) => p.digest),
  );
  t.is(lock.images[1]?.digest, single.digest);
  t.deepEqual(lock.images[1]?.verified, {
    key: keyId(wrong.publicKeyPem),
    signature: singleSig.manifestDigest,
  });
  t.is(await readFile(path.join(dir, "canary.txt"), "utf8"), "untouched\n");
  const inspect = await runCli(["inspect", out], { cwd: dir });
  t.is(inspect.code, 0, inspect.stderr);
  t.true(
    inspect.stdout.includes(
      `cosign signatures checked at prepare: all 2 images, by key ${keyId(right.publicKeyPem)}, ${keyId(wrong.publicKeyPem)}`,
    ),
    inspect.stdout,
  );

  const site = await startRegistry();
  t.teardown(() => site.stop());
  const up = await runCli(["upload", out, "--registry", site.host], { cwd: dir });
  t.is(up.code, 0, up.stderr);
  const mirrored = await skopeoInspectRaw(`${site.host}/${lock.images[0]!.mirror}`);
  const mirroredDigest = `sha256:${createHash("sha256").update(mirrored).digest("hex")}`;
  t.is(mirroredDigest, image.digest);
  const client = new RegistryClient(source.host);
  t.teardown(() => client.close());
  const verified = await verifyCosign({
    source: new RegistryStore(client),
    ref: parseImageRef(image.ref),
    digest: mirroredDigest,
    keys: [parseVerifyKey(right.publicKeyPem, "right.pub")],
  });
  t.is(verified.signature, sig.manifestDigest);
  t.is(verified.key.id, keyId(right.publicKeyPem));
});

/** Runs prepare with right.pub over an earlier bundle in `out`; checks exit 1 and that nothing changed. */
async function refused(t: ExecutionContext, images: PushedImage[]) {
  const { dir, out } = await project(
    t,
    images.map((i) => i.ref),
  );
  // An earlier bundle in the output folder: a refusal must leave it as it was.
  t.is((await runCli(["prepare", "-o", out], { cwd: dir })).code, 0);
  const before = await snapshot(dir);
  const r = await runCli(["prepare", "-o", out, "--verify-key", "right.pub"], { cwd: dir });
  t.is(r.code, 1, r.stderr);
  t.deepEqual(await snapshot(dir), before, "neither the bundle nor anything beside it changed");
  t.notRegex(r.stderr, /^\s+at /m, "no stack trace");
  return r.stderr;
}

test("the wrong key is exit 1 naming the image, its digest and why, and nothing is written", async (t) => {
  const image = await multiArch("wrongkey/app");
  await signImage({ registry: source, repo: image.repo, digest: image.digest, privateKey: wrong.privateKey });
  const stderr = await refused(t, [image]);
  t.regex(stderr, new RegExp(`image ${image.ref} \\(${image.digest}\\) refused: bad signature`));
  t.true(stderr.includes(`right.pub (key ${keyId(right.publicKeyPem)})`), stderr);
});

test("an unsigned image is exit 1 naming it, beside a signed one that is not named", async (t) => {
  const signed = await multiArch("mixed/signed");
  const unsigned = await multiArch("mixed/unsigned");
  await signImage({
    registry: source,
    repo: signed.repo,
    digest: signed.digest,
    privateKey: right.privateKey,
  });
  const stderr = await refused(t, [signed, unsigned]);
  t.regex(stderr, /1 of 2 images refused/);
  t.true(
    stderr.includes(
      `image ${unsigned.ref} (${unsigned.digest}) refused: no cosign signature (no tag sha256-${unsigned.digest.slice(7)}.sig`,
    ),
    stderr,
  );
  t.false(stderr.includes(`image ${signed.ref}`), stderr);
});

test("a signature over another digest, or made for another repository, is exit 1", async (t) => {
  const image = await multiArch("moved/app");
  const other = await multiArch("moved/other");
  await signImage({
    registry: source,
    repo: image.repo,
    digest: image.digest,
    claimedDigest: other.digest,
    privateKey: right.privateKey,
  });
  let stderr = await refused(t, [image]);
  t.true(stderr.includes(`refused: the signature is for digest ${other.digest}, not this image's`), stderr);

  const elsewhere = await multiArch("moved/elsewhere");
  await signImage({
    registry: source,
    repo: elsewhere.repo,
    digest: elsewhere.digest,
    dockerReference: `${source.host}/moved/other`,
    privateKey: right.privateKey,
  });
  stderr = await refused(t, [elsewhere]);
  t.true(stderr.includes(`the signature names repository "${source.host}/moved/other"`), stderr);
});

test("a payload changed after signing is exit 1: bad signature", async (t) => {
  const image = await multiArch("tampered/app");
  const sig = await signImage({
    registry: source,
    repo: image.repo,
    digest: image.digest,
    privateKey: right.privateKey,
    tamper: (p) => Buffer.from(p.toString().replace("signature", "signaturE")),
  });
  t.false(sig.payload.toString().includes('"cosign container image signature"'));
  const stderr = await refused(t, [image]);
  t.regex(stderr, new RegExp(`image ${image.ref} \\(${image.digest}\\) refused: bad signature`));

  // A "payload" larger than any signature payload is not read at all.
  const padded = await multiArch("tampered/padded");
  const big = await signImage({
    registry: source,
    repo: padded.repo,
    digest: padded.digest,
    privateKey: right.privateKey,
    tamper: (p) => Buffer.concat([p, Buffer.alloc(300 * 1024, 0x20)]),
  });
  const bigStderr = await refused(t, [padded]);
  t.true(
    bigStderr.includes(`is ${big.payload.length} bytes, more than a signature payload's 262144`),
    bigStderr,
  );
});

test("a key file that is not a public key is exit 2 naming it; a daemon image with --verify-key is exit 2", async (t) => {
  const image = await multiArch("keys/app");
  const { dir, out } = await project(t, [image.ref]);
  await writeFile(path.join(dir, "garbage.pub"), "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n");
  await writeFile(
    path.join(dir, "private.pem"),
    right.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  );
  const cases: [string, RegExp][] = [
    ["garbage.pub", /--verify-key garbage\.pub: not a PEM public key/],
    ["private.pem", /--verify-key private\.pem: is a private key; give the public key/],
    ["absent.pub", /--verify-key absent\.pub: cannot read it/],
  ];
  for (const [file, message] of cases) {
    const r = await runCli(["prepare", "-o", out, "--verify-key", "right.pub", "--verify-key", file], {
      cwd: dir,
    });
    t.is(r.code, 2, `${file}: ${r.stderr}`);
    t.regex(r.stderr, message);
    t.false(r.stderr.includes("PRIVATE KEY"), "no key material in messages");
    t.notRegex(r.stderr, /^\s+at /m);
  }
  const local = await tempFiles({
    "bundle.yml": "images:\n  - docker-daemon:myapp:1.0\n",
    "right.pub": right.publicKeyPem,
  });
  t.teardown(local.cleanup);
  await mkdir(path.join(local.dir, "keep"));
  const r = await runCli(["prepare", "-o", path.join(local.dir, "out"), "--verify-key", "right.pub"], {
    cwd: local.dir,
  });
  t.is(r.code, 2, r.stderr);
  t.regex(
    r.stderr,
    /docker-daemon:docker\.io\/library\/myapp:1\.0 \(.*bundle\.yml:2:5\) come from the local Docker daemon/,
  );
  t.deepEqual(Object.keys(await snapshot(local.dir)).sort(), ["bundle.yml", "right.pub"]);
});

test("verifyCosign takes Ed25519 and RSA keys too, and names every key a signature failed", async (t) => {
  const client = new RegistryClient(source.host);
  t.teardown(() => client.close());
  const store = new RegistryStore(client);
  for (const [type, pair] of [
    ["ed25519", generateKeyPairSync("ed25519")],
    ["rsa", generateKeyPairSync("rsa", { modulusLength: 2048 })],
  ] as const) {
    const image = await multiArch(`keytypes/${type}`);
    const sig = await signImage({
      registry: source,
      repo: image.repo,
      digest: image.digest,
      privateKey: pair.privateKey,
    });
    const pem = pair.publicKey.export({ type: "spki", format: "pem" }).toString();
    const check = { source: store, ref: parseImageRef(image.ref), digest: image.digest };
    const verified = await verifyCosign({ ...check, keys: [parseVerifyKey(pem, `${type}.pub`)] });
    t.is(verified.signature, sig.manifestDigest, type);
    const err = await t.throwsAsync(
      verifyCosign({
        ...check,
        keys: [
          parseVerifyKey(right.publicKeyPem, "right.pub"),
          parseVerifyKey(wrong.publicKeyPem, "wrong.pub"),
        ],
      }),
    );
    t.is(
      err?.message,
      `image ${image.ref} (${image.digest}) refused: bad signature: it does not verify with right.pub (key ${keyId(right.publicKeyPem)}) or wrong.pub (key ${keyId(wrong.publicKeyPem)})`,
    );
  }
});
