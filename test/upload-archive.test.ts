/**
 * `bundle upload FILE`: images and files go to a real registry and a real file server straight
 * out of a (split) archive, read in place. Proof that nothing is unpacked: TMPDIR points at a
 * folder that does not exist, and the folders beside the archive and the working folder hold
 * the same files before and after. Damage inside the archive stops the upload naming the member,
 * and the damaged bytes land nowhere.
 */
import test from "ava";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { seedStandardImages, type StandardImages } from "./helpers/images.js";
import { makeGitRepo, type TestGitRepo } from "./helpers/git.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { flipByte } from "./helpers/bundles.js";
import { skopeoCopyToOciLayout, skopeoInspectRaw } from "./helpers/skopeo.js";
import { startFileServer, type FileServer } from "../src/fileserver/server.js";
import { openArchive, type Member } from "../src/bundle/archive.js";
import type { Lock } from "../src/bundle/lock.js";
import { parseMirror } from "../src/config/mirror.js";
import { opensslKeyPair } from "./helpers/keys.js";

let source: TestRegistry;
let images: StandardImages;
let repo: TestGitRepo;
let root: string;
/** The archive as named: it exists only as parts arc.tar.000, arc.tar.001, … */
let archive: string;
let lock: Lock;
/** The parts prepare reported writing. */
let parts: string[] = [];
let cleanups: (() => Promise<void>)[] = [];

/** The lock is signed at prepare; upload checks the signature inside the archive. */
const signer = opensslKeyPair();
const stranger = opensslKeyPair();

test.before(async () => {
  source = await startRegistry();
  images = await seedStandardImages(source);
  repo = await makeGitRepo({ chart: "demo" });
  const tmp = await tempFiles(
    {
      "bundle.yml": [
        "name: arc",
        "images:",
        `  - ${images.ociIndex.ref}`,
        `  - ${images.dockerList.ref}`,
        "git:",
        `  - url: ${repo.url}`,
        `    commit: ${repo.commits.at(-1)}`,
        "templates:",
        "  - source: fetch.sh",
        "    dest: files/fetch.sh",
      ].join("\n"),
      "fetch.sh": "curl {{FILESERVER_URL}}/x.tar.gz\n",
      token: "tok\n",
      "sign.pem": signer.privateKeyPem,
      "sign.pub": signer.publicKeyPem,
      "stranger.pub": stranger.publicKeyPem,
    },
    "arc",
  );
  cleanups.push(tmp.cleanup);
  root = tmp.dir;
  archive = path.join(root, "media", "arc.tar");
  const p = await runCli(
    [
      "--json",
      "prepare",
      "-o",
      path.join(root, "out"),
      "--archive",
      archive,
      "--split",
      "16K",
      "--sign-key",
      "sign.pem",
    ],
    { cwd: root, env: { BUNDLE_CACHE_DIR: path.join(root, "cache") } },
  );
  if (p.code !== 0) throw new Error(p.stderr);
  // One JSON document, the archive's parts in it.
  parts = (JSON.parse(p.stdout) as { archive: { files: string[] } }).archive.files;
  const opened = await openArchive(archive);
  lock = opened.lock;
  await opened.close();
});

test.after.always(async () => {
  await source?.stop();
  await repo?.cleanup();
  for (const c of cleanups) await c();
  cleanups = [];
});

/** An empty site: a registry and a file server of its own, stopped when the test ends. */
async function freshSite(t: { teardown: (fn: () => Promise<void>) => void }, name: string) {
  const registry = await startRegistry();
  const server = await startFileServer({
    root: path.join(root, `served-${name}`),
    host: "127.0.0.1",
    port: 0,
    token: "tok",
    log: () => undefined,
  });
  t.teardown(async () => {
    await registry.stop();
    await server.close();
  });
  return { registry, server };
}

function uploadArgs(file: string, site: { registry: TestRegistry; server: FileServer }) {
  return [
    "--json",
    "upload",
    file,
    "--registry",
    site.registry.host,
    "--fileserver",
    site.server.url,
    "--token-file",
    "token",
    "--public-key",
    "sign.pub",
  ];
}

/** No temporary folder can be made: any unpacking fails instead of passing unseen. */
const NO_TMP = { TMPDIR: "/nonexistent/bundle-no-tmp", BUNDLE_TMPDIR: "/nonexistent/bundle-no-tmp" };

async function mkdtempIn(dir: string, name: string): Promise<string> {
  const made = path.join(dir, name);
  await mkdir(made, { recursive: true });
  return made;
}

async function listing(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

async function fetchBytes(url: string): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(url);
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

test.serial(
  "upload streams images and files straight out of a split archive, unpacking nothing",
  async (t) => {
    t.true(parts.length >= 3, `split into ${parts.join(", ")}`);
    t.deepEqual(
      (await readdir(path.dirname(archive))).sort(),
      parts.map((f) => path.basename(f)).sort(),
      "the parts prepare reported, and nothing else",
    );
    const site = await freshSite(t, "ok");
    const before = { media: await listing(path.dirname(archive)), cwd: await listing(root) };

    const up = await runCli(uploadArgs(archive, site), { cwd: root, env: NO_TMP });
    t.is(up.code, 0, up.stderr);
    t.deepEqual(await listing(path.dirname(archive)), before.media, "nothing written beside the archive");
    t.deepEqual(
      (await listing(root)).filter((f) => !f.startsWith("served-")),
      before.cwd.filter((f) => !f.startsWith("served-")),
      "nothing written in the working folder",
    );

    // Images: skopeo reads each mirror and copies every platform out of the site registry, checking
    // every blob's digest on the way; the top manifest's digest is the one the lock expects.
    for (const [i, img] of lock.images.entries()) {
      const raw = await skopeoInspectRaw(`${site.registry.host}/${img.mirror}`);
      t.is(`sha256:${sha256(raw)}`, img.mirrorDigest, img.ref);
      await t.notThrowsAsync(
        skopeoCopyToOciLayout(`${site.registry.host}/${img.mirror}`, await mkdtempIn(root, `check-${i}`)),
      );
    }
    t.is(lock.images.length, 2);

    // Files: each served byte for byte as the lock names it, the template rendered with the site's URL.
    t.true(lock.files.length >= 1);
    for (const f of lock.files) {
      const got = await fetchBytes(`${site.server.url}/arc/${f.path}`);
      t.is(got.status, 200, f.path);
      t.is(got.body.length, f.size, f.path);
      t.is(sha256(got.body), f.sha256, f.path);
    }
    const script = await fetchBytes(`${site.server.url}/arc/fetch.sh`);
    t.is(script.body.toString("utf8"), `curl ${site.server.url}/arc/x.tar.gz\n`);

    // All of it was sent: every distinct blob and manifest, and the files.
    const result = JSON.parse(up.stdout) as { bytesMoved: number; files: { sent: string[] } };
    const blobs = new Map<string, number>();
    for (const img of lock.images) for (const b of img.blobs) blobs.set(b.digest, b.size);
    const blobBytes = [...blobs.values()].reduce((a, b) => a + b, 0);
    t.true(result.bytesMoved >= blobBytes, `${result.bytesMoved} bytes moved, blobs hold ${blobBytes}`);
    t.deepEqual(result.files.sent.sort(), [...lock.files.map((f) => f.path), "fetch.sh"].sort());

    // A second upload of the same archive finds everything there and sends nothing.
    const again = await runCli(uploadArgs(archive, site), { cwd: root, env: NO_TMP });
    t.is(again.code, 0, again.stderr);
    t.is((JSON.parse(again.stdout) as { bytesMoved: number }).bytesMoved, 0);
  },
);

/** A copy of the (joined) archive as one file, with one byte flipped inside `member`. */
async function damagedCopy(
  name: string,
  pick: (m: Member) => boolean,
): Promise<{ file: string; member: Member }> {
  const opened = await openArchive(archive);
  const member = opened.index.filter(pick).sort((a, b) => b.size - a.size)[0];
  await opened.close();
  if (!member) throw new Error(`no member to damage for ${name}`);
  const names = (await readdir(path.dirname(archive))).filter((f) => /^arc\.tar\.\d{3}$/.test(f)).sort();
  const whole = Buffer.concat(
    await Promise.all(names.map((n) => readFile(path.join(path.dirname(archive), n)))),
  );
  const file = path.join(root, `${name}.tar`);
  await writeFile(file, whole);
  await flipByte(file, member.offset + Math.floor(member.size / 2));
  return { file, member };
}

test.serial(
  "a flipped byte in a carried file stops the upload naming the member; the server keeps nothing of it",
  async (t) => {
    const gitArchive = lock.git[0]?.archive ?? "";
    const { file, member } = await damagedCopy("bad-file", (m) => m.path === `files/${gitArchive}`);
    const site = await freshSite(t, "bad-file");
    const up = await runCli(uploadArgs(file, site), { cwd: root, env: NO_TMP });
    t.is(up.code, 1, up.stderr);
    t.true(up.stderr.includes(member.path), up.stderr);
    t.regex(up.stderr, /corrupt/);
    const served = await fetchBytes(`${site.server.url}/arc/${gitArchive}`);
    t.is(served.status, 404, "the damaged file is not served under its name");
  },
);

test.serial(
  "a flipped byte in a layer stops the upload naming the blob; the registry never gets it",
  async (t) => {
    const layers = new Set(lock.images.flatMap((i) => i.blobs.map((b) => b.digest.slice("sha256:".length))));
    const { file, member } = await damagedCopy(
      "bad-blob",
      (m) => layers.has(path.posix.basename(m.path)) && m.path.startsWith("images/blobs/"),
    );
    const digest = `sha256:${path.posix.basename(member.path)}`;
    const site = await freshSite(t, "bad-blob");
    const up = await runCli(uploadArgs(file, site), { cwd: root, env: NO_TMP });
    t.is(up.code, 1, up.stderr);
    t.true(up.stderr.includes(path.posix.basename(member.path)), up.stderr);
    const owner = lock.images.find((i) => i.blobs.some((b) => b.digest === digest));
    const repository = parseMirror(owner?.mirror ?? "").repository;
    const head = await fetch(`http://${site.registry.host}/v2/${repository}/blobs/${digest}`, {
      method: "HEAD",
    });
    t.is(head.status, 404, `${digest} is not on the registry`);
  },
);

test.serial(
  "a signature check reads the lock inside the archive: another key's public key stops the upload",
  async (t) => {
    const site = await freshSite(t, "stranger");
    const args = uploadArgs(archive, site).map((a) => (a === "sign.pub" ? "stranger.pub" : a));
    const up = await runCli(args, { cwd: root, env: NO_TMP });
    t.is(up.code, 1, up.stdout);
    t.regex(
      up.stderr,
      new RegExp(`bundle\\.lock\\.json\\.sig in ${archive.replace(/[.]/g, "\\.")} was made by another key`),
    );
    t.is((await fetchBytes(`${site.server.url}/_list/arc`)).status, 404, "nothing was uploaded");
    const verified = await runCli(["verify", archive, "--public-key", "sign.pub"], {
      cwd: root,
      env: NO_TMP,
    });
    t.is(verified.code, 0, verified.stderr);
    t.regex(verified.stdout, /bundle ok/);
  },
);
