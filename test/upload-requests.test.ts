/**
 * What `bundle upload` asks of the site's registry, counted at a proxy in front of it: at most
 * one existence check (`HEAD`) per blob of each image, with platforms of an image sharing a
 * layer and images sharing base layers (the copy engine's answer reaches the registry store),
 * none for a blob this run saw in another repository (a mount answers and links at once), each
 * blob's bytes sent once, and one manifest HEAD per image: its index under the tag answers for
 * all its platforms.
 */
import test from "ava";
import { createHash } from "node:crypto";
import { appendFile, readFile, truncate, writeFile } from "node:fs/promises";
import { Readable } from "node:stream";
import path from "node:path";
import { startRegistry } from "./helpers/registry.js";
import { pushImage, seedStandardImages, sha256Digest } from "./helpers/images.js";
import { httpRequest } from "./helpers/http.js";
import { skopeoInspectRaw } from "./helpers/skopeo.js";
import { startFaultProxy } from "./helpers/faultProxy.js";
import { RegistryClient } from "../src/registry/client.js";
import { RegistryStore } from "../src/store/registry.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { flipByte, standardBed, standardImageLines } from "./helpers/bundles.js";
import type { Lock } from "../src/bundle/lock.js";

test("upload asks once: at most one HEAD per blob of each image, bytes sent once, one manifest HEAD per image; a rerun asks only that and puts back a moved tag", async (t) => {
  const source = await startRegistry();
  t.teardown(() => source.stop());
  const images = await seedStandardImages(source);
  // Both platforms of this index use the same layer.
  const twin = await pushImage(source, "testbed/twin", "v1", {
    kind: "oci-index",
    layers: [{ seed: "twin-layer", sizeBytes: 300_000, samePerPlatform: true }, "twin-app"],
    label: "twin",
  });
  const def = ["name: demo", ...standardImageLines(images), `  - ${twin.ref}`].join("\n");
  const { dir, cleanup } = await tempFiles({ "bundle.yml": def }, "demo");
  t.teardown(cleanup);
  const out = path.join(dir, "out");
  const prepared = await runCli(["prepare", "-o", out], { cwd: dir });
  t.is(prepared.code, 0, prepared.stderr);

  const site = await startRegistry();
  t.teardown(() => site.stop());
  const proxy = await startFaultProxy(site.url);
  t.teardown(() => proxy.stop());
  const upload = await runCli(["upload", out, "--registry", proxy.host], { cwd: dir });
  t.is(upload.code, 0, upload.stderr);

  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  let expected = 0;
  const unique = new Set<string>();
  for (const image of lock.images) {
    const repo = image.mirror.replace(/:[^/:]+$/, "");
    const digests = new Set(image.blobs.map((b) => b.digest));
    expected += digests.size;
    for (const digest of digests) {
      unique.add(digest);
      const heads = proxy.count("HEAD", new RegExp(`^/v2/${repo}/blobs/${digest}$`));
      const mounts = proxy.count(
        "POST",
        new RegExp(`^/v2/${repo}/blobs/uploads/\\?mount=${digest.replace(":", "%3A")}&`),
      );
      t.true(heads <= 1, `${repo} ${digest}: ${heads} HEADs`);
      t.true(
        heads + mounts >= 1 && heads + mounts <= 2,
        `${repo} ${digest}: ${heads} HEADs, ${mounts} mounts`,
      );
    }
  }
  t.true(proxy.count("HEAD", /^\/v2\/.+\/blobs\/sha256:/) <= expected, "no other blob HEAD");
  // Each blob's bytes go once: a second repository mounts it.
  for (const digest of unique)
    t.is(proxy.count("PUT", new RegExp(`/blobs/uploads/.*digest=${digest.replace(":", "%3A")}`)), 1, digest);
  // One manifest HEAD per image, under its tag: an index goes in after its platforms, so it
  // answers for them; none by a platform's digest.
  const manifestHeads = (image: Lock["images"][number]) => {
    const [repo, tag] = [image.mirror.replace(/:[^/:]+$/, ""), image.mirror.replace(/^.*:/, "")];
    return [
      proxy.count("HEAD", new RegExp(`^/v2/${repo}/manifests/${tag}$`)),
      proxy.count("HEAD", new RegExp(`^/v2/${repo}/manifests/sha256:`)),
    ];
  };
  for (const image of lock.images) t.deepEqual(manifestHeads(image), [1, 0], image.mirror);

  // Someone moves a tag at the site to one platform's manifest; a rerun puts it back and sends
  // no blob bytes.
  const moved = lock.images.find((i) => i.platforms.length > 1)!;
  const movedRepo = moved.mirror.replace(/:[^/:]+$/, "");
  const platformManifest = await httpRequest(
    `${site.url}/v2/${movedRepo}/manifests/${moved.platforms[0]!.digest}`,
    {
      headers: { accept: moved.platforms[0]!.mediaType },
    },
  );
  await httpRequest(`${site.url}/v2/${moved.mirror.replace(/:([^/:]+)$/, "/manifests/$1")}`, {
    method: "PUT",
    headers: { "content-type": moved.platforms[0]!.mediaType },
    body: platformManifest.body,
  });
  t.not(sha256Digest(await skopeoInspectRaw(`${site.host}/${moved.mirror}`)), moved.mirrorDigest);
  proxy.requests.length = 0;
  const again = await runCli(["--json", "upload", out, "--registry", proxy.host], { cwd: dir });
  t.is(again.code, 0, again.stderr);
  t.is((JSON.parse(again.stdout) as { bytesMoved: number }).bytesMoved, 0);
  t.is(sha256Digest(await skopeoInspectRaw(`${site.host}/${moved.mirror}`)), moved.mirrorDigest);
  for (const image of lock.images) t.deepEqual(manifestHeads(image).slice(1), [0], image.mirror);
  t.is(proxy.count("PUT", /\/blobs\/uploads\//), 0, "no blob sent again");
});

test("a blob seen in another repository this run is mounted without a HEAD, and the repository serves it", async (t) => {
  const site = await startRegistry();
  t.teardown(() => site.stop());
  const proxy = await startFaultProxy(site.url);
  t.teardown(() => proxy.stop());
  const store = new RegistryStore(new RegistryClient(proxy.host, { retry: { retries: 0 } }));
  const bytes = Buffer.from("a layer both repositories share\n");
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  const desc = { digest, size: bytes.length, mediaType: "application/vnd.oci.image.layer.v1.tar" };
  const loc = (repository: string) => ({
    repository,
    reference: "v1",
    name: `${proxy.host}/${repository}:v1`,
  });
  await store.putBlob(loc("site/a"), desc, () => Promise.resolve(Readable.from([bytes])));

  t.true(await store.hasBlob(loc("site/b"), desc));
  t.is(proxy.count("HEAD", /^\/v2\/site\/b\/blobs\//), 0, "no HEAD in site/b");
  t.is(
    proxy.count(
      "POST",
      new RegExp(`^/v2/site/b/blobs/uploads/\\?mount=${digest.replace(":", "%3A")}&from=site%2Fa$`),
    ),
    1,
  );
  t.is(proxy.count("PUT", /^\/v2\/site\/b\//), 0, "no bytes sent to site/b");
  const res = await fetch(`${site.url}/v2/site/b/blobs/${digest}`);
  t.is(res.status, 200);
  t.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
});

test("a blob file of the bundle cut short, grown or changed after prepare: upload names it, and the site gets neither the blob nor the image's tag", async (t) => {
  const { dir, out } = await standardBed(t);
  const prepared = await runCli(["prepare", "-o", out], { cwd: dir });
  t.is(prepared.code, 0, prepared.stderr);
  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  const image = lock.images[0]!;
  const blob = [...image.blobs].sort((a, b) => b.size - a.size)[0]!;
  const rel = path.join("images", "blobs", "sha256", blob.digest.slice("sha256:".length));
  const file = path.join(out, rel);
  const original = await readFile(file);
  t.is(original.length, blob.size);

  const cases: [string, () => Promise<void>, RegExp][] = [
    [
      "cut short",
      () => truncate(file, 1000),
      new RegExp(`${rel} holds 1000 bytes, the blob ${blob.size}$`, "m"),
    ],
    [
      "grown",
      () => appendFile(file, "x"),
      new RegExp(`${rel} holds ${blob.size + 1} bytes, the blob ${blob.size}$`, "m"),
    ],
    ["changed", () => flipByte(file, 100), /HTTP 400 \(DIGEST_INVALID: /],
  ];
  for (const [what, damage, message] of cases) {
    await writeFile(file, original);
    await damage();
    const site = await startRegistry();
    t.teardown(() => site.stop());
    const up = await runCli(["upload", out, "--registry", site.host], { cwd: dir });
    t.is(up.code, 1, `${what}: ${up.stderr}`);
    t.regex(up.stderr, new RegExp(`upload blob ${blob.digest} of \\S+ to registry ${site.host}: `), what);
    t.regex(up.stderr, message, what);
    t.false(/TypeError|\n\s+at /.test(up.stderr), `${what}: no stack trace`);
    const repo = image.mirror.replace(/:[^/:]+$/, "");
    const tag = image.mirror.replace(/^.*:/, "");
    t.is(
      (await httpRequest(`${site.url}/v2/${repo}/blobs/${blob.digest}`, { method: "HEAD" })).status,
      404,
      what,
    );
    t.is(
      (await httpRequest(`${site.url}/v2/${repo}/manifests/${tag}`, { method: "HEAD" })).status,
      404,
      what,
    );
  }
});
