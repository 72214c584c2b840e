// Faults injected by a proxy between the client and a real registry: 503 and 429 (with
// Retry-After), connections dropped in the middle of a response or of an upload, a byte
// flipped on the way. Transient faults must end in success, damage in a clear error.
import test, { type ExecutionContext } from "ava";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { inspect } from "node:util";
import { RegistryClient, type RegistryClientOptions } from "../src/registry/client.js";
import { RegistryStore } from "../src/store/registry.js";
import { WorkError } from "../src/util/errors.js";
import { startFaultProxy, type FaultProxy } from "./helpers/faultProxy.js";
import { seedStandardImages, sha256Digest, type StandardImages } from "./helpers/images.js";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";

const KiB = 1024;
const MiB = 1024 * KiB;

interface Bed {
  registry: TestRegistry;
  proxy: FaultProxy;
  images: StandardImages;
  client: RegistryClient;
}

async function bed(t: ExecutionContext, opts: RegistryClientOptions = {}): Promise<Bed> {
  const registry = await startRegistry();
  t.teardown(() => registry.stop());
  const images = await seedStandardImages(registry);
  const proxy = await startFaultProxy(registry.url);
  t.teardown(() => proxy.stop());
  const client = new RegistryClient(proxy.host, { retry: { retries: 3, baseDelayMs: 10 }, ...opts });
  t.teardown(() => client.close());
  return { registry, proxy, images, client };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Opens `data` from an offset, in 64 KiB pieces as a file or socket would deliver it. */
function opener(data: Buffer, opened: number[] = []): (offset: number) => Promise<Readable> {
  return (offset) => {
    opened.push(offset);
    return Promise.resolve(
      Readable.from(
        (function* () {
          for (let i = offset; i < data.length; i += 64 * KiB)
            yield data.subarray(i, Math.min(i + 64 * KiB, data.length));
        })(),
        { objectMode: false },
      ),
    );
  };
}

function blobDesc(data: Buffer) {
  return { mediaType: "application/octet-stream", digest: sha256Digest(data), size: data.length };
}

const UPLOADS = /\/v2\/fault\/upload\/blobs\/uploads\//;

test("503 with Retry-After and 429 are retried until the manifest arrives", async (t) => {
  const { proxy, images, client } = await bed(t);
  const image = images.ociIndex;
  const path = new RegExp(`/v2/${image.repo}/manifests/${image.tag}$`);
  proxy.addRule({
    method: "GET",
    path,
    times: 2,
    fault: { kind: "status", status: 503, retryAfterSeconds: 0 },
  });
  const m = await client.getManifest(image.repo, image.tag);
  t.true(m.bytes.equals(image.manifestBytes));
  t.is(proxy.count("GET", path), 3);

  proxy.addRule({ method: "GET", path, fault: { kind: "status", status: 429, retryAfterSeconds: 1 } });
  const started = Date.now();
  t.is((await client.getManifest(image.repo, image.tag)).digest, image.digest);
  t.true(Date.now() - started >= 900, "waited as Retry-After asked");
  t.is(proxy.count("GET", path), 5);
});

test("a registry that stays unavailable fails with the status and the number of attempts", async (t) => {
  const { proxy, images, client } = await bed(t);
  const image = images.singleOci;
  proxy.addRule({ path: /manifests/, times: 100, fault: { kind: "status", status: 503 } });
  const err = await t.throwsAsync(client.getManifest(image.repo, image.tag), { instanceOf: WorkError });
  t.regex(
    err.message,
    new RegExp(
      `^get manifest of ${proxy.host}/${image.repo}:v1 from registry ${proxy.host}: GET .*: HTTP 503 \\(gave up after 4 attempts\\)$`,
    ),
  );
  t.is(proxy.count("GET", /manifests/), 4);
});

test("a chunked upload that keeps failing gives up after its own attempts: no loop around it tries again", async (t) => {
  const { proxy, client } = await bed(t, { monolithicMaxBytes: 512 * KiB, chunkBytes: 1 * MiB });
  const data = randomBytes(2 * MiB);
  const desc = blobDesc(data);
  proxy.addRule({ method: "PATCH", path: UPLOADS, times: 100, fault: { kind: "status", status: 503 } });
  const err = await t.throwsAsync(client.uploadBlob("fault/upload", desc, opener(data)), {
    instanceOf: WorkError,
  });
  t.regex(
    err.message,
    new RegExp(
      `^upload blob ${desc.digest} of .* to registry ${proxy.host}: PATCH .*: HTTP 503 \\(gave up after 4 attempts\\)$`,
    ),
  );
  // retries: 3 — four PATCHes in one session, a status request before each resend, never a new session.
  t.is(proxy.count("PATCH", UPLOADS), 4);
  t.is(proxy.count("GET", UPLOADS), 3);
  t.is(proxy.count("POST", UPLOADS), 1);
  t.regex(
    String((err.cause as Error | undefined)?.message),
    /HTTP 503$/,
    "the last fault is kept as the cause",
  );
});

test("a blob download counts its breaks and reopens together, and gives up after its attempts", async (t) => {
  const { proxy, client } = await bed(t);
  const data = randomBytes(1 * MiB);
  const desc = blobDesc(data);
  await client.uploadBlob("fault/upload", desc, opener(data));
  const blob = new RegExp(`/v2/fault/upload/blobs/${desc.digest}$`);
  proxy.addRule({ method: "GET", path: blob, fault: { kind: "drop-response", afterBytes: 100 * KiB } });
  proxy.addRule({ method: "GET", path: blob, times: 100, fault: { kind: "status", status: 503 } });
  const stream = await client.getBlob("fault/upload", desc.digest);
  const err = await t.throwsAsync(readAll(stream), { instanceOf: WorkError });
  t.regex(
    err.message,
    new RegExp(`^download blob ${desc.digest} of .*: HTTP 503 \\(gave up after 4 attempts\\)$`),
  );
  // retries: 3 — the first GET broke after bytes got through, then three reopens failed: four in
  // all, not a fresh set of retries for each reopen.
  t.is(proxy.count("GET", blob), 4);
  const ranges = proxy.requests.filter((r) => blob.test(r.path)).map((r) => r.headers.range);
  t.is(ranges[0], undefined);
  t.regex(String(ranges[1]), /^bytes=[1-9]\d*-$/);
  t.deepEqual(
    ranges.slice(1),
    Array<string | undefined>(3).fill(ranges[1]),
    "each reopen from the byte reached",
  );
});

test("connections dropped in the middle of a manifest or a blob are resumed", async (t) => {
  const { proxy, images, client } = await bed(t);
  const image = images.singleDocker;
  proxy.addRule({ method: "GET", path: /manifests\/v1$/, fault: { kind: "drop-response", afterBytes: 10 } });
  t.true((await client.getManifest(image.repo, image.tag)).bytes.equals(image.manifestBytes));
  t.is(proxy.count("GET", /manifests\/v1$/), 2);

  const blob = image.blobs.at(-1)!;
  const blobPath = new RegExp(`/blobs/${blob.digest}$`);
  proxy.addRule({
    method: "GET",
    path: blobPath,
    times: 2,
    fault: { kind: "drop-response", afterBytes: 1000 },
  });
  const bytes = await readAll(await client.getBlob(image.repo, blob.digest));
  t.is(sha256Digest(bytes), blob.digest);
  const gets = proxy.requests.filter((r) => blobPath.test(r.path));
  t.is(gets.length, 3);
  t.is(gets[0]!.headers.range, undefined);
  t.regex(
    gets[1]!.headers.range ?? "",
    /^bytes=\d+-$/,
    "the second request resumes from where the first stopped",
  );
  t.not(gets[1]!.headers.range, "bytes=0-");
});

test("a flipped byte in a blob is caught by the store's digest check, in a manifest by the client", async (t) => {
  const { proxy, images, client } = await bed(t);
  const store = new RegistryStore(client);
  const image = images.singleOci;
  const blob = image.blobs.at(-1)!;
  proxy.addRule({
    method: "GET",
    path: new RegExp(`/blobs/${blob.digest}$`),
    fault: { kind: "corrupt-response", atByte: 100 },
  });
  const desc = { mediaType: "application/octet-stream", ...blob };
  const loc = { repository: image.repo, reference: image.tag, name: image.ref };
  const err = await t.throwsAsync(store.openBlob(loc, desc).then(readAll), { instanceOf: WorkError });
  t.regex(
    err.message,
    new RegExp(
      `^blob ${blob.digest} of ${image.ref} from registry ${proxy.host} is corrupt: its bytes hash to sha256:[0-9a-f]{64}, not ${blob.digest}$`,
    ),
  );
  t.is(sha256Digest(await readAll(await store.openBlob(loc, desc))), blob.digest, "the next read is clean");

  proxy.addRule({ method: "GET", path: /manifests\/v1$/, fault: { kind: "corrupt-response", atByte: 5 } });
  const bad = await t.throwsAsync(client.getManifest(image.repo, image.tag), { instanceOf: WorkError });
  t.regex(
    bad.message,
    new RegExp(
      `damaged in transit: it hashes to sha256:[0-9a-f]{64}, the registry announced ${image.digest}$`,
    ),
  );
});

test("a chunked upload resumes after a 503 on a chunk, asking the registry how far it got", async (t) => {
  const { proxy, client } = await bed(t, { monolithicMaxBytes: 512 * KiB, chunkBytes: 1 * MiB });
  const data = randomBytes(3 * MiB + 12345);
  const desc = blobDesc(data);
  // The second PATCH is refused before it reaches the registry, which still holds the first.
  proxy.addRule({ method: "PATCH", path: UPLOADS, skip: 1, fault: { kind: "status", status: 503 } });
  const opened: number[] = [];
  let progress = 0;
  await client.uploadBlob("fault/upload", desc, opener(data, opened), (n) => (progress += n));
  t.is(proxy.count("POST", UPLOADS), 1, "one session, never restarted");
  t.is(proxy.count("PATCH", UPLOADS), 5, "four chunks, the second one twice");
  t.is(proxy.count("GET", UPLOADS), 1, "one status request");
  t.deepEqual(opened, [0, 1 * MiB], "the source is reopened where the registry's Range says");
  t.is(progress, data.length, "progress counts each byte once");
  t.is(sha256Digest(await readAll(await client.getBlob("fault/upload", desc.digest))), desc.digest);
});

test("an upload cut off mid-chunk goes on from what the registry says it holds", async (t) => {
  const { proxy, client } = await bed(t, { monolithicMaxBytes: 512 * KiB, chunkBytes: 1 * MiB });
  const data = randomBytes(2 * MiB + 777);
  const desc = blobDesc(data);
  // 100 KiB of the second PATCH reach the registry, then both connections are cut.
  proxy.addRule({
    method: "PATCH",
    path: UPLOADS,
    skip: 1,
    fault: { kind: "drop-request", afterBytes: 100 * KiB },
  });
  const opened: number[] = [];
  await client.uploadBlob("fault/upload", desc, opener(data, opened));
  t.is(proxy.count("GET", UPLOADS), 1, "asked for the upload's status");
  // Distribution either discards the half chunk (resume at 1 MiB in the same session) or
  // refuses the session (BLOB_UPLOAD_INVALID: start over); both must end with the right blob.
  const sessions = proxy.count("POST", UPLOADS);
  t.log(sessions === 1 ? "resumed in the same session" : "started a new session");
  t.deepEqual(opened, sessions === 1 ? [0, 1 * MiB] : [0, 0]);
  t.is(sha256Digest(await readAll(await client.getBlob("fault/upload", desc.digest))), desc.digest);
  t.is(await client.headBlob("fault/upload", desc.digest), data.length);
});

test("with the CLI's tuning a blob goes in one PATCH; cut off, it goes on from what the registry holds", async (t) => {
  // Only the size for a monolithic PUT is lowered; the PATCH size is the default the CLI uses.
  const { proxy, client } = await bed(t, { monolithicMaxBytes: 512 * KiB });
  const data = randomBytes(2 * MiB + 777);
  const desc = blobDesc(data);
  proxy.addRule({ method: "PATCH", path: UPLOADS, fault: { kind: "drop-request", afterBytes: 300 * KiB } });
  const opened: number[] = [];
  await client.uploadBlob("fault/upload", desc, opener(data, opened));
  t.is(opened[0], 0);
  t.true(opened.length === 2, `opened at ${opened.join(", ")}`);
  // The first PATCH carried the whole blob; after the cut, the rest went in one more.
  t.is(proxy.count("PATCH", UPLOADS), 2);
  t.is(sha256Digest(await readAll(await client.getBlob("fault/upload", desc.digest))), desc.digest);
});

test("an upload whose session the registry lost starts over from the first byte", async (t) => {
  const { proxy, client } = await bed(t, { monolithicMaxBytes: 512 * KiB, chunkBytes: 1 * MiB });
  const data = randomBytes(2 * MiB + 777);
  const desc = blobDesc(data);
  proxy.addRule({ method: "PATCH", path: UPLOADS, skip: 1, fault: { kind: "status", status: 503 } });
  const unknown = JSON.stringify({
    errors: [{ code: "BLOB_UPLOAD_UNKNOWN", message: "blob upload unknown" }],
  });
  proxy.addRule({ method: "GET", path: UPLOADS, fault: { kind: "status", status: 404, body: unknown } });
  const opened: number[] = [];
  await client.uploadBlob("fault/upload", desc, opener(data, opened));
  t.is(proxy.count("POST", UPLOADS), 2, "the lost session was replaced by a new one");
  t.deepEqual(opened, [0, 0], "the new session starts from the first byte");
  t.is(proxy.count("PATCH", UPLOADS), 2 + 3);
  t.is(await client.headBlob("fault/upload", desc.digest), data.length);
});

test("a monolithic upload cut off is sent again, and the registry's digest is checked", async (t) => {
  const { proxy, client } = await bed(t);
  const data = randomBytes(300 * KiB);
  const desc = blobDesc(data);
  proxy.addRule({ method: "PUT", path: UPLOADS, fault: { kind: "drop-request", afterBytes: 64 * KiB } });
  await client.uploadBlob("fault/upload", desc, opener(data));
  t.is(proxy.count("PUT", UPLOADS), 2);
  t.is(proxy.count("POST", UPLOADS), 2);
  t.is(await client.headBlob("fault/upload", desc.digest), data.length);

  // Bytes that do not match the descriptor: the registry refuses them, the message says so.
  const wrong = { ...desc, digest: sha256Digest("not these bytes") };
  const err = await t.throwsAsync(client.uploadBlob("fault/upload", wrong, opener(data)), {
    instanceOf: WorkError,
  });
  t.regex(
    err.message,
    new RegExp(
      `^upload blob ${wrong.digest} of ${proxy.host}/fault/upload to registry ${proxy.host}: HTTP 400 \\(DIGEST_INVALID`,
    ),
  );
});

test("an error after retries with credentials carries neither the password nor the Authorization header", async (t) => {
  const creds = { username: "alice", password: "Very-Secret-Password-7" };
  const registry = await startRegistry({ auth: creds });
  t.teardown(() => registry.stop());
  const proxy = await startFaultProxy(registry.url);
  t.teardown(() => proxy.stop());
  const client = new RegistryClient(proxy.host, {
    credentials: creds,
    retry: { retries: 1, baseDelayMs: 5 },
  });
  t.teardown(() => client.close());
  await client.ping();
  proxy.addRule({ path: /\/v2\/$/, times: 10, fault: { kind: "drop-request", afterBytes: 0 } });
  const err = await t.throwsAsync(client.ping(), { instanceOf: WorkError });
  t.regex(err.message, /gave up after 2 attempts/);
  const basic = Buffer.from(`${creds.username}:${creds.password}`).toString("base64");
  const everything = inspect(err, { depth: 20, showHidden: true });
  t.false(everything.includes(creds.password));
  t.false(everything.includes(basic));
  t.true(proxy.requests.at(-1)!.headers.authorization === `Basic ${basic}`, "the header was really sent");
});

test("a blob corrupted on its way from the source registry never lands in the target", async (t) => {
  const { proxy, images, client } = await bed(t, { monolithicMaxBytes: 1 * KiB, chunkBytes: 1 * KiB });
  const target = await startRegistry();
  t.teardown(() => target.stop());
  const targetClient = new RegistryClient(target.host, { retry: { retries: 1, baseDelayMs: 5 } });
  t.teardown(() => targetClient.close());
  const src = new RegistryStore(client);
  const dst = new RegistryStore(targetClient);
  const image = images.singleOci;
  const loc = { repository: image.repo, reference: image.tag, name: image.ref };
  // The config (below 1 KiB) goes in one PUT, the layer (a few KiB) in 1 KiB chunks.
  for (const [blob, size] of [
    [image.blobs[0]!, "monolithic"],
    [image.blobs.at(-1)!, "chunked"],
  ] as const) {
    t.is(blob.size <= 1 * KiB, size === "monolithic");
    const desc = { mediaType: "application/octet-stream", ...blob };
    proxy.addRule({
      method: "GET",
      path: new RegExp(`/blobs/${blob.digest}$`),
      fault: { kind: "corrupt-response", atByte: blob.size - 1 },
    });
    const err = await t.throwsAsync(
      dst.putBlob(loc, desc, (offset) => src.openBlob(loc, desc, offset)),
      { instanceOf: WorkError },
    );
    t.regex(
      err.message,
      new RegExp(
        `^blob ${blob.digest} of ${image.ref} from registry ${proxy.host} is corrupt: its bytes hash to`,
      ),
      size,
    );
    t.false(await dst.hasBlob(loc, desc), size);
  }
});

test("a source that fails to read is not retried: the upload stops with the reason", async (t) => {
  const { proxy, client } = await bed(t);
  const data = randomBytes(200 * KiB);
  const failing = () =>
    Promise.resolve(
      Readable.from(
        (async function* () {
          yield data.subarray(0, 64 * KiB);
          throw Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" });
        })(),
        { objectMode: false },
      ),
    );
  const err = await t.throwsAsync(client.uploadBlob("fault/upload", blobDesc(data), failing), {
    instanceOf: WorkError,
  });
  t.regex(err.message, /: reading the data to send failed: EIO: i\/o error, read$/);
  t.is(proxy.count("POST", UPLOADS), 1);
});
