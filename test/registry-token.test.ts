// Bearer token auth against a real Distribution registry configured with `auth: token`, whose
// realm is a token service the test owns (JWTs signed with a key made by openssl, trusted by
// the registry through rootcertbundle): push, pull, mounts, token caching and renewal, refused
// and missing credentials, identity tokens.
import test, { type ExecutionContext } from "ava";
import { setTimeout as sleep } from "node:timers/promises";
import { isIndex } from "../src/oci/mediaTypes.js";
import type { ImageIndex, ImageManifest, RawManifest } from "../src/oci/types.js";
import { RegistryClient, type RegistryClientOptions } from "../src/registry/client.js";
import { RegistryStore } from "../src/store/registry.js";
import type { ImageLocation, ImageSource, ImageTarget } from "../src/store/types.js";
import { WorkError } from "../src/util/errors.js";
import { seedStandardImages, sha256Digest, type PushedImage, type StandardImages } from "./helpers/images.js";
import { startRegistry } from "./helpers/registry.js";
import { skopeoInspectRaw } from "./helpers/skopeo.js";
import {
  startTokenRegistry,
  startTokenServer,
  type TokenRegistry,
  type TokenServer,
  type TokenServerOptions,
} from "./helpers/tokenServer.js";

const CREDS = { username: "tokenuser", password: "T0ken-Secret-Pass" };

interface TokenBed {
  tokens: TokenServer;
  registry: TokenRegistry;
}

async function tokenBed(t: ExecutionContext, opts: Partial<TokenServerOptions> = {}): Promise<TokenBed> {
  const tokens = await startTokenServer({ users: [CREDS], ...opts });
  t.teardown(() => tokens.stop());
  const registry = await startTokenRegistry(tokens);
  t.teardown(() => registry.stop());
  return { tokens, registry };
}

async function seeded(t: ExecutionContext): Promise<{ images: StandardImages; store: RegistryStore }> {
  const source = await startRegistry();
  t.teardown(() => source.stop());
  return { images: await seedStandardImages(source), store: storeFor(t, source.host) };
}

function clientFor(t: ExecutionContext, host: string, opts: RegistryClientOptions = {}): RegistryClient {
  const client = new RegistryClient(host, { retry: { retries: 2, baseDelayMs: 10 }, ...opts });
  t.teardown(() => client.close());
  return client;
}

function storeFor(t: ExecutionContext, host: string, opts: RegistryClientOptions = {}): RegistryStore {
  return new RegistryStore(clientFor(t, host, opts));
}

function loc(image: PushedImage): ImageLocation {
  return { repository: image.repo, reference: image.tag, name: image.ref };
}

async function copyImage(src: ImageSource, dst: ImageTarget, at: ImageLocation): Promise<RawManifest> {
  const top = await src.getManifest(at);
  const manifests = isIndex(top.mediaType)
    ? await Promise.all(
        (JSON.parse(top.bytes.toString()) as ImageIndex).manifests.map((d) =>
          src.getManifest({ ...at, reference: d.digest }),
        ),
      )
    : [top];
  for (const m of manifests) {
    const parsed = JSON.parse(m.bytes.toString()) as ImageManifest;
    for (const desc of [parsed.config, ...parsed.layers]) {
      await dst.putBlob(at, desc, (offset) => src.openBlob(at, desc, offset));
    }
    if (m !== top) await dst.putManifest({ ...at, reference: m.digest }, m, "child");
  }
  await dst.putManifest(at, top, "image");
  return top;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

test("Bearer: images pushed and pulled through a token-auth registry, with one token per scope", async (t) => {
  const { tokens, registry } = await tokenBed(t);
  const { images, store: src } = await seeded(t);
  const dst = storeFor(t, registry.host, { credentials: CREDS });
  for (const image of [images.ociIndex, images.singleDocker]) await copyImage(src, dst, loc(image));

  for (const image of [images.ociIndex, images.singleDocker]) {
    const raw = await skopeoInspectRaw(`${registry.host}/${image.repo}:${image.tag}`, { creds: CREDS });
    t.true(raw.equals(image.manifestBytes), image.ref);
  }
  // The shared base layer was mounted from the first repository: that needs a token for both.
  t.true(
    tokens.requests.some(
      (r) =>
        r.scopes.includes("repository:testbed/single-docker:pull,push") &&
        r.scopes.includes("repository:testbed/multi-oci:pull"),
    ),
    JSON.stringify(tokens.requests.map((r) => r.scopes)),
  );
  t.true(tokens.requests.every((r) => r.status === 200 && r.authenticated && r.account === CREDS.username));

  // Reading back: one token for the pull scope, reused by every later request.
  const reader = clientFor(t, registry.host, { credentials: CREDS });
  const before = tokens.requests.length;
  const image = images.singleDocker;
  const m = await reader.getManifest(image.repo, image.tag);
  t.is(m.digest, image.digest);
  for (const blob of image.blobs) {
    t.is(sha256Digest(await readAll(await reader.getBlob(image.repo, blob.digest))), blob.digest);
  }
  t.is((await reader.getManifest(image.repo, image.tag)).digest, image.digest);
  t.is(tokens.requests.length, before + 1);
  t.deepEqual(tokens.requests.at(-1)!.scopes, ["repository:testbed/single-docker:pull"]);
});

test("Bearer: wrong credentials are refused by the token service, named without the password", async (t) => {
  const { registry } = await tokenBed(t);
  const wrong = { username: "tokenuser", password: "Not-The-Right-One" };
  const client = clientFor(t, registry.host, { credentials: wrong });
  const err = await t.throwsAsync(client.getManifest("testbed/any", "v1"), { instanceOf: WorkError });
  t.is(err.message, `registry ${registry.host} refused the credentials of user "tokenuser" (401)`);
  t.false(err.message.includes(wrong.password));
  const ping = await t.throwsAsync(client.ping(), { instanceOf: WorkError });
  t.is(ping.message, err.message);
});

test("Bearer: anonymous access the registry refuses says how to log in; anonymous pulls work when granted", async (t) => {
  const { registry } = await tokenBed(t);
  const anonymous = clientFor(t, registry.host);
  const err = await t.throwsAsync(anonymous.getManifest("testbed/private", "v1"), { instanceOf: WorkError });
  t.is(
    err.message,
    `registry ${registry.host} refused anonymous access to repository testbed/private (pull) ` +
      `(it does not exist or requires authentication); log in with "docker login ${registry.host}" or pass --username and --password-stdin`,
  );

  const open = await tokenBed(t, { anonymousPull: true });
  const { images, store: src } = await seeded(t);
  await copyImage(src, storeFor(t, open.registry.host, { credentials: CREDS }), loc(images.singleOci));
  const reader = clientFor(t, open.registry.host);
  t.is((await reader.getManifest(images.singleOci.repo, "v1")).digest, images.singleOci.digest);
  t.false(open.tokens.requests.at(-1)!.authenticated);
  const push = await t.throwsAsync(
    reader.putManifest(images.singleOci.repo, "v2", await reader.getManifest(images.singleOci.repo, "v1")),
    { instanceOf: WorkError },
  );
  t.regex(
    push.message,
    /^registry .* refused anonymous access to repository testbed\/single-oci \(pull, push\)/,
  );
});

test("Bearer: an access_token that expires is renewed; an identity token is exchanged by POST", async (t) => {
  const { tokens, registry } = await tokenBed(t, {
    expiresInSeconds: 2,
    accessTokenField: true,
    refreshTokens: { "refresh-abc": CREDS.username },
  });
  const { images, store: src } = await seeded(t);
  await copyImage(src, storeFor(t, registry.host, { credentials: CREDS }), loc(images.singleOci));

  const client = clientFor(t, registry.host, { credentials: { identityToken: "refresh-abc" } });
  const count = () => tokens.requests.filter((r) => r.method === "POST").length;
  t.is((await client.getManifest(images.singleOci.repo, "v1")).digest, images.singleOci.digest);
  t.is(count(), 1);
  t.is((await client.getManifest(images.singleOci.repo, "v1")).digest, images.singleOci.digest);
  t.is(count(), 1, "cached while valid");
  // 2 s tokens are renewed after 1 s, ahead of their deadline.
  await sleep(1100);
  t.is((await client.getManifest(images.singleOci.repo, "v1")).digest, images.singleOci.digest);
  t.is(count(), 2, "renewed after expiry");
  t.true(
    tokens.requests
      .filter((r) => r.method === "POST")
      .every((r) => r.authenticated && r.account === CREDS.username),
  );

  const bad = clientFor(t, registry.host, { credentials: { identityToken: "stale" } });
  const err = await t.throwsAsync(bad.getManifest(images.singleOci.repo, "v1"), { instanceOf: WorkError });
  t.is(err.message, `registry ${registry.host} refused the credentials of the identity token (401)`);
});
