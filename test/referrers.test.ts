/**
 * Referrers travel with their images (issue 13): a multi-arch image in a real Distribution 2.8
 * registry (no referrers API) with a cosign-style signature under its `.sig` tag, an SBOM
 * referrer of the image (pushed by digest, listed in the tag schema's `sha256-<hex>` index) and
 * an attestation of one platform. Prepare carries them, upload re-creates them at a second
 * registry, skopeo reads them back byte for byte, and the signature still verifies there.
 */
import test, { type ExecutionContext } from "ava";
import { spawn } from "node:child_process";
import { generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import {
  MediaTypes,
  pushBlob as pushRawBlob,
  pushImage,
  pushManifest as pushRawManifest,
  sha256Digest,
  type PushedImage,
} from "./helpers/images.js";
import { header, httpRequest } from "./helpers/http.js";
import { skopeoInspectRaw } from "./helpers/skopeo.js";
import { startFaultProxy } from "./helpers/faultProxy.js";
import { CLI, runCli, tempFiles } from "./helpers/cli.js";
import { flipByte, sha256File } from "./helpers/bundles.js";
import type { Lock, LockReferrer } from "../src/bundle/lock.js";

const SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
const EMPTY = "application/vnd.oci.empty.v1+json";
const SPDX = "application/spdx+json";
const IN_TOTO = "application/vnd.in-toto+json";

interface Pushed {
  digest: string;
  bytes: Buffer;
  /** Each config and layer blob: digest → bytes. */
  blobs: Map<string, Buffer>;
}

// --- pushing artifacts as cosign and oras do ----------------------------------------------

/** A blob into `repo` (the test bed's monolithic upload); its digest. */
async function pushBlob(reg: TestRegistry, repo: string, bytes: Buffer): Promise<string> {
  return (await pushRawBlob(reg, repo, bytes)).digest;
}

/** A hand-made manifest under a tag, or by its digest when none is given. */
async function pushManifest(
  reg: TestRegistry,
  repo: string,
  reference: string | undefined,
  body: object,
): Promise<{ digest: string; bytes: Buffer }> {
  const bytes = Buffer.from(JSON.stringify(body));
  const mediaType = (body as { mediaType: string }).mediaType;
  const digest = await pushRawManifest(reg, repo, reference ?? sha256Digest(bytes), mediaType, bytes);
  return { digest, bytes };
}

async function pushArtifact(
  reg: TestRegistry,
  repo: string,
  reference: string | undefined,
  config: { mediaType: string; bytes: Buffer },
  layer: { mediaType: string; bytes: Buffer; annotations?: Record<string, string> },
  extra: object,
): Promise<Pushed> {
  const blobs = new Map([
    [await pushBlob(reg, repo, config.bytes), config.bytes],
    [await pushBlob(reg, repo, layer.bytes), layer.bytes],
  ]);
  const desc = (mediaType: string, bytes: Buffer) => ({
    mediaType,
    digest: sha256Digest(bytes),
    size: bytes.length,
  });
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    ...extra,
    config: desc(config.mediaType, config.bytes),
    layers: [
      {
        ...desc(layer.mediaType, layer.bytes),
        ...(layer.annotations ? { annotations: layer.annotations } : {}),
      },
    ],
  };
  return { ...(await pushManifest(reg, repo, reference, manifest)), blobs };
}

const tagOf = (digest: string) => `sha256-${digest.slice("sha256:".length)}`;

/** cosign's simple-signing payload over `digest`, signed with ECDSA P-256, under the `.sig` tag. */
async function pushSignature(reg: TestRegistry, repo: string, digest: string, key: KeyObject) {
  const payload = Buffer.from(
    JSON.stringify({
      critical: {
        identity: { "docker-reference": `${reg.host}/${repo}` },
        image: { "docker-manifest-digest": digest },
        type: "cosign container image signature",
      },
      optional: null,
    }),
  );
  const signature = sign("sha256", payload, key).toString("base64");
  const config = Buffer.from(
    JSON.stringify({
      architecture: "",
      created: "0001-01-01T00:00:00Z",
      os: "",
      rootfs: { type: "layers", diff_ids: [sha256Digest(payload)] },
      config: {},
    }),
  );
  return pushArtifact(
    reg,
    repo,
    `${tagOf(digest)}.sig`,
    { mediaType: MediaTypes.ociConfig, bytes: config },
    { mediaType: SIMPLE_SIGNING, bytes: payload, annotations: { [SIGNATURE_ANNOTATION]: signature } },
    {},
  );
}

/** An OCI 1.1 referrer of `subject`, by digest, listed in the tag schema's index. */
async function pushReferrer(
  reg: TestRegistry,
  repo: string,
  subject: { digest: string; mediaType: string; size: number },
  artifactType: string,
  content: object,
  alsoListed: { digest: string; size: number; artifactType: string }[] = [],
) {
  const annotations = { "org.opencontainers.image.created": "2024-01-01T00:00:00Z" };
  const pushed = await pushArtifact(
    reg,
    repo,
    undefined,
    { mediaType: EMPTY, bytes: Buffer.from("{}") },
    { mediaType: artifactType, bytes: Buffer.from(JSON.stringify(content)) },
    { artifactType, subject, annotations },
  );
  const listed = [...alsoListed, { digest: pushed.digest, size: pushed.bytes.length, artifactType }].map(
    (d) => ({ mediaType: MediaTypes.ociManifest, ...d, annotations }),
  );
  await pushManifest(reg, repo, tagOf(subject.digest), {
    schemaVersion: 2,
    mediaType: MediaTypes.ociIndex,
    manifests: listed,
  });
  return pushed;
}

interface Bed {
  source: TestRegistry;
  image: PushedImage;
  sig: Pushed;
  sbom: Pushed;
  attestation: Pushed;
  publicKey: KeyObject;
  dir: string;
  out: string;
  canary: string;
}

async function setup(t: ExecutionContext): Promise<Bed> {
  const source = await startRegistry();
  t.teardown(() => source.stop());
  const repo = "testbed/signed";
  const image = await pushImage(source, repo, "v1", { kind: "oci-index", layers: ["signed-app"] });
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const sig = await pushSignature(source, repo, image.digest, privateKey);
  const indexDesc = { mediaType: image.mediaType, digest: image.digest, size: image.manifestBytes.length };
  const sbom = await pushReferrer(source, repo, indexDesc, SPDX, { spdxVersion: "SPDX-2.3", name: "signed" });
  const amd64 = image.platforms[0]!;
  const attestation = await pushReferrer(
    source,
    repo,
    { mediaType: amd64.mediaType, digest: amd64.digest, size: amd64.size },
    IN_TOTO,
    { _type: "https://in-toto.io/Statement/v1", predicateType: "https://slsa.dev/provenance/v1" },
  );
  const { dir, cleanup } = await tempFiles(
    { "bundle.yml": ["name: signed", "images:", `  - ${image.ref}`].join("\n"), "canary.txt": "keep me\n" },
    "signed",
  );
  t.teardown(cleanup);
  return {
    source,
    image,
    sig,
    sbom,
    attestation,
    publicKey,
    dir,
    out: path.join(dir, "out"),
    canary: path.join(dir, "canary.txt"),
  };
}

async function readLock(out: string): Promise<Lock> {
  return JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
}

function blobFile(out: string, digest: string): string {
  return path.join(out, "images", "blobs", "sha256", digest.slice("sha256:".length));
}

test("prepare carries the cosign signature, the SBOM and a platform's attestation with their blobs; a rerun moves nothing", async (t) => {
  const bed = await setup(t);
  const first = await runCli(["--json", "prepare", "-o", bed.out], { cwd: bed.dir });
  t.is(first.code, 0, first.stderr);

  const lock = await readLock(bed.out);
  const refs = lock.images[0]!.referrers ?? [];
  const byDigest = new Map<string, LockReferrer>(refs.map((r) => [r.digest, r]));
  t.is(refs.length, 3, JSON.stringify(refs, null, 2));
  const sig = byDigest.get(bed.sig.digest);
  t.like(sig, {
    subject: bed.image.digest,
    tag: `${tagOf(bed.image.digest)}.sig`,
    mediaType: MediaTypes.ociManifest,
    size: bed.sig.bytes.length,
  });
  t.like(byDigest.get(bed.sbom.digest), {
    subject: bed.image.digest,
    artifactType: SPDX,
    size: bed.sbom.bytes.length,
  });
  t.is(byDigest.get(bed.sbom.digest)?.tag, undefined);
  t.like(byDigest.get(bed.attestation.digest), {
    subject: bed.image.platforms[0]!.digest,
    artifactType: IN_TOTO,
  });

  // Every manifest and blob of the artifacts is in the layout, byte for byte the source's.
  for (const pushed of [bed.sig, bed.sbom, bed.attestation]) {
    t.deepEqual(await readFile(blobFile(bed.out, pushed.digest)), pushed.bytes);
    t.deepEqual(
      byDigest
        .get(pushed.digest)
        ?.blobs.map((b) => b.digest)
        .sort(),
      [...pushed.blobs.keys()].sort(),
    );
    for (const [digest, bytes] of pushed.blobs) t.deepEqual(await readFile(blobFile(bed.out, digest)), bytes);
  }
  // The layout's index still names only the image: referrers are found through the lock.
  const index = JSON.parse(await readFile(path.join(bed.out, "images", "index.json"), "utf8")) as {
    manifests: { digest: string }[];
  };
  t.deepEqual(
    index.manifests.map((m) => m.digest),
    [bed.image.digest],
  );

  const again = await runCli(["--json", "prepare", "-o", bed.out], { cwd: bed.dir });
  t.is(again.code, 0, again.stderr);
  t.is((JSON.parse(again.stdout) as { bytesMoved: number }).bytesMoved, 0);
  t.deepEqual((await readLock(bed.out)).images, lock.images);

  const verified = await runCli(["verify", bed.out]);
  t.is(verified.code, 0, verified.stdout + verified.stderr);

  const inspect = await runCli(["--json", "inspect", bed.out]);
  t.is(inspect.code, 0, inspect.stderr);
  const listed = (
    JSON.parse(inspect.stdout) as { referrers: { digest: string; type: string; subject: string }[] }
  ).referrers;
  t.deepEqual(
    listed.map((r) => [r.digest, r.subject, r.type]).sort(),
    [
      [bed.sig.digest, bed.image.digest, "cosign signature (.sig)"],
      [bed.sbom.digest, bed.image.digest, SPDX],
      [bed.attestation.digest, bed.image.platforms[0]!.digest, IN_TOTO],
    ].sort(),
  );
  const human = await runCli(["inspect", bed.out]);
  t.regex(human.stdout, /referrers \(3\)/);
  t.regex(human.stdout, new RegExp(`${SPDX.replace(/[+.]/g, "\\$&")}`));
  t.is(await readFile(bed.canary, "utf8"), "keep me\n");
});

test("upload pushes the referrers next to the mirrored image: same bytes, cosign's tag, the tag schema's index; the signature verifies", async (t) => {
  const bed = await setup(t);
  const site = await startRegistry();
  t.teardown(() => site.stop());
  const prepared = await runCli(["prepare", "-o", bed.out], { cwd: bed.dir });
  t.is(prepared.code, 0, prepared.stderr);
  const up = await runCli(["--json", "upload", bed.out, "--registry", site.host]);
  t.is(up.code, 0, up.stderr);

  const mirror = `${site.host}/teleinfra/signed`;
  const top = await skopeoInspectRaw(`${mirror}:v1`);
  t.is(sha256Digest(top), bed.image.digest);
  const sigTag = `${mirror}:${tagOf(bed.image.digest)}.sig`;
  t.deepEqual(await skopeoInspectRaw(sigTag), bed.sig.bytes, "the .sig tag, byte for byte");
  t.deepEqual(await skopeoInspectRaw(`${mirror}@${bed.sbom.digest}`), bed.sbom.bytes, "the SBOM by digest");
  t.deepEqual(await skopeoInspectRaw(`${mirror}@${bed.attestation.digest}`), bed.attestation.bytes);

  // Distribution 2.8 has no referrers API: the tag schema's index lists each subject's referrers.
  const listedAt = async (subject: string) =>
    (
      JSON.parse((await skopeoInspectRaw(`${mirror}:${tagOf(subject)}`)).toString()) as {
        manifests: { digest: string; artifactType?: string }[];
      }
    ).manifests.map((m) => [m.digest, m.artifactType]);
  t.deepEqual(await listedAt(bed.image.digest), [[bed.sbom.digest, SPDX]]);
  t.deepEqual(await listedAt(bed.image.platforms[0]!.digest), [[bed.attestation.digest, IN_TOTO]]);

  // The signature, as the site has it, is over the digest the mirror's tag names.
  const sigManifest = JSON.parse((await skopeoInspectRaw(sigTag)).toString()) as {
    layers: { digest: string; annotations: Record<string, string> }[];
  };
  const layer = sigManifest.layers[0]!;
  const payload = (await httpRequest(`${site.url}/v2/teleinfra/signed/blobs/${layer.digest}`)).body;
  t.is(sha256Digest(payload), layer.digest);
  const claims = JSON.parse(payload.toString()) as {
    critical: { image: { "docker-manifest-digest": string } };
  };
  t.is(claims.critical.image["docker-manifest-digest"], sha256Digest(top));
  t.true(
    verify("sha256", payload, bed.publicKey, Buffer.from(layer.annotations[SIGNATURE_ANNOTATION]!, "base64")),
  );

  // A second upload finds everything there and moves nothing.
  const again = await runCli(["--json", "upload", bed.out, "--registry", site.host]);
  t.is(again.code, 0, again.stderr);
  t.is((JSON.parse(again.stdout) as { bytesMoved: number }).bytesMoved, 0);
  t.deepEqual(await listedAt(bed.image.digest), [[bed.sbom.digest, SPDX]]);
});

test("a referrer's own referrers travel too: the SBOM's signature and an attestation of it; a tag that leads back to the image is not followed", async (t) => {
  const bed = await setup(t);
  const repo = "testbed/signed";
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const sbomDesc = {
    mediaType: MediaTypes.ociManifest,
    digest: bed.sbom.digest,
    size: bed.sbom.bytes.length,
  };
  const sbomSig = await pushSignature(bed.source, repo, bed.sbom.digest, privateKey);
  const sbomAttestation = await pushReferrer(bed.source, repo, sbomDesc, IN_TOTO, {
    predicateType: "sbom-review",
  });
  // A cosign tag of the attestation that names the image's own index: a loop by name.
  const loopTag = `${tagOf(sbomAttestation.digest)}.sig`;
  await pushRawManifest(bed.source, repo, loopTag, bed.image.mediaType, bed.image.manifestBytes);

  const prepared = await runCli(["prepare", "-o", bed.out], { cwd: bed.dir });
  t.is(prepared.code, 0, prepared.stderr);
  const refs = (await readLock(bed.out)).images[0]!.referrers ?? [];
  t.like(
    refs.find((r) => r.digest === sbomSig.digest),
    { subject: bed.sbom.digest, tag: `${tagOf(bed.sbom.digest)}.sig`, size: sbomSig.bytes.length },
  );
  t.like(
    refs.find((r) => r.digest === sbomAttestation.digest),
    { subject: bed.sbom.digest, artifactType: IN_TOTO },
  );
  t.false(
    refs.some((r) => r.digest === bed.image.digest),
    "the image is not carried as a referrer of its own",
  );
  t.is(refs.length, 5, JSON.stringify(refs, null, 2));
  for (const [digest, bytes] of sbomSig.blobs) t.deepEqual(await readFile(blobFile(bed.out, digest)), bytes);

  const site = await startRegistry();
  t.teardown(() => site.stop());
  const up = await runCli(["upload", bed.out, "--registry", site.host]);
  t.is(up.code, 0, up.stderr);
  const mirror = `${site.host}/teleinfra/signed`;
  t.deepEqual(await skopeoInspectRaw(`${mirror}:${tagOf(bed.sbom.digest)}.sig`), sbomSig.bytes);
  const listed = JSON.parse((await skopeoInspectRaw(`${mirror}:${tagOf(bed.sbom.digest)}`)).toString()) as {
    manifests: { digest: string; artifactType?: string }[];
  };
  t.deepEqual(
    listed.manifests.map((m) => [m.digest, m.artifactType]),
    [[sbomAttestation.digest, IN_TOTO]],
  );
  const tags = JSON.parse(
    (await httpRequest(`${site.url}/v2/teleinfra/signed/tags/list`)).body.toString(),
  ) as {
    tags: string[];
  };
  t.false(tags.tags.includes(loopTag), "the tag leading back to the image stays at the source");
});

test("--no-referrers carries none: the lock lists none and the layout holds only the image", async (t) => {
  const bed = await setup(t);
  const res = await runCli(["prepare", "--no-referrers", "-o", bed.out], { cwd: bed.dir });
  t.is(res.code, 0, res.stderr);
  const lock = await readLock(bed.out);
  t.is(lock.images[0]!.referrers, undefined);
  const held = new Set(await readdir(path.join(bed.out, "images", "blobs", "sha256")));
  const expected = [
    bed.image.digest,
    ...bed.image.platforms.map((p) => p.digest),
    ...bed.image.blobs.map((b) => b.digest),
  ].map((d) => d.slice("sha256:".length));
  t.deepEqual([...held].sort(), [...new Set(expected)].sort());
  for (const p of [bed.sig, bed.sbom, bed.attestation]) t.false(held.has(p.digest.slice(7)));
  const verified = await runCli(["verify", bed.out]);
  t.is(verified.code, 0, verified.stdout + verified.stderr);

  // The same definition with referrers: diff names each one carried now.
  const withThem = path.join(bed.dir, "with");
  t.is((await runCli(["prepare", "-o", withThem], { cwd: bed.dir })).code, 0);
  const diff = await runCli(["diff", bed.out, withThem]);
  t.is(diff.code, 1, diff.stderr);
  t.regex(diff.stdout, /3 referrers added/);
  t.regex(diff.stdout, new RegExp(`added +\\S+ ${tagOf(bed.image.digest)}\\.sig`));
});

test("a corrupted referrer blob in the bundle is refused, naming it: verify exit 1, upload exit 1", async (t) => {
  const bed = await setup(t);
  const site = await startRegistry();
  t.teardown(() => site.stop());
  const res = await runCli(["prepare", "-o", bed.out], { cwd: bed.dir });
  t.is(res.code, 0, res.stderr);
  const [layerDigest] = [...bed.sbom.blobs.keys()].filter((d) => d !== sha256Digest(Buffer.from("{}")));
  const file = blobFile(bed.out, layerDigest!);
  await flipByte(file, 0);
  t.not(await sha256File(file), layerDigest!.slice(7));

  const verified = await runCli(["verify", bed.out]);
  t.is(verified.code, 1, verified.stdout + verified.stderr);
  t.regex(
    verified.stdout + verified.stderr,
    new RegExp(`${layerDigest}.*referrer ${SPDX.replace(/[+.]/g, "\\$&")}`),
  );

  const up = await runCli(["upload", bed.out, "--registry", site.host]);
  t.is(up.code, 1, up.stderr);
  t.regex(up.stderr, new RegExp(layerDigest!));
  t.notRegex(up.stderr, /\n\s+at /, "no stack trace");
  const blob = await httpRequest(`${site.url}/v2/teleinfra/signed/blobs/${layerDigest}`, { method: "HEAD" });
  t.is(blob.status, 404, "the bad blob did not reach the site");
});

/** `bundle serve --registry-port 0` over `bundle`, stopped (by its PID) at teardown; its host:port. */
async function serveRegistry(t: ExecutionContext, bundle: string): Promise<string> {
  const args = [CLI, "serve", "--host", "127.0.0.1", "--registry-port", "0", "--no-fileserver", bundle];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  );
  let stderr = "";
  child.stderr.setEncoding("utf8");
  return new Promise((resolve, reject) => {
    child.stderr.on("data", (chunk: string) => {
      stderr += chunk;
      const m = /registry: .* at http:\/\/(127\.0\.0\.1:\d+), read-only/.exec(stderr);
      if (m?.[1]) resolve(m[1]);
    });
    child.once("exit", (code) => reject(new Error(`serve exited (${code}) before listening:\n${stderr}`)));
  });
}

test("serve answers the referrers API with the carried referrers, and a prepare from it carries them again by that API", async (t) => {
  const bed = await setup(t);
  const res = await runCli(["prepare", "-o", bed.out], { cwd: bed.dir });
  t.is(res.code, 0, res.stderr);
  const host = await serveRegistry(t, bed.out);
  const base = `http://${host}/v2/teleinfra/signed`;

  const listed = await httpRequest(`${base}/referrers/${bed.image.digest}`);
  t.is(listed.status, 200);
  t.is(header(listed, "content-type"), MediaTypes.ociIndex);
  const index = JSON.parse(listed.body.toString()) as {
    manifests: { digest: string; artifactType?: string }[];
  };
  t.deepEqual(
    index.manifests.map((m) => [m.digest, m.artifactType]),
    [[bed.sbom.digest, SPDX]],
  );
  const filtered = await httpRequest(
    `${base}/referrers/${bed.image.digest}?artifactType=${encodeURIComponent(IN_TOTO)}`,
  );
  t.is(header(filtered, "oci-filters-applied"), "artifactType");
  t.deepEqual((JSON.parse(filtered.body.toString()) as { manifests: unknown[] }).manifests, []);
  t.deepEqual(await skopeoInspectRaw(`${host}/teleinfra/signed@${bed.sbom.digest}`), bed.sbom.bytes);

  // A second bundle prepared from the served one: the API finds the SBOM and the attestation
  // (serve has no sha256-<hex> tag), cosign's tag the signature; digests are the source's.
  const next = await tempFiles(
    { "bundle.yml": ["name: again", "images:", `  - ${host}/teleinfra/signed:v1`].join("\n") },
    "again",
  );
  t.teardown(next.cleanup);
  const out = path.join(next.dir, "out");
  const again = await runCli(["prepare", "-o", out], { cwd: next.dir });
  t.is(again.code, 0, again.stderr);
  const refs = (await readLock(out)).images[0]!.referrers ?? [];
  t.deepEqual(
    refs.map((r) => [r.digest, r.subject, r.tag ?? r.artifactType]).sort(),
    [
      [bed.sig.digest, bed.image.digest, `${tagOf(bed.image.digest)}.sig`],
      [bed.sbom.digest, bed.image.digest, SPDX],
      [bed.attestation.digest, bed.image.platforms[0]!.digest, IN_TOTO],
    ].sort(),
  );
  for (const p of [bed.sig, bed.sbom, bed.attestation])
    t.deepEqual(await readFile(blobFile(out, p.digest)), p.bytes);
});

test("an update bundle carries the referrers found since: upload puts them next to the image the site already holds", async (t) => {
  const bed = await setup(t);
  const site = await startRegistry();
  t.teardown(() => site.stop());
  const old = path.join(bed.dir, "old");
  t.is((await runCli(["prepare", "--no-referrers", "-o", old], { cwd: bed.dir })).code, 0);
  const first = await runCli(["upload", old, "--registry", site.host]);
  t.is(first.code, 0, first.stderr);
  const mirror = `${site.host}/teleinfra/signed`;
  const sigTag = `${mirror}:${tagOf(bed.image.digest)}.sig`;
  await t.throwsAsync(skopeoInspectRaw(sigTag), undefined, "no signature at the site yet");

  const res = await runCli(["prepare", "--since", old, "-o", bed.out], { cwd: bed.dir });
  t.is(res.code, 0, res.stderr);
  const lock = await readLock(bed.out);
  t.is(lock.images[0]!.referrers?.length, 3);
  const omitted = new Set(lock.update?.omittedBlobs);
  t.true(omitted.has(bed.image.digest), "the image itself is left to the site");
  for (const p of [bed.sig, bed.sbom, bed.attestation]) {
    t.false(omitted.has(p.digest), "a referrer's manifest is carried");
    t.deepEqual(await readFile(blobFile(bed.out, p.digest)), p.bytes);
  }
  const verified = await runCli(["verify", bed.out]);
  t.is(verified.code, 0, verified.stdout + verified.stderr);

  const up = await runCli(["--json", "upload", bed.out, "--registry", site.host]);
  t.is(up.code, 0, up.stderr);
  t.deepEqual(await skopeoInspectRaw(sigTag), bed.sig.bytes);
  t.deepEqual(await skopeoInspectRaw(`${mirror}@${bed.sbom.digest}`), bed.sbom.bytes);
  t.deepEqual(await skopeoInspectRaw(`${mirror}@${bed.attestation.digest}`), bed.attestation.bytes);
  t.is(sha256Digest(await skopeoInspectRaw(`${mirror}:v1`)), bed.image.digest);
});

test("what discovery costs: a registry answering the referrers API with 405 falls back to the tag schema; a rerun asks a bounded number of small questions; a 500 fails naming the image", async (t) => {
  const bed = await setup(t);
  const proxy = await startFaultProxy(bed.source.url);
  t.teardown(() => proxy.stop());
  const next = await tempFiles(
    { "bundle.yml": ["name: proxied", "images:", `  - ${proxy.host}/testbed/signed:v1`].join("\n") },
    "proxied",
  );
  t.teardown(next.cleanup);
  const out = path.join(next.dir, "out");
  const referrersApi = /\/referrers\//;
  proxy.addRule({ path: referrersApi, times: 1000, fault: { kind: "status", status: 405 } });
  const first = await runCli(["prepare", "-o", out], { cwd: next.dir });
  t.is(first.code, 0, first.stderr);
  t.deepEqual(
    ((await readLock(out)).images[0]!.referrers ?? []).map((r) => r.digest).sort(),
    [bed.sig.digest, bed.sbom.digest, bed.attestation.digest].sort(),
  );

  const requestsOf = async (args: string[]) => {
    const before = proxy.requests.length;
    const res = await runCli(["--json", "prepare", ...args, "-o", out], { cwd: next.dir });
    t.is(res.code, 0, res.stderr);
    t.is((JSON.parse(res.stdout) as { bytesMoved: number }).bytesMoved, 0);
    return proxy.requests.slice(before);
  };
  const withReferrers = await requestsOf([]);
  const without = await requestsOf(["--no-referrers"]);
  // Three subjects (the index, two platforms): per subject one referrers call, the tag schema's
  // HEAD (and GET where it exists) and three cosign HEADs; nothing already carried is fetched.
  const extra = withReferrers.length - without.length;
  t.log(`rerun: ${without.length} requests without referrers, ${withReferrers.length} with them`);
  t.true(extra > 0 && extra <= 3 * 6, `${extra} requests for referrers`);
  t.false(
    withReferrers.some((r) => r.method === "GET" && /\/blobs\//.test(r.path)),
    "no blob fetched again",
  );

  proxy.clearRules();
  proxy.addRule({ path: referrersApi, times: 1000, fault: { kind: "status", status: 500 } });
  const failed = await runCli(["prepare", "-o", out], { cwd: next.dir, env: { BUNDLE_RETRIES: "0" } });
  t.is(failed.code, 1, failed.stderr);
  t.regex(failed.stderr, new RegExp(`list referrers of ${proxy.host}/testbed/signed.*500`));
  t.notRegex(failed.stderr, /\n\s+at /, "no stack trace");
});
