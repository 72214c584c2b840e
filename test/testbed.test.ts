// Checks the test bed itself against independent tools (skopeo, git, tar), so that later
// tests can trust the registries, images and repositories it builds.
import test, { type ExecutionContext } from "ava";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { createGunzip, gunzipSync } from "node:zlib";
import { git, makeGitRepo } from "./helpers/git.js";
import { header, httpRequest } from "./helpers/http.js";
import {
  MANIFEST_ACCEPT,
  MediaTypes,
  makeLargeLayer,
  makeLayer,
  pushImage,
  seedStandardImages,
  sha256Digest,
  type PushedImage,
} from "./helpers/images.js";
import { freePort } from "./helpers/ports.js";
import { startRegistry, type StartRegistryOptions, type TestRegistry } from "./helpers/registry.js";
import { skopeoCopyToOciLayout, skopeoInspectRaw } from "./helpers/skopeo.js";

const execFileAsync = promisify(execFile);
const CREDS = { username: "tester", password: "s3cret-pass" };

async function registryFor(t: ExecutionContext, opts?: StartRegistryOptions): Promise<TestRegistry> {
  const registry = await startRegistry(opts);
  t.teardown(() => registry.stop());
  return registry;
}

async function tempDirFor(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "testbed-test-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function allImages(images: Awaited<ReturnType<typeof seedStandardImages>>): PushedImage[] {
  return [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker];
}

function hostOf(image: PushedImage): string {
  return image.ref.slice(0, image.ref.indexOf("/"));
}

test("freePort returns a loopback port that can be bound", async (t) => {
  const port = await freePort();
  t.true(port > 0 && port < 65536);
  const server = net.createServer();
  await new Promise<void>((resolve, reject) =>
    server.once("error", reject).listen(port, "127.0.0.1", resolve),
  );
  await new Promise<void>((resolve) => server.close(() => resolve()));
  t.pass();
});

test("a registry answers /v2/ and stop() ends it and removes its storage", async (t) => {
  const registry = await registryFor(t);
  t.regex(registry.host, /^127\.0\.0\.1:\d+$/);
  t.is(registry.url, `http://${registry.host}`);
  const res = await httpRequest(`${registry.url}/v2/`);
  t.is(res.status, 200);
  t.is(header(res, "docker-distribution-api-version"), "registry/2.0");

  await registry.stop();
  await registry.stop(); // idempotent, so t.teardown may call it again
  await t.throwsAsync(httpRequest(`${registry.url}/v2/`), { code: "ECONNREFUSED" });
  t.false(existsSync(path.dirname(registry.storageDir)));
});

test("skopeo reads the standard images byte for byte, with every platform manifest", async (t) => {
  const registry = await registryFor(t);
  const images = await seedStandardImages(registry);
  for (const image of allImages(images)) {
    const raw = await skopeoInspectRaw(image.ref);
    t.is(sha256Digest(raw), image.digest, image.ref);
    t.true(raw.equals(image.manifestBytes), image.ref);
    t.is((JSON.parse(raw.toString()) as { mediaType: string }).mediaType, image.mediaType);
    for (const platform of image.platforms) {
      const child = await skopeoInspectRaw(`${hostOf(image)}/${image.repo}@${platform.digest}`);
      t.is(sha256Digest(child), platform.digest, `${image.ref} ${platform.platform}`);
      t.is(child.length, platform.size);
    }
  }
});

test("the standard images have the promised shapes and media types", async (t) => {
  const registry = await registryFor(t);
  const { ociIndex, dockerList, singleOci, singleDocker } = await seedStandardImages(registry);
  t.is(ociIndex.mediaType, "application/vnd.oci.image.index.v1+json");
  t.is(dockerList.mediaType, "application/vnd.docker.distribution.manifest.list.v2+json");
  t.is(singleOci.mediaType, "application/vnd.oci.image.manifest.v1+json");
  t.is(singleDocker.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
  for (const list of [ociIndex, dockerList]) {
    const index = JSON.parse(list.manifestBytes.toString()) as {
      manifests: { digest: string; platform: { os: string; architecture: string } }[];
    };
    const listed = index.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}@${m.digest}`);
    t.deepEqual(
      listed,
      list.platforms.map((p) => `${p.platform}@${p.digest}`),
    );
    t.deepEqual(
      list.platforms.map((p) => p.platform),
      ["linux/amd64", "linux/arm64"],
    );
  }
  t.deepEqual(singleOci.platforms, [
    {
      platform: "linux/amd64",
      digest: singleOci.digest,
      mediaType: singleOci.mediaType,
      size: singleOci.manifestBytes.length,
    },
  ]);
});

test("every blob downloads with its digest and a shared blob is stored once", async (t) => {
  const registry = await registryFor(t);
  const images = await seedStandardImages(registry);
  const sharedBase = makeLayer("testbed-base@linux/amd64").digest;
  t.true(images.sharedBlobs.includes(sharedBase));
  t.true(images.sharedBlobs.includes(makeLayer("testbed-base@linux/arm64").digest));

  const expected = new Set<string>();
  for (const image of allImages(images)) {
    expected.add(image.digest);
    for (const platform of image.platforms) expected.add(platform.digest);
    for (const blob of image.blobs) {
      expected.add(blob.digest);
      const res = await httpRequest(`${registry.url}/v2/${image.repo}/blobs/${blob.digest}`);
      t.is(res.status, 200);
      t.is(sha256Digest(res.body), blob.digest);
      t.is(res.body.length, blob.size);
    }
  }
  // Distribution keeps one data file per distinct digest, whichever repositories use it.
  const stored = await storedBlobDigests(registry.storageDir);
  t.deepEqual([...stored].sort(), [...expected].sort());
});

async function storedBlobDigests(storageDir: string): Promise<string[]> {
  const root = path.join(storageDir, "docker/registry/v2/blobs/sha256");
  const digests: string[] = [];
  for (const prefix of await readdir(root)) {
    for (const hex of await readdir(path.join(root, prefix))) {
      if (existsSync(path.join(root, prefix, hex, "data"))) digests.push(`sha256:${hex}`);
    }
  }
  return digests;
}

test("skopeo copies every platform of both list kinds, verifying each blob", async (t) => {
  const registry = await registryFor(t);
  const images = await seedStandardImages(registry);
  const dir = await tempDirFor(t);
  for (const image of [images.ociIndex, images.dockerList]) {
    const layout = path.join(dir, image.repo.replace("/", "-"));
    await skopeoCopyToOciLayout(image.ref, layout);
    const index = JSON.parse(await readFile(path.join(layout, "index.json"), "utf8")) as {
      manifests: { digest: string }[];
    };
    t.is(index.manifests.length, 1, image.ref);
  }
});

// Not a property of the bed but of Distribution 2.8, pinned here because clients must cope:
// a manifest is only served as stored when the Accept header names its media type.
test("the registry serves lists and OCI manifests only to clients that accept them", async (t) => {
  const registry = await registryFor(t);
  const { dockerList, ociIndex } = await seedStandardImages(registry);
  const listUrl = `${registry.url}/v2/${dockerList.repo}/manifests/${dockerList.tag}`;
  const full = await httpRequest(listUrl, { headers: { accept: MANIFEST_ACCEPT } });
  t.is(header(full, "docker-content-digest"), dockerList.digest);
  t.true(full.body.equals(dockerList.manifestBytes));

  const v2Only = await httpRequest(listUrl, { headers: { accept: MediaTypes.dockerManifest } });
  t.is(header(v2Only, "docker-content-digest"), dockerList.platforms[0]!.digest, "the linux/amd64 child");
  const noAccept = await httpRequest(listUrl);
  t.is(header(noAccept, "content-type"), "application/vnd.docker.distribution.manifest.v1+prettyjws");

  const ociUrl = `${registry.url}/v2/${ociIndex.repo}/manifests/${ociIndex.tag}`;
  const ociNoAccept = await httpRequest(ociUrl);
  t.is(ociNoAccept.status, 404);
  t.regex(ociNoAccept.body.toString(), /MANIFEST_UNKNOWN/);
});

test("layers are deterministic gzipped tars with fixed mtimes and a matching diff_id", async (t) => {
  const first = makeLayer("determinism");
  const again = makeLayer("determinism");
  t.true("bytes" in first && "bytes" in again);
  if (!("bytes" in first) || !("bytes" in again)) return;
  t.true(first.bytes.equals(again.bytes));
  t.is(first.digest, sha256Digest(first.bytes));
  t.not(makeLayer("other seed").digest, first.digest);
  t.is(first.bytes.readUInt32LE(4), 0, "gzip header mtime");
  t.is(sha256Digest(gunzipSync(first.bytes)), first.diffId);

  const dir = await tempDirFor(t);
  const file = path.join(dir, "layer.tar.gz");
  await writeFile(file, first.bytes);
  const { stdout } = await execFileAsync("tar", ["-tvzf", file, "--utc", "--full-time"]);
  const lines = stdout.trim().split("\n");
  t.is(lines.length, 4);
  for (const line of lines) t.regex(line, /2024-01-01 00:00:00 data\//);
  t.regex(stdout, /seed\.txt/);
  t.regex(stdout, /payload\.bin/);
});

test("large layers are streamed to disk, incompressible, with both digests right", async (t) => {
  const dir = await tempDirFor(t);
  const sizeBytes = 5_000_000;
  const layer = await makeLargeLayer("big", sizeBytes, dir);
  t.true("file" in layer);
  if (!("file" in layer)) return;
  t.is((await stat(layer.file)).size, layer.size);
  t.true(layer.size > sizeBytes, "random data must not compress");
  t.is(await fileDigest(layer.file), layer.digest);
  const tarHash = createHash("sha256");
  await pipeline(createReadStream(layer.file), createGunzip(), async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) tarHash.update(chunk);
  });
  t.is(`sha256:${tarHash.digest("hex")}`, layer.diffId);
  const again = await makeLargeLayer("big", sizeBytes, await tempDirFor(t));
  t.is(again.digest, layer.digest);
});

async function fileDigest(file: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), hash);
  return `sha256:${hash.digest("hex")}`;
}

test("an index with a large layer shared by its platforms pushes that blob once", async (t) => {
  const registry = await registryFor(t);
  const image = await pushImage(registry, "testbed/large", "v1", {
    kind: "oci-index",
    layers: [{ seed: "large-shared", sizeBytes: 3_000_000, samePerPlatform: true }, "large-app"],
  });
  // Two configs, two per-platform app layers and one shared large layer.
  t.is(image.blobs.length, 5);
  const large = image.blobs.find((blob) => blob.size > 3_000_000);
  t.truthy(large);
  const res = await httpRequest(`${registry.url}/v2/testbed/large/blobs/${large!.digest}`);
  t.is(sha256Digest(res.body), large!.digest);
  t.is(sha256Digest(await skopeoInspectRaw(image.ref)), image.digest);
});

test("the same specs give the same digests on another registry", async (t) => {
  const [one, two] = await Promise.all([registryFor(t), registryFor(t)]);
  const [first, second] = await Promise.all([seedStandardImages(one), seedStandardImages(two)]);
  t.deepEqual(
    allImages(first).map((image) => image.digest),
    allImages(second).map((image) => image.digest),
  );
  // Pushing again over existing blobs (HEAD finds them) must not change anything.
  const third = await seedStandardImages(one);
  t.is(third.ociIndex.digest, first.ociIndex.digest);
});

test("a registry with auth rejects anonymous clients and accepts the credentials", async (t) => {
  const registry = await registryFor(t, { auth: CREDS });
  t.deepEqual(registry.auth, CREDS);
  const anonymous = await httpRequest(`${registry.url}/v2/`);
  t.is(anonymous.status, 401);
  t.regex(header(anonymous, "www-authenticate") ?? "", /^Basic realm="testbed"/);
  const wrong = await httpRequest(`${registry.url}/v2/`, { auth: { ...CREDS, password: "wrong" } });
  t.is(wrong.status, 401);
  const good = await httpRequest(`${registry.url}/v2/`, { auth: CREDS });
  t.is(good.status, 200);

  await t.throwsAsync(pushImage(registry.url, "testbed/denied", "v1", { kind: "single", layers: ["x"] }), {
    message: /HTTP 401/,
  });
  const { ociIndex } = await seedStandardImages(registry);
  t.is(sha256Digest(await skopeoInspectRaw(ociIndex.ref, { creds: CREDS })), ociIndex.digest);
  await t.throwsAsync(skopeoInspectRaw(ociIndex.ref), { message: /unauthorized|authentication required/i });
});

test("git repos have reproducible commits, both kinds of tags, modes and a chart", async (t) => {
  const repo = await makeGitRepo({ chart: "demo" });
  t.teardown(() => repo.cleanup());
  t.is(repo.commits.length, 3);
  for (const sha of repo.commits) {
    t.regex(sha, /^[0-9a-f]{40}$/);
    t.is(await git(repo.dir, ["rev-parse", `${sha}^{commit}`]), sha);
  }
  t.is(await git(repo.dir, ["rev-parse", "HEAD"]), repo.commits[2]!);
  t.is(await git(repo.dir, ["rev-parse", "v1.0.0^{commit}"]), repo.commits[0]!);
  t.is(await git(repo.dir, ["rev-parse", "v1.1.0^{commit}"]), repo.commits[2]!);
  t.deepEqual(repo.tags, { "v1.0.0": repo.commits[0], "v1.1.0": repo.commits[2] });
  t.is(await git(repo.dir, ["cat-file", "-t", "v1.0.0"]), "commit");
  t.is(await git(repo.dir, ["cat-file", "-t", "v1.1.0"]), "tag");
  t.not(repo.tagObjects["v1.1.0"], repo.tags["v1.1.0"]);

  const firstTree = await git(repo.dir, ["ls-tree", "-r", repo.commits[0]!]);
  t.regex(firstTree, /^100755 blob [0-9a-f]{40}\tbin\/run\.sh$/m);
  t.regex(firstTree, /^100644 blob [0-9a-f]{40}\tsrc\/nested\/deep\/hello\.txt$/m);
  t.regex(firstTree, /\thelm\/demo\/Chart\.yaml$/m);
  t.regex(firstTree, /\thelm\/demo\/values\.yaml$/m);
  const lastTree = await git(repo.dir, ["ls-tree", "-r", "--name-only", repo.commits[2]!]);
  t.notRegex(lastTree, /src\/nested\/other\.txt/);

  const twin = await makeGitRepo({ chart: "demo" });
  t.teardown(() => twin.cleanup());
  t.deepEqual(twin.commits, repo.commits);
  t.deepEqual(twin.tagObjects, repo.tagObjects);
});

test("git repos clone through their file:// URL and cleanup removes them", async (t) => {
  const repo = await makeGitRepo({ tags: [{ name: "only", commit: 1, annotated: true }] });
  t.teardown(() => repo.cleanup());
  t.true(repo.url.startsWith("file:///"));
  const dir = await tempDirFor(t);
  await git(dir, ["clone", "-q", repo.url, "clone"]);
  const clone = path.join(dir, "clone");
  t.is(await git(clone, ["rev-parse", "HEAD"]), repo.commits[2]!);
  t.is(await git(clone, ["rev-parse", "only^{commit}"]), repo.commits[1]!);
  t.deepEqual(Object.keys(repo.tags), ["only"]);
  await repo.cleanup();
  t.false(existsSync(repo.dir));
});
