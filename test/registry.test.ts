// The registry client's read side and its building blocks: endpoints, credentials, challenges,
// manifests and blobs from a real Distribution registry (checked against skopeo), and the
// cases a real registry will not produce on demand, from small servers the tests own.
import test, { type ExecutionContext } from "ava";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { MANIFEST_TYPES } from "../src/oci/mediaTypes.js";
import { basicAuthorization, parseChallenges } from "../src/registry/auth.js";
import { NotFoundError, RegistryClient, type RegistryClientOptions } from "../src/registry/client.js";
import { dockerConfigCredentials, explicitCredentials, readPassword } from "../src/registry/credentials.js";
import { resolveEndpoint } from "../src/registry/endpoint.js";
import { rangeEnd, withDigest } from "../src/registry/upload.js";
import { RegistryStore } from "../src/store/registry.js";
import { InputError, WorkError } from "../src/util/errors.js";
import { makeLayer, pushBlob, seedStandardImages, sha256Digest, type PushedImage } from "./helpers/images.js";
import { freePort } from "./helpers/ports.js";
import { startRegistry, type StartRegistryOptions, type TestRegistry } from "./helpers/registry.js";
import { skopeoInspectRaw } from "./helpers/skopeo.js";
import { selfSignedCert } from "./helpers/keys.js";
import { fakeServer, listenLocal } from "./helpers/http.js";
import { Readable as NodeReadable } from "node:stream";

const FAST_RETRY = { retries: 2, baseDelayMs: 10 };

async function registryFor(t: ExecutionContext, opts?: StartRegistryOptions): Promise<TestRegistry> {
  const registry = await startRegistry(opts);
  t.teardown(() => registry.stop());
  return registry;
}

function clientFor(t: ExecutionContext, registry: string, opts: RegistryClientOptions = {}): RegistryClient {
  const client = new RegistryClient(registry, { retry: FAST_RETRY, ...opts });
  t.teardown(() => client.close());
  return client;
}

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "registry-test-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function allImages(images: Awaited<ReturnType<typeof seedStandardImages>>): PushedImage[] {
  return [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker];
}

// --- endpoints -------------------------------------------------------------------------

test("resolveEndpoint: loopback hosts use HTTP, other bare hosts TLS, URLs say it themselves", (t) => {
  const cases: [string, string, string][] = [
    ["127.0.0.1:5000", "127.0.0.1:5000", "http://127.0.0.1:5000"],
    ["127.3.2.1", "127.3.2.1", "http://127.3.2.1"],
    ["localhost:5000", "localhost:5000", "http://localhost:5000"],
    ["[::1]:5000", "[::1]:5000", "http://[::1]:5000"],
    ["registry.lan:5000", "registry.lan:5000", "https://registry.lan:5000"],
    ["10.0.0.5", "10.0.0.5", "https://10.0.0.5"],
    ["http://10.0.0.5:5000", "10.0.0.5:5000", "http://10.0.0.5:5000"],
    ["https://127.0.0.1:5000/", "127.0.0.1:5000", "https://127.0.0.1:5000"],
    ["docker.io", "docker.io", "https://registry-1.docker.io"],
    ["index.docker.io", "docker.io", "https://registry-1.docker.io"],
    ["https://index.docker.io", "docker.io", "https://registry-1.docker.io"],
  ];
  for (const [input, host, baseUrl] of cases) t.deepEqual(resolveEndpoint(input), { host, baseUrl }, input);
  for (const bad of ["ftp://x", "http://x/path", "a b", ""]) {
    t.throws(() => resolveEndpoint(bad), { instanceOf: InputError }, bad);
  }
});

test("parseChallenges reads Basic, Bearer with quoted scopes, and several challenges in one header", (t) => {
  t.deepEqual(parseChallenges('Basic realm="testbed"'), [{ scheme: "basic", params: { realm: "testbed" } }]);
  t.deepEqual(
    parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull repository:c:pull,push",error="insufficient_scope"',
    ),
    [
      {
        scheme: "bearer",
        params: {
          realm: "https://auth.docker.io/token",
          service: "registry.docker.io",
          scope: "repository:a/b:pull repository:c:pull,push",
          error: "insufficient_scope",
        },
      },
    ],
  );
  t.deepEqual(parseChallenges('Basic realm="a", Bearer realm="b",service=svc'), [
    { scheme: "basic", params: { realm: "a" } },
    { scheme: "bearer", params: { realm: "b", service: "svc" } },
  ]);
  t.deepEqual(parseChallenges('Basic realm="quote \\" inside"'), [
    { scheme: "basic", params: { realm: 'quote " inside' } },
  ]);
});

test("withDigest appends to a Location with or without a query; rangeEnd reads upload progress", (t) => {
  t.is(
    withDigest("http://h/v2/a/blobs/uploads/u?_state=x%3D%3D", "sha256:ab"),
    "http://h/v2/a/blobs/uploads/u?_state=x%3D%3D&digest=sha256%3Aab",
  );
  t.is(
    withDigest("http://h/v2/a/blobs/uploads/u", "sha256:ab"),
    "http://h/v2/a/blobs/uploads/u?digest=sha256%3Aab",
  );
  t.is(rangeEnd("0-0"), 0);
  t.is(rangeEnd("0-1048575"), 1048576);
  t.is(rangeEnd("bytes=0-9"), 10);
  t.is(rangeEnd(undefined), undefined);
});

// --- credentials -----------------------------------------------------------------------

/**
 * A fake `docker-credential-test`: answers for one server, says "credentials not found" for
 * others, and records its arguments and stdin so the test can check no secret went through argv.
 */
async function writeCredentialHelper(dir: string): Promise<void> {
  const script = `#!/bin/sh
echo "$@" >> "${dir}/helper-argv.log"
read server
echo "$server" >> "${dir}/helper-stdin.log"
if [ "$1" = "get" ] && [ "$server" = "helped.example:5000" ]; then
  printf '{"ServerURL":"%s","Username":"helper-user","Secret":"helper-secret"}' "$server"
  exit 0
fi
if [ "$server" = "https://index.docker.io/v1/" ]; then
  printf '{"Username":"<token>","Secret":"hub-identity-token"}'
  exit 0
fi
echo "credentials not found in native keychain"
exit 1
`;
  await writeFile(path.join(dir, "docker-credential-test"), script);
  await chmod(path.join(dir, "docker-credential-test"), 0o755);
}

test("credentials come from credHelpers, credsStore and auths in DOCKER_CONFIG, secrets only via stdin", async (t) => {
  const dir = await tempDir(t);
  await writeCredentialHelper(dir);
  await writeFile(
    path.join(dir, "config.json"),
    JSON.stringify({
      credHelpers: { "helped.example:5000": "test", "docker.io": "test" },
      auths: {
        "plain.example": { auth: Buffer.from("alice:pa:ss").toString("base64") },
        "https://url.example:5000/v1/": { username: "bob", password: "bob-pass" },
        "token.example": { identitytoken: "refresh-me" },
        "helped.example:5000": { auth: Buffer.from("ignored:ignored").toString("base64") },
      },
    }),
  );
  const env = { ...process.env, PATH: `${dir}:${process.env.PATH ?? ""}`, DOCKER_CONFIG: dir };
  const lookup = dockerConfigCredentials({ env });
  t.deepEqual(await lookup("helped.example:5000"), { username: "helper-user", password: "helper-secret" });
  t.deepEqual(await lookup("docker.io"), { identityToken: "hub-identity-token" });
  t.deepEqual(await lookup("plain.example"), { username: "alice", password: "pa:ss" });
  t.deepEqual(await lookup("url.example:5000"), { username: "bob", password: "bob-pass" });
  t.deepEqual(await lookup("token.example"), { identityToken: "refresh-me" });
  t.is(await lookup("unknown.example"), undefined);

  t.deepEqual((await readFile(path.join(dir, "helper-argv.log"), "utf8")).trim().split("\n"), ["get", "get"]);
  t.deepEqual((await readFile(path.join(dir, "helper-stdin.log"), "utf8")).trim().split("\n"), [
    "helped.example:5000",
    "https://index.docker.io/v1/",
  ]);

  // credsStore covers hosts without a helper of their own; "not found" falls back to auths.
  await writeFile(
    path.join(dir, "config.json"),
    JSON.stringify({ credsStore: "test", auths: { "plain.example": { username: "carol", password: "c" } } }),
  );
  const viaStore = dockerConfigCredentials({ env });
  t.deepEqual(await viaStore("helped.example:5000"), { username: "helper-user", password: "helper-secret" });
  t.deepEqual(await viaStore("plain.example"), { username: "carol", password: "c" });

  const explicit = explicitCredentials("plain.example", { username: "dave", password: "d" }, viaStore);
  t.deepEqual(await explicit("plain.example"), { username: "dave", password: "d" });
  t.deepEqual(await explicit("helped.example:5000"), { username: "helper-user", password: "helper-secret" });
});

test("a broken helper or config.json gives a clear error; no config at all means no credentials", async (t) => {
  const dir = await tempDir(t);
  const env = { ...process.env, PATH: `${dir}:${process.env.PATH ?? ""}` };
  t.is(await dockerConfigCredentials({ env, configDir: path.join(dir, "absent") })("x.example"), undefined);

  await writeFile(path.join(dir, "config.json"), JSON.stringify({ credsStore: "missing" }));
  const err = await t.throwsAsync(dockerConfigCredentials({ env, configDir: dir })("x.example"), {
    instanceOf: WorkError,
  });
  t.regex(err.message, /cannot run credential helper docker-credential-missing: ENOENT/);

  await writeFile(path.join(dir, "config.json"), "{ not json");
  const bad = await t.throwsAsync(dockerConfigCredentials({ env, configDir: dir })("x.example"), {
    instanceOf: InputError,
  });
  t.regex(bad.message, /config\.json is not valid JSON/);
});

test("readPassword takes stdin without its trailing newline and refuses an empty one", async (t) => {
  t.is(await readPassword(NodeReadable.from([Buffer.from("s3cret\n")])), "s3cret");
  await t.throwsAsync(readPassword(NodeReadable.from([Buffer.from("\n")])), { instanceOf: InputError });
});

// --- reading from a real registry ------------------------------------------------------

test("getManifest returns exactly the bytes skopeo sees, for indexes, lists, single images and children", async (t) => {
  const registry = await registryFor(t);
  const images = await seedStandardImages(registry);
  const client = clientFor(t, registry.host);
  for (const image of allImages(images)) {
    const m = await client.getManifest(image.repo, image.tag);
    const raw = await skopeoInspectRaw(image.ref);
    t.true(m.bytes.equals(raw), image.ref);
    t.true(m.bytes.equals(image.manifestBytes), image.ref);
    t.is(m.digest, image.digest);
    t.is(m.mediaType, image.mediaType);
    t.deepEqual(await client.headManifest(image.repo, image.tag), {
      digest: image.digest,
      mediaType: image.mediaType,
      size: image.manifestBytes.length,
    });
    for (const platform of image.platforms) {
      const child = await client.getManifest(image.repo, platform.digest);
      t.is(child.digest, platform.digest);
      t.is(child.mediaType, platform.mediaType);
      t.true(child.bytes.equals(await skopeoInspectRaw(`${registry.host}/${image.repo}@${platform.digest}`)));
    }
  }
  t.true(MANIFEST_TYPES.length === 4);
});

test("blob streams hash to their digests, and a read from an offset gives the tail", async (t) => {
  const registry = await registryFor(t);
  const images = await seedStandardImages(registry);
  const client = clientFor(t, registry.host);
  for (const image of allImages(images)) {
    for (const blob of image.blobs) {
      const bytes = await readAll(await client.getBlob(image.repo, blob.digest));
      t.is(bytes.length, blob.size);
      t.is(sha256Digest(bytes), blob.digest);
      t.is(await client.headBlob(image.repo, blob.digest), blob.size);
    }
  }
  const layer = makeLayer("testbed-base@linux/amd64");
  if (!("bytes" in layer)) throw new Error("small layers are in memory");
  const tail = await readAll(await client.getBlob(images.singleOci.repo, layer.digest, 1000));
  t.true(tail.equals(layer.bytes.subarray(1000)));
  t.is(await client.headBlob(images.singleOci.repo, sha256Digest("absent")), undefined);
});

test("a blob stream its reader drops lets go of its connection: the next download on the one socket arrives whole", async (t) => {
  const registry = await registryFor(t);
  // Larger than every stream buffer on the way, so the drop comes mid-transfer.
  const bytes = Buffer.alloc(8 << 20, "blob body path ");
  const blob = await pushBlob(registry, "body/path", bytes);
  const client = clientFor(t, registry.host, { maxSockets: 1 });
  const dropped = await client.getBlob("body/path", blob.digest, 0, "body/path", blob.size);
  const first = await dropped[Symbol.asyncIterator]().next();
  t.false(first.done);
  t.true((first.value as Buffer).equals(bytes.subarray(0, (first.value as Buffer).length)));
  dropped.destroy();
  t.true(dropped.destroyed);
  // Were the dropped response still holding the only socket, this would wait for its idle timeout.
  const again = await readAll(await client.getBlob("body/path", blob.digest, 0, "body/path", blob.size));
  t.is(again.length, bytes.length);
  t.is(sha256Digest(again), blob.digest);
});

test("the store checks blob digests and answers hasManifest and hasBlob", async (t) => {
  const registry = await registryFor(t);
  const images = await seedStandardImages(registry);
  const store = new RegistryStore(clientFor(t, registry.host));
  const image = images.singleDocker;
  const loc = { repository: image.repo, reference: image.tag, name: image.ref };
  const blob = image.blobs[0]!;
  const desc = { mediaType: "application/octet-stream", digest: blob.digest, size: blob.size };
  t.is(sha256Digest(await readAll(await store.openBlob(loc, desc))), blob.digest);
  t.true(await store.hasBlob(loc, desc));
  t.true(await store.hasManifest(loc, image.digest));
  t.false(await store.hasManifest(loc, sha256Digest("no such manifest")));
  t.deepEqual(store.knownHolders(blob.digest), [image.repo]);

  // A descriptor that disagrees with the bytes: every byte arrives, then the stream fails.
  const wrongSize = { ...desc, size: blob.size + 1 };
  const err = await t.throwsAsync(store.openBlob(loc, wrongSize).then(readAll), { instanceOf: WorkError });
  t.is(
    err.message,
    `blob ${blob.digest} of ${image.ref} from registry ${registry.host}: ${blob.size} bytes, its descriptor says ${blob.size + 1}`,
  );
});

test("unknown repository, unknown tag, unknown digest and unknown blob each say what is missing", async (t) => {
  const registry = await registryFor(t);
  const images = await seedStandardImages(registry);
  const client = clientFor(t, registry.host);
  const h = registry.host;

  const noRepo = await t.throwsAsync(client.getManifest("testbed/nothing-here", "v1"), {
    instanceOf: NotFoundError,
  });
  t.is(
    noRepo.message,
    `image ${h}/testbed/nothing-here:v1 not found: repository testbed/nothing-here does not exist at ${h} (NAME_UNKNOWN)`,
  );
  t.is(noRepo.kind, "NAME_UNKNOWN");

  const noTag = await t.throwsAsync(client.getManifest(images.ociIndex.repo, "v9"), {
    instanceOf: NotFoundError,
  });
  t.is(
    noTag.message,
    `image ${h}/testbed/multi-oci:v9 not found: manifest unknown for tag v9 in repository testbed/multi-oci at ${h}`,
  );
  t.is(noTag.kind, "MANIFEST_UNKNOWN");

  const digest = sha256Digest("no such manifest");
  const noDigest = await t.throwsAsync(
    client.getManifest(images.ociIndex.repo, digest, "docker.io/library/x@" + digest),
  );
  t.is(
    noDigest.message,
    `image docker.io/library/x@${digest} not found: manifest unknown for digest ${digest} in repository testbed/multi-oci at ${h}`,
  );

  t.is(await client.headManifest(images.ociIndex.repo, "v9"), undefined);

  const noBlob = await t.throwsAsync(client.getBlob(images.ociIndex.repo, digest, 0, "img:1"), {
    instanceOf: NotFoundError,
  });
  t.is(
    noBlob.message,
    `blob ${digest} of image img:1 not found in repository testbed/multi-oci at ${h} (BLOB_UNKNOWN)`,
  );
});

test("an unreachable registry names the URL and the cause", async (t) => {
  const port = await freePort();
  const client = clientFor(t, `127.0.0.1:${port}`, { retry: { retries: 1, baseDelayMs: 5 } });
  const err = await t.throwsAsync(client.ping(), { instanceOf: WorkError });
  t.regex(
    err.message,
    new RegExp(`^cannot reach registry 127\\.0\\.0\\.1:${port}: GET http://127\\.0\\.0\\.1:${port}/v2/: `),
  );
  t.regex(err.message, /ECONNREFUSED/);
  t.regex(err.message, /gave up after 2 attempts/);
  const get = await t.throwsAsync(client.getManifest("a/b", "v1"), { instanceOf: WorkError });
  t.regex(
    get.message,
    /^get manifest of 127\.0\.0\.1:\d+\/a\/b:v1 from registry 127\.0\.0\.1:\d+: .*ECONNREFUSED/,
  );
});

test("ping passes on an open registry and on one with basic auth and right credentials", async (t) => {
  const open = await registryFor(t);
  await t.notThrowsAsync(clientFor(t, open.host).ping());
  const creds = { username: "alice", password: "wonder-land-99" };
  const locked = await registryFor(t, { auth: creds });
  await t.notThrowsAsync(clientFor(t, locked.host, { credentials: creds }).ping());
  const anonymous = await t.throwsAsync(clientFor(t, locked.host).ping(), { instanceOf: WorkError });
  t.is(
    anonymous.message,
    `registry ${locked.host} requires authentication; log in with "docker login ${locked.host}" or pass --username and --password-stdin`,
  );
  const wrong = { username: "alice", password: "not-the-password" };
  const refused = await t.throwsAsync(clientFor(t, locked.host, { credentials: wrong }).ping(), {
    instanceOf: WorkError,
  });
  t.is(refused.message, `registry ${locked.host} refused the credentials of user "alice" (401)`);
  t.false(refused.message.includes(wrong.password));
});

// --- what a real registry will not do on demand ----------------------------------------

const BLOB = Buffer.from("blob bytes from the storage backend, ".repeat(200));
const BLOB_DIGEST = sha256Digest(BLOB);
const CREDS = { username: "alice", password: "p4ss-word-never-shown" };

test("a blob redirect to another origin is followed without the registry's Authorization", async (t) => {
  const storage = await fakeServer(t, (req, res) => {
    res.writeHead(200, { "content-length": BLOB.length, "content-type": "application/octet-stream" });
    res.end(BLOB);
  });
  const registry = await fakeServer(t, (req, res) => {
    if (req.headers.authorization !== basicAuthorization(CREDS.username, CREDS.password)) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="fake"' }).end();
      return;
    }
    res.writeHead(307, { location: `${storage.url}/signed/blob?sig=abc` }).end();
  });
  const client = clientFor(t, registry.host, { credentials: CREDS });
  const bytes = await readAll(await client.getBlob("a/b", BLOB_DIGEST));
  t.is(sha256Digest(bytes), BLOB_DIGEST);
  t.is(storage.requests.length, 1);
  t.is(storage.requests[0]!.path, "/signed/blob?sig=abc");
  t.is(storage.requests[0]!.headers.authorization, undefined);
  t.is(registry.requests.at(-1)!.headers.authorization, basicAuthorization(CREDS.username, CREDS.password));
});

test("a server that ignores Range still yields only the bytes from the offset", async (t) => {
  const registry = await fakeServer(t, (_req, res) => {
    res.writeHead(200, { "content-length": BLOB.length }).end(BLOB);
  });
  const client = clientFor(t, registry.host);
  const tail = await readAll(await client.getBlob("a/b", BLOB_DIGEST, 1234));
  t.true(tail.equals(BLOB.subarray(1234)));
  t.is(registry.requests[0]!.headers.range, "bytes=1234-");
});

test("a blob that keeps arriving short is a stream error, not a short stream", async (t) => {
  const registry = await fakeServer(t, (_req, res) => {
    res.writeHead(200, { "content-length": BLOB.length });
    res.write(BLOB.subarray(0, 100));
    setImmediate(() => res.socket?.destroy());
  });
  const client = clientFor(t, registry.host, { retry: { retries: 2, baseDelayMs: 5 } });
  const stream = await client.getBlob("a/b", BLOB_DIGEST);
  const err = await t.throwsAsync(readAll(stream), { instanceOf: WorkError });
  t.regex(err.message, new RegExp(`^download blob ${BLOB_DIGEST} of .*gave up after 3 attempts`));
  t.is(registry.requests.length, 3);
  t.deepEqual(
    registry.requests.map((r) => r.headers.range),
    [undefined, "bytes=100-", "bytes=100-"],
  );
});

test("schema 1 manifests are refused, and a digest mismatch names both digests", async (t) => {
  const schema1 = Buffer.from(JSON.stringify({ schemaVersion: 1, name: "a/b", tag: "old", fsLayers: [] }));
  const fake = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}');
  const registry = await fakeServer(t, (req, res) => {
    if (req.url?.includes("/manifests/old")) {
      res.writeHead(200, { "content-type": "application/vnd.docker.distribution.manifest.v1+prettyjws" });
      res.end(schema1);
    } else {
      res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json" }).end(fake);
    }
  });
  const client = clientFor(t, registry.host);
  const old = await t.throwsAsync(client.getManifest("a/b", "old"), { instanceOf: WorkError });
  t.regex(
    old.message,
    /schema 1 manifests are deprecated; push the image again with a current docker\/buildx/,
  );
  t.regex(old.message, new RegExp(`image ${registry.host}/a/b:old`));

  const asked = sha256Digest("what we asked for");
  const err = await t.throwsAsync(client.getManifest("a/b", asked), { instanceOf: WorkError });
  t.is(
    err.message,
    `manifest of image ${registry.host}/a/b@${asked} from ${registry.host} has digest ${sha256Digest(fake)}, not the ${asked} asked for`,
  );
});

// --- TLS --------------------------------------------------------------------------------

test("TLS: an untrusted certificate is refused with advice; --insecure and --ca-file each accept it", async (t) => {
  const dir = await tempDir(t);
  const { key, cert, certFile } = await selfSignedCert(dir);
  const server = https.createServer({ key, cert }, (_req, res) => {
    res.writeHead(200, { "docker-distribution-api-version": "registry/2.0" }).end("{}");
  });
  const url = `https://127.0.0.1:${await listenLocal(t, server)}`;

  const err = await t.throwsAsync(clientFor(t, url).ping(), { instanceOf: WorkError });
  t.regex(
    err.message,
    new RegExp(
      `^cannot reach registry 127\\.0\\.0\\.1:\\d+: GET ${url}/v2/: TLS certificate not trusted \\(`,
    ),
  );
  t.regex(err.message, /; add its CA with --ca-file, or use --insecure$/);
  t.notRegex(err.message, /gave up/, "a certificate problem is not retried");

  await t.notThrowsAsync(clientFor(t, url, { insecure: true }).ping());
  await t.notThrowsAsync(clientFor(t, url, { caFile: certFile }).ping());
  const missing = path.join(dir, "absent.pem");
  t.throws(() => clientFor(t, url, { caFile: missing }), {
    instanceOf: InputError,
    message: `--ca-file ${missing}: no such file`,
  });
});

test("TLS: https:// to a plain HTTP registry says so", async (t) => {
  const registry = await fakeServer(t, (_req, res) => res.writeHead(200).end("{}"));
  const err = await t.throwsAsync(clientFor(t, `https://${registry.host}`).ping(), { instanceOf: WorkError });
  t.regex(err.message, /TLS handshake failed \(EPROTO\); is it plain HTTP\? then write http:\/\/$/);
});
