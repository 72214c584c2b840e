/**
 * Update bundles (`prepare --since`) and lock signatures, on hand-made locks and bundle folders.
 */
import test from "ava";
import { opensslKeyPair } from "./helpers/keys.js";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LOCK_FILE, writeLock, type Lock, type LockBlob, type LockImage } from "../src/bundle/lock.js";
import { packBundle } from "../src/bundle/archive.js";
import { applyUpdate, checkSiteHas, planUpdate, readOldLock, type UpdateLock } from "../src/bundle/update.js";
import { signLock, SIGNATURE_FILE, verifyLockSignature } from "../src/bundle/sign.js";
import { WorkError } from "../src/util/errors.js";

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

/** A blob with real bytes, so the bundle folder holds what the lock says. */
interface Blob extends LockBlob {
  bytes: Buffer;
}
function blob(text: string, mediaType: string, pad = 0): Blob {
  const bytes = Buffer.concat([Buffer.from(text), Buffer.alloc(pad, 7)]);
  return { digest: `sha256:${sha(bytes)}`, size: bytes.length, mediaType, bytes };
}

const LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG = "application/vnd.oci.image.config.v1+json";
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const INDEX = "application/vnd.oci.image.index.v1+json";

// Shared base layer, used by both redis versions and by nginx.
const base = blob("debian base layer", LAYER, 1000);
const redisLayer4 = blob("redis 4 layer", LAYER, 500);
const redisLayer5 = blob("redis 5 layer", LAYER, 600);
const redisCfg4 = blob('{"config":"redis4"}', CONFIG);
const redisCfg5 = blob('{"config":"redis5"}', CONFIG);
const nginxLayer = blob("nginx layer", LAYER, 300);
const nginxCfg = blob('{"config":"nginx"}', CONFIG);
const redisMan4 = blob('{"manifest":"redis4 amd64"}', MANIFEST);
const redisIdx4 = blob('{"index":"redis4"}', INDEX);
const redisMan5 = blob('{"manifest":"redis5 amd64"}', MANIFEST);
const redisIdx5 = blob('{"index":"redis5"}', INDEX);
const nginxMan = blob('{"manifest":"nginx amd64"}', MANIFEST);
const nginxIdx = blob('{"index":"nginx"}', INDEX);

function image(ref: string, mirror: string, idx: Blob, man: Blob, blobs: Blob[]): LockImage {
  return {
    ref,
    source: "registry",
    digest: idx.digest,
    mediaType: idx.mediaType,
    size: idx.size,
    platforms: [{ platform: "linux/amd64", digest: man.digest, mediaType: man.mediaType, size: man.size }],
    missingPlatforms: [],
    mirror,
    mirrorDigest: idx.digest,
    blobs: blobs.map(({ digest, size, mediaType }) => ({ digest, size, mediaType })),
    bytes: blobs.reduce((n, b) => n + b.size, 0),
  };
}

const redis4 = image("docker.io/library/redis:4.0", "teleinfra/redis:4.0", redisIdx4, redisMan4, [
  redisCfg4,
  base,
  redisLayer4,
]);
const redis5 = image("docker.io/library/redis:5.0", "teleinfra/redis:5.0", redisIdx5, redisMan5, [
  redisCfg5,
  base,
  redisLayer5,
]);
const nginx = image("docker.io/library/nginx:1.25", "teleinfra/nginx:1.25", nginxIdx, nginxMan, [
  nginxCfg,
  base,
  nginxLayer,
]);

const toolBytes = Buffer.alloc(2000, 1);
const appOld = Buffer.alloc(700, 2);
const appNew = Buffer.alloc(900, 3);
const valuesBytes = Buffer.from("replicas: 2\n");

function lock(images: LockImage[], app: Buffer, extraFiles: { path: string; bytes: Buffer }[] = []): Lock {
  return {
    lockVersion: 1,
    name: "site",
    tool: { name: "bundle", version: "0.1.0" },
    platforms: ["linux/amd64"],
    images,
    git: [
      {
        url: "https://example.org/app.git",
        commit: app === appOld ? "a".repeat(40) : "b".repeat(40),
        archive: "app.tar.gz",
        size: app.length,
        sha256: sha(app),
      },
    ],
    files: [
      { path: "app.tar.gz", size: app.length, sha256: sha(app) },
      {
        path: "tool.tgz",
        size: toolBytes.length,
        sha256: sha(toolBytes),
        url: "https://example.org/tool.tgz",
      },
      ...extraFiles.map((f) => ({ path: f.path, size: f.bytes.length, sha256: sha(f.bytes) })),
    ],
    charts: [],
    releases: [],
    templates: [],
    values: "templates/values.json",
    siteValues: [],
  };
}

// Old bundle: redis 4 and nginx, the old app archive, the tool.
const oldLock = lock([redis4, nginx], appOld);
// New bundle: redis 4 unchanged, redis 5 new (shares the base layer), nginx gone; new app
// archive, same tool, a new values file.
const nextLock = lock([redis4, redis5], appNew, [{ path: "conf/values.yml", bytes: valuesBytes }]);

const expectedOmitBlobs = [redisIdx4, redisMan4, redisCfg4, base, redisLayer4].map((b) => b.digest);
const expectedKeepBlobs = [redisIdx5, redisMan5, redisCfg5, redisLayer5].map((b) => b.digest);
const sum = (bs: { size: number }[]) => bs.reduce((n, b) => n + b.size, 0);

test("planUpdate omits exactly what the old bundle carried, and counts bytes once", (t) => {
  const plan = planUpdate(nextLock, oldLock);
  t.deepEqual([...plan.omitBlobs].sort(), [...expectedOmitBlobs].sort());
  t.deepEqual([...plan.keepBlobs].sort(), [...expectedKeepBlobs].sort());
  t.deepEqual([...plan.omitFiles].sort(), ["tool.tgz"]);
  t.deepEqual([...plan.keepFiles].sort(), ["app.tar.gz", "conf/values.yml"]);
  t.is(plan.savedBytes, sum([redisIdx4, redisMan4, redisCfg4, base, redisLayer4]) + toolBytes.length);
  t.is(
    plan.neededBytes,
    sum([redisIdx5, redisMan5, redisCfg5, redisLayer5]) + appNew.length + valuesBytes.length,
  );
  t.is(plan.since, sha(`${JSON.stringify(oldLock, null, 2)}\n`));
});

test("planUpdate keeps a file whose path is the same but bytes changed, and one that moved", (t) => {
  const moved = lock([], appOld);
  const f = moved.files.find((x) => x.path === "tool.tgz");
  if (!f) return t.fail();
  f.path = "bin/tool.tgz";
  const plan = planUpdate(moved, oldLock);
  t.deepEqual([...plan.omitFiles].sort(), ["app.tar.gz"]);
  t.deepEqual([...plan.keepFiles].sort(), ["bin/tool.tgz"]);
  t.is(plan.omitBlobs.size, 0);
});

async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "bundle-update-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A folder laid out like a prepared bundle of `l`, with real blob and file bytes. */
async function writeBundle(dir: string, l: Lock, files: Record<string, Buffer>): Promise<void> {
  const blobs = path.join(dir, "images", "blobs", "sha256");
  await mkdir(blobs, { recursive: true });
  const all = [
    redisIdx4,
    redisMan4,
    redisCfg4,
    base,
    redisLayer4,
    redisIdx5,
    redisMan5,
    redisCfg5,
    redisLayer5,
  ];
  const wanted = new Set(
    l.images.flatMap((i) => [i.digest, ...i.platforms.map((p) => p.digest), ...i.blobs.map((b) => b.digest)]),
  );
  for (const b of all)
    if (wanted.has(b.digest)) await writeFile(path.join(blobs, b.digest.slice(7)), b.bytes);
  for (const [rel, bytes] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, "files", rel)), { recursive: true });
    await writeFile(path.join(dir, "files", rel), bytes);
  }
  await writeLock(dir, l);
}

test("readOldLock reads a bundle folder, archive or lock file, and since names the exact bytes", async (t) => {
  const dir = await tempDir(t);
  const odd = `${JSON.stringify(oldLock)}\n`; // not as writeLock would write it
  await writeFile(path.join(dir, LOCK_FILE), odd);
  const fromDir = await readOldLock(dir);
  const fromFile = await readOldLock(path.join(dir, LOCK_FILE));
  t.deepEqual(fromDir, oldLock);
  t.is(planUpdate(nextLock, fromDir).since, sha(odd));
  t.is(planUpdate(nextLock, fromFile).since, sha(odd));
  // An old bundle carried as an archive, whole or in parts, names the same bytes.
  const media = await tempDir(t);
  await packBundle(dir, path.join(media, "old.tar"));
  await packBundle(dir, path.join(media, "split.tar"), { splitBytes: 1024 });
  for (const archive of ["old.tar", "split.tar"]) {
    const fromArchive = await readOldLock(path.join(media, archive));
    t.deepEqual(fromArchive, oldLock, archive);
    t.is(planUpdate(nextLock, fromArchive).since, sha(odd), archive);
  }
  await t.throwsAsync(readOldLock(path.join(dir, "nope")), { message: /no such bundle/ });
  await writeFile(path.join(dir, "x.json"), "{}");
  await t.throwsAsync(readOldLock(path.join(dir, "x.json")), { message: /not a bundle lock/ });
});

test("applyUpdate removes exactly the omitted blobs and files and records them", async (t) => {
  const dir = await tempDir(t);
  await writeBundle(dir, nextLock, {
    "app.tar.gz": appNew,
    "tool.tgz": toolBytes,
    "conf/values.yml": valuesBytes,
  });
  const plan = planUpdate(nextLock, oldLock);
  await applyUpdate(dir, plan);
  const left = (await readdir(path.join(dir, "images", "blobs", "sha256"))).sort();
  t.deepEqual(left, expectedKeepBlobs.map((d) => d.slice(7)).sort());
  t.deepEqual((await readdir(path.join(dir, "files"))).sort(), ["app.tar.gz", "conf"]);
  t.deepEqual(await readdir(path.join(dir, "files", "conf")), ["values.yml"]);
  const written = JSON.parse(await readFile(path.join(dir, LOCK_FILE), "utf8")) as UpdateLock;
  t.deepEqual(written.update, {
    since: plan.since,
    omittedBlobs: [...expectedOmitBlobs].sort(),
    omittedFiles: ["tool.tgz"],
  });
  // The rest of the lock is unchanged: the update still lists everything it deploys.
  const { update: _update, ...rest } = written;
  t.deepEqual(rest, nextLock);
  t.false((await readdir(dir)).some((f) => f.includes(".tmp-")));
});

test("checkSiteHas names exactly the omitted items the site lacks", async (t) => {
  const plan = planUpdate(nextLock, oldLock);
  const updated: UpdateLock = {
    ...nextLock,
    update: { since: plan.since, omittedBlobs: [...plan.omitBlobs], omittedFiles: [...plan.omitFiles] },
  };
  const asked: string[] = [];
  const messages = await checkSiteHas(updated, {
    blob: async (digest, repository) => {
      asked.push(`${repository} ${digest}`);
      // The site lost redis 4's own layer; everything else is there.
      return !(digest === redisLayer4.digest && repository === "teleinfra/redis");
    },
    file: async (p, sum) => p !== "tool.tgz" || sum !== sha(toolBytes),
  });
  t.deepEqual(messages, [
    `blob ${redisLayer4.digest} of docker.io/library/redis:4.0 is not on the registry in teleinfra/redis (the update bundle leaves it out)`,
    `files/tool.tgz (sha256 ${sha(toolBytes)}) is not on the file server (the update bundle leaves it out)`,
  ]);
  // Only omitted items are asked about, each once, in the repository of the image the earlier
  // bundle carried (redis 5 shares the base layer; upload mounts it from there).
  t.deepEqual(
    [...asked].sort(),
    [redisIdx4, redisMan4, redisCfg4, base, redisLayer4].map((b) => `teleinfra/redis ${b.digest}`).sort(),
  );
  const none = await checkSiteHas(updated, { blob: async () => true, file: async () => true });
  t.deepEqual(none, []);
  t.deepEqual(await checkSiteHas(nextLock, { blob: async () => false, file: async () => false }), []);
});

test("checkSiteHas asks manifests of the manifest holder when there is one", async (t) => {
  const updated: UpdateLock = {
    ...nextLock,
    update: { since: "x", omittedBlobs: [redisIdx4.digest, base.digest], omittedFiles: [] },
  };
  const messages = await checkSiteHas(updated, {
    blob: async () => true,
    manifest: async (d) => d !== redisIdx4.digest,
    file: async () => true,
  });
  t.deepEqual(messages, [
    `manifest ${redisIdx4.digest} of docker.io/library/redis:4.0 is not on the registry in teleinfra/redis (the update bundle leaves it out)`,
  ]);
});

/** A bundle folder as verifyLockSignature reads it: the lock's bytes, never parsed. */
const folder = (dir: string) => ({
  where: dir,
  isArchive: false,
  readFile: (rel: string) => readFile(path.join(dir, rel)),
});

async function signedBundle(t: { teardown: (fn: () => Promise<void>) => void }) {
  const dir = await tempDir(t);
  await writeLock(dir, nextLock);
  const keys = opensslKeyPair();
  await signLock(dir, keys.privateKeyPem);
  return { dir, keys };
}

test("a signed lock verifies with its public key", async (t) => {
  const { dir, keys } = await signedBundle(t);
  t.regex(keys.privateKeyPem, /BEGIN PRIVATE KEY/);
  t.regex(keys.publicKeyPem, /BEGIN PUBLIC KEY/);
  await t.notThrowsAsync(verifyLockSignature(folder(dir), keys.publicKeyPem));
  const sig = await readFile(path.join(dir, SIGNATURE_FILE), "utf8");
  t.regex(sig.split("\n")[0] ?? "", /^[A-Za-z0-9+/]{86}==$/);
});

test("one flipped byte of the lock makes the signature invalid", async (t) => {
  const { dir, keys } = await signedBundle(t);
  const file = path.join(dir, LOCK_FILE);
  const bytes = await readFile(file);
  bytes[10] = (bytes[10] ?? 0) ^ 1;
  await writeFile(file, bytes);
  const err = await t.throwsAsync(verifyLockSignature(folder(dir), keys.publicKeyPem), {
    instanceOf: WorkError,
  });
  t.regex(err.message, /is invalid/);
  t.notRegex(err.message, /PRIVATE|PUBLIC KEY/);
});

test("a signature made by another key is refused as another key's", async (t) => {
  const { dir } = await signedBundle(t);
  const other = opensslKeyPair();
  const err = await t.throwsAsync(verifyLockSignature(folder(dir), other.publicKeyPem), {
    instanceOf: WorkError,
  });
  t.regex(err.message, /made by another key/);
  t.notRegex(err.message, /BEGIN/);
  // Without the key line, a foreign signature still fails and says so.
  const sigFile = path.join(dir, SIGNATURE_FILE);
  const first = (await readFile(sigFile, "utf8")).split("\n")[0] ?? "";
  await writeFile(sigFile, `${first}\n`);
  const bare = await t.throwsAsync(verifyLockSignature(folder(dir), other.publicKeyPem), {
    instanceOf: WorkError,
  });
  t.regex(bare.message, /another key signed it/);
});

test("a missing or malformed signature says so", async (t) => {
  const { dir, keys } = await signedBundle(t);
  const sigFile = path.join(dir, SIGNATURE_FILE);
  await writeFile(sigFile, "not a signature\n");
  await t.throwsAsync(verifyLockSignature(folder(dir), keys.publicKeyPem), {
    instanceOf: WorkError,
    message: /is invalid/,
  });
  await rm(sigFile);
  await t.throwsAsync(verifyLockSignature(folder(dir), keys.publicKeyPem), {
    instanceOf: WorkError,
    message: /is missing/,
  });
});

test("applyUpdate drops a signature the lock change made stale", async (t) => {
  const { dir, keys } = await signedBundle(t);
  await applyUpdate(dir, planUpdate(nextLock, oldLock));
  await t.throwsAsync(verifyLockSignature(folder(dir), keys.publicKeyPem), { message: /is missing/ });
  await signLock(dir, keys.privateKeyPem);
  await t.notThrowsAsync(verifyLockSignature(folder(dir), keys.publicKeyPem));
});
