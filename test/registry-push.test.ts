// Pushing through the registry store: images copied from one real registry into another with
// basic auth, small blobs in one PUT, a large one in chunks, shared blobs mounted rather than
// sent again (counted at a proxy), and the result read back by skopeo. Also --mirror reads.
import test, { type ExecutionContext } from "ava";
import { rm } from "node:fs/promises";
import path from "node:path";
import { inspect } from "node:util";
import { isIndex } from "../src/oci/mediaTypes.js";
import type { Descriptor, ImageIndex, ImageManifest, RawManifest } from "../src/oci/types.js";
import { NotFoundError, RegistryClient, type RegistryClientOptions } from "../src/registry/client.js";
import { MirroredSource, RegistryStore } from "../src/store/registry.js";
import type { ImageLocation, ImageSource, ImageTarget } from "../src/store/types.js";
import { WorkError } from "../src/util/errors.js";
import { CopyEngine } from "../src/copy/engine.js";
import pLimit from "p-limit";
import { startFaultProxy, type FaultProxy } from "./helpers/faultProxy.js";
import {
  makeLayer,
  pushImage,
  seedStandardImages,
  sha256Digest,
  type PushedImage,
} from "./helpers/images.js";
import { startRegistry, type StartRegistryOptions, type TestRegistry } from "./helpers/registry.js";
import { skopeoInspectRaw } from "./helpers/skopeo.js";

const CREDS = { username: "pusher", password: "Pu5h-it-real-good" };
const MiB = 1 << 20;

async function registryFor(t: ExecutionContext, opts?: StartRegistryOptions): Promise<TestRegistry> {
  const registry = await startRegistry(opts);
  t.teardown(() => registry.stop());
  return registry;
}

async function proxyFor(t: ExecutionContext, registry: TestRegistry): Promise<FaultProxy> {
  const proxy = await startFaultProxy(registry.url);
  t.teardown(() => proxy.stop());
  return proxy;
}

function storeFor(t: ExecutionContext, host: string, opts: RegistryClientOptions = {}): RegistryStore {
  const client = new RegistryClient(host, { retry: { retries: 3, baseDelayMs: 10 }, ...opts });
  t.teardown(() => client.close());
  return new RegistryStore(client);
}

function loc(image: PushedImage, reference = image.tag): ImageLocation {
  return { repository: image.repo, reference, name: image.ref };
}

/** A minimal copy engine: children first, blobs before the manifests that name them. */
async function copyImage(
  src: ImageSource,
  dst: ImageTarget,
  from: ImageLocation,
  to: ImageLocation,
  onBytes?: (n: number) => void,
): Promise<RawManifest> {
  const top = await src.getManifest(from);
  if (isIndex(top.mediaType)) {
    for (const child of (JSON.parse(top.bytes.toString()) as ImageIndex).manifests) {
      const m = await src.getManifest({ ...from, reference: child.digest });
      await copyBlobs(src, dst, m, from, to, onBytes);
      await dst.putManifest({ ...to, reference: child.digest }, m, "child");
    }
  } else {
    await copyBlobs(src, dst, top, from, to, onBytes);
  }
  await dst.putManifest(to, top, "image");
  return top;
}

async function copyBlobs(
  src: ImageSource,
  dst: ImageTarget,
  m: RawManifest,
  from: ImageLocation,
  to: ImageLocation,
  onBytes?: (n: number) => void,
): Promise<void> {
  const manifest = JSON.parse(m.bytes.toString()) as ImageManifest;
  for (const desc of [manifest.config, ...manifest.layers]) {
    await dst.putBlob(to, desc, (offset) => src.openBlob(from, desc, offset), onBytes);
  }
}

function blobsOf(m: RawManifest): Descriptor[] {
  const manifest = JSON.parse(m.bytes.toString()) as ImageManifest;
  return [manifest.config, ...manifest.layers];
}

test("images copied into a registry with basic auth: exact manifests, chunked large blob, mounts", async (t) => {
  const source = await registryFor(t);
  const images = await seedStandardImages(source);
  const big = await pushImage(source, "testbed/big", "v1", {
    kind: "single",
    layers: ["big-app", { seed: "big-layer", sizeBytes: 80_000_000, samePerPlatform: true }],
    label: "big",
  });
  const target = await registryFor(t, { auth: CREDS });
  const proxy = await proxyFor(t, target);
  const src = storeFor(t, source.host);
  const dst = storeFor(t, proxy.host, {
    credentials: CREDS,
    monolithicMaxBytes: 8 * MiB,
    chunkBytes: 16 * MiB,
  });

  let progress = 0;
  const started = Date.now();
  const all = [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker, big];
  for (const image of all) await copyImage(src, dst, loc(image), loc(image), (n) => (progress += n));
  t.log(`copied ${all.length} images (80 MB layer included) in ${Date.now() - started} ms`);

  for (const image of all) {
    const raw = await skopeoInspectRaw(`${target.host}/${image.repo}:${image.tag}`, { creds: CREDS });
    t.true(raw.equals(image.manifestBytes), image.ref);
    for (const platform of image.platforms) {
      const child = await skopeoInspectRaw(`${target.host}/${image.repo}@${platform.digest}`, {
        creds: CREDS,
      });
      t.is(sha256Digest(child), platform.digest);
    }
  }

  // The 80 MB layer went in 16 MiB PATCHes (5), the only blob above the 8 MiB threshold.
  const bigLayer = big.blobs.find((b) => b.size === 80_000_000 || b.size > 8 * MiB)!;
  t.is(proxy.count("PATCH", /\/v2\/testbed\/big\/blobs\/uploads\//), Math.ceil(bigLayer.size / (16 * MiB)));
  t.is(proxy.count("PATCH", /./), 5);
  t.is(proxy.count("PUT", new RegExp(`digest=${encodeURIComponent(bigLayer.digest)}`)), 1);

  // Every distinct blob was sent once; a blob shared by several repositories was mounted.
  const distinct = new Map(all.flatMap((i) => i.blobs).map((b) => [b.digest, b.size]));
  t.is(
    progress,
    [...distinct.values()].reduce((a, b) => a + b, 0),
  );
  const sharedBase = makeLayer("testbed-base@linux/amd64").digest;
  t.is(proxy.count("PUT", new RegExp(`digest=${encodeURIComponent(sharedBase)}`)), 1);
  t.is(proxy.count("POST", new RegExp(`mount=${encodeURIComponent(sharedBase)}`)), 3);
  for (const digest of distinct.keys()) {
    t.is(proxy.count("PUT", new RegExp(`digest=${encodeURIComponent(digest)}`)), 1, digest);
  }
  for (const image of [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker]) {
    t.truthy(await dst.client.headBlob(image.repo, sharedBase), image.repo);
  }

  // A second copy moves no blob: every one is found by HEAD.
  const puts = proxy.count("PUT", /digest=/);
  for (const image of all) await copyImage(src, dst, loc(image), loc(image));
  t.is(proxy.count("PUT", /digest=/), puts);
  t.is(proxy.count("PATCH", /./), 5);
});

test("pushing with wrong or missing credentials fails with a message that names the user, not the password", async (t) => {
  const source = await registryFor(t);
  const image = (await seedStandardImages(source)).singleOci;
  const target = await registryFor(t, { auth: CREDS });
  const src = storeFor(t, source.host);
  const wrong = { username: "pusher", password: "Wr0ng-Secret-Value" };
  const err = await t.throwsAsync(
    copyImage(src, storeFor(t, target.host, { credentials: wrong }), loc(image), loc(image)),
    {
      instanceOf: WorkError,
    },
  );
  t.is(err.message, `registry ${target.host} refused the credentials of user "pusher" (401)`);
  const basic = Buffer.from(`${wrong.username}:${wrong.password}`).toString("base64");
  for (const text of [err.message, String(err.stack), inspect(err, { depth: 20, showHidden: true })]) {
    t.false(text.includes(wrong.password));
    t.false(text.includes(basic));
  }

  const none = await t.throwsAsync(copyImage(src, storeFor(t, target.host), loc(image), loc(image)), {
    instanceOf: WorkError,
  });
  t.regex(
    none.message,
    new RegExp(`^registry ${target.host} requires authentication for repository testbed/single-oci`),
  );
  t.regex(none.message, /docker login .* --username and --password-stdin$/);
});

test("a manifest whose blobs are missing is refused with the registry's reason", async (t) => {
  const source = await registryFor(t);
  const image = (await seedStandardImages(source)).singleOci;
  const target = await registryFor(t);
  const src = storeFor(t, source.host);
  const dst = storeFor(t, target.host);
  const manifest = await src.getManifest(loc(image));
  const err = await t.throwsAsync(dst.putManifest(loc(image), manifest), { instanceOf: WorkError });
  t.regex(
    err.message,
    new RegExp(`^push manifest ${manifest.digest} of ${image.ref} to registry ${target.host}: HTTP 400`),
  );
  t.regex(err.message, /MANIFEST_BLOB_UNKNOWN/);
});

test("--mirror: the mirror serves what it has, the origin the rest, blobs come from where the manifest came", async (t) => {
  const origin = await registryFor(t);
  const images = await seedStandardImages(origin);
  const mirror = await registryFor(t);
  // The same spec gives the same bytes: the mirror holds an identical copy of one image.
  const mirrored = await pushImage(mirror, "testbed/single-oci", "v1", {
    kind: "single",
    format: "oci",
    layers: ["testbed-base", "single-oci-app"],
    label: "single-oci",
  });
  t.is(mirrored.digest, images.singleOci.digest);
  const originProxy = await proxyFor(t, origin);
  const mirrorProxy = await proxyFor(t, mirror);
  const source = new MirroredSource(storeFor(t, mirrorProxy.host), storeFor(t, originProxy.host));
  const target = storeFor(t, (await registryFor(t)).host);

  for (const image of [images.singleOci, images.ociIndex]) {
    const top = await copyImage(source, target, loc(image), loc(image));
    t.is(top.digest, image.digest);
  }
  t.is(source.sourceOf(images.singleOci.repo), source.mirror);
  t.is(source.sourceOf(images.ociIndex.repo), source.origin);
  t.is(originProxy.count("*", /\/v2\/testbed\/single-oci\//), 0);
  t.is(mirrorProxy.count("GET", /\/v2\/testbed\/single-oci\/blobs\//), images.singleOci.blobs.length);
  t.is(mirrorProxy.count("GET", /\/v2\/testbed\/multi-oci\/manifests\/v1$/), 1);
  t.is(mirrorProxy.count("GET", /\/v2\/testbed\/multi-oci\/blobs\//), 0);
  t.true(originProxy.count("GET", /\/v2\/testbed\/multi-oci\/blobs\//) > 0);

  // A blob the mirror lost comes from the origin.
  const app = images.singleOci.blobs.at(-1)!;
  const layerLink = path.join(
    mirror.storageDir,
    "docker/registry/v2/repositories/testbed/single-oci/_layers/sha256",
    app.digest.slice("sha256:".length),
  );
  await rm(layerLink, { recursive: true });
  const desc = { mediaType: "application/octet-stream", digest: app.digest, size: app.size };
  const before = originProxy.count("GET", /\/blobs\//);
  const stream = await source.openBlob(loc(images.singleOci), desc);
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  t.is(sha256Digest(Buffer.concat(chunks)), app.digest);
  t.is(originProxy.count("GET", /\/blobs\//), before + 1);

  // An image neither has is the origin's "not found".
  const err = await t.throwsAsync(
    source.getManifest({ repository: "testbed/none", reference: "v1", name: "x/none:v1" }),
    {
      instanceOf: NotFoundError,
    },
  );
  t.regex(
    err.message,
    new RegExp(`^image x/none:v1 not found: repository testbed/none does not exist at ${originProxy.host}`),
  );
  t.is(blobsOf(await source.getManifest(loc(images.singleOci))).length, images.singleOci.blobs.length);
});

test("connections are kept alive and reused; a mount the registry cannot do is cancelled", async (t) => {
  const registry = await registryFor(t);
  const images = await seedStandardImages(registry);
  const proxy = await proxyFor(t, registry);
  const client = storeFor(t, proxy.host).client;
  for (const image of [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker]) {
    await client.getManifest(image.repo, image.tag);
    for (const blob of image.blobs) {
      for await (const _ of await client.getBlob(image.repo, blob.digest)) void _;
    }
  }
  t.true(proxy.requests.length > 20);
  t.is(proxy.connections(), 1, "every request went over one keep-alive connection");

  // testbed/single-oci lacks the Docker image's own layer: the registry opens an upload instead.
  const only = images.singleDocker.blobs.at(-1)!.digest;
  t.false(await client.mountBlob("testbed/elsewhere", only, images.singleOci.repo));
  t.is(proxy.count("POST", /\/v2\/testbed\/elsewhere\/blobs\/uploads\/\?mount=/), 1);
  t.is(proxy.count("DELETE", /\/v2\/testbed\/elsewhere\/blobs\/uploads\//), 1);
  t.true(await client.mountBlob("testbed/elsewhere", only, images.singleDocker.repo));
  t.is(await client.headBlob("testbed/elsewhere", only), images.singleDocker.blobs.at(-1)!.size);
});

test("images copied at once by the engine send each shared blob once: the second copy waits and mounts", async (t) => {
  const source = await registryFor(t);
  const images = await seedStandardImages(source);
  // Both platforms of this index use the same 8 MB layer.
  const twin = await pushImage(source, "testbed/twin", "v1", {
    kind: "oci-index",
    layers: [{ seed: "twin-layer", sizeBytes: 8_000_000, samePerPlatform: true }, "twin-app"],
    label: "twin",
  });
  const target = await registryFor(t);
  const proxy = await proxyFor(t, target);
  const src = storeFor(t, source.host);
  const dst = storeFor(t, proxy.host);
  const all = [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker, twin];
  let moved = 0;
  const engine = new CopyEngine({
    blobLimit: pLimit(8),
    events: { onBytes: (_n, bytes) => (moved += bytes) },
  });
  const copied = await Promise.all(
    all.map((image) =>
      engine.copy({
        source: src,
        target: dst,
        from: loc(image),
        to: loc(image),
        platforms: ["linux/amd64", "linux/arm64"],
        allowMissingPlatforms: true,
      }),
    ),
  );
  t.deepEqual(
    copied.map((c) => c.digest),
    all.map((i) => i.digest),
  );
  const distinct = new Map(all.flatMap((i) => i.blobs).map((b) => [b.digest, b.size]));
  for (const digest of distinct.keys())
    t.is(proxy.count("PUT", new RegExp(`digest=${encodeURIComponent(digest)}`)), 1, `${digest} sent once`);
  t.is(
    moved,
    [...distinct.values()].reduce((a, b) => a + b, 0),
    "bytes sent: each distinct blob once",
  );
  for (const image of all) {
    const raw = await skopeoInspectRaw(`${target.host}/${image.repo}:${image.tag}`);
    t.true(raw.equals(image.manifestBytes), image.ref);
  }
});
