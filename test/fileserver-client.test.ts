/**
 * FileServerClient against a real `bundle serve` server: list, head and put, encoded names,
 * the errors a user sees, and transient faults (503, a connection cut mid-upload) retried
 * through a fault proxy in front of the server.
 */
import test, { type ExecutionContext } from "ava";
import { createHash } from "node:crypto";
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { FileServerClient } from "../src/fileserver/client.js";
import { startFileServer, type FileServer, type FileServerOptions } from "../src/fileserver/server.js";
import { InputError, WorkError } from "../src/util/errors.js";
import { startFaultProxy } from "./helpers/faultProxy.js";
import { freePort } from "./helpers/ports.js";

const TOKEN = "client-test-token-1234";
const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");
const FAST_RETRY = { retries: 3, baseDelayMs: 10 };

interface Setup {
  dir: string;
  root: string;
  /** A local file to upload, and its digest. */
  file: string;
  bytes: Buffer;
  digest: string;
  server: FileServer;
  /** Every file under the sandbox but root: uploads must add nothing there. */
  outsideRoot(): Promise<string[]>;
}

async function setup(t: ExecutionContext, opts: Partial<FileServerOptions> = {}): Promise<Setup> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-fsclient-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const root = path.join(dir, "root");
  const file = path.join(dir, "local", "openwhisk.tar.gz");
  const bytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256));
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, bytes);
  const server = await serve(t, { root, token: TOKEN, ...opts });
  const outsideRoot = async () =>
    (await readdir(dir, { recursive: true }))
      .filter((p) => p !== "root" && !p.startsWith(`root${path.sep}`))
      .sort();
  return { dir, root, file, bytes, digest: sha256(bytes), server, outsideRoot };
}

async function serve(t: ExecutionContext, opts: FileServerOptions): Promise<FileServer> {
  for (let attempt = 0; ; attempt++) {
    try {
      const server = await startFileServer({
        host: "127.0.0.1",
        port: await freePort(),
        log: () => undefined,
        ...opts,
      });
      t.teardown(() => server.close());
      return server;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || attempt >= 5) throw err;
    }
  }
}

function client(
  t: ExecutionContext,
  url: string,
  opts: ConstructorParameters<typeof FileServerClient>[1] = {},
) {
  const c = new FileServerClient(url, { token: TOKEN, retry: FAST_RETRY, ...opts });
  t.teardown(() => c.close());
  return c;
}

test("put, head and list against the server; a missing bundle lists empty, a missing file heads undefined", async (t) => {
  const s = await setup(t);
  const c = client(t, s.server.url);
  t.deepEqual(await c.list("openwhisk"), []);
  t.is(await c.head("openwhisk", "openwhisk.tar.gz"), undefined);
  let progress = 0;
  await c.put("openwhisk", "openwhisk.tar.gz", s.file, s.digest, (n) => (progress += n));
  t.is(progress, s.bytes.length);
  await c.put("openwhisk", "teledeploy/override-values.yml", s.file, s.digest);
  t.deepEqual(await readFile(path.join(s.root, "openwhisk", "openwhisk.tar.gz")), s.bytes);
  t.deepEqual(await c.head("openwhisk", "openwhisk.tar.gz"), { size: s.bytes.length, sha256: s.digest });
  t.deepEqual(await c.list("openwhisk"), [
    { path: "openwhisk.tar.gz", size: s.bytes.length, sha256: s.digest },
    { path: "teledeploy/override-values.yml", size: s.bytes.length, sha256: s.digest },
  ]);
  t.deepEqual(await s.outsideRoot(), ["local", path.join("local", "openwhisk.tar.gz")]);
});

test("names are percent-encoded per segment and come back as they were", async (t) => {
  const s = await setup(t);
  const c = client(t, `${s.server.url}/`);
  const name = "dir with space/ä #1?.tgz";
  t.is(c.url("my bundle", name), `${s.server.url}/my%20bundle/dir%20with%20space/%C3%A4%20%231%3F.tgz`);
  await c.put("my bundle", name, s.file, s.digest);
  t.deepEqual(await readFile(path.join(s.root, "my bundle", "dir with space", "ä #1?.tgz")), s.bytes);
  t.deepEqual(
    (await c.list("my bundle")).map((f) => f.path),
    [name],
  );
  t.is((await c.head("my bundle", name))?.sha256, s.digest);
  t.throws(() => c.url("b", "../escape"), { instanceOf: InputError });
  t.throws(() => c.url("b", "a//b"), { instanceOf: InputError });
  t.throws(() => new FileServerClient("not a url"), { instanceOf: InputError });
  t.throws(() => new FileServerClient("ftp://host/"), { instanceOf: InputError });
});

test("a PUT answered 503 once is retried and lands; progress is rewound, not counted twice", async (t) => {
  const s = await setup(t);
  const proxy = await startFaultProxy(s.server.url);
  t.teardown(() => proxy.stop());
  proxy.addRule({ method: "PUT", path: /^\/b\/f\.tgz$/, fault: { kind: "status", status: 503 } });
  const c = client(t, proxy.url);
  const retries: number[] = [];
  let progress = 0;
  const retrying = new FileServerClient(proxy.url, {
    token: TOKEN,
    retry: { ...FAST_RETRY, onRetry: (_err, attempt) => retries.push(attempt) },
  });
  t.teardown(() => retrying.close());
  await retrying.put("b", "f.tgz", s.file, s.digest, (n) => (progress += n));
  t.is(proxy.count("PUT", /^\/b\/f\.tgz$/), 2, "the first PUT got 503, the second went through");
  t.deepEqual(retries, [1]);
  t.is(progress, s.bytes.length);
  t.deepEqual(await c.head("b", "f.tgz"), { size: s.bytes.length, sha256: s.digest });
  t.deepEqual(await readdir(path.join(s.root, ".bundle-tmp")), []);
  t.true(
    proxy.requests
      .filter((r) => r.method === "PUT")
      .every((r) => r.headers.authorization === `Bearer ${TOKEN}`),
  );
  t.true(
    proxy.requests.filter((r) => r.method !== "PUT").every((r) => r.headers.authorization === undefined),
    "reads go without the token",
  );
});

test("a PUT whose connection is cut mid-body is sent again whole, and the server keeps no partial file", async (t) => {
  const s = await setup(t);
  const proxy = await startFaultProxy(s.server.url);
  t.teardown(() => proxy.stop());
  proxy.addRule({
    method: "PUT",
    path: /^\/b\/f\.tgz$/,
    fault: { kind: "drop-request", afterBytes: 100_000 },
  });
  const c = client(t, proxy.url);
  await c.put("b", "f.tgz", s.file, s.digest);
  t.is(proxy.faultsApplied(), 1);
  t.deepEqual(await readFile(path.join(s.root, "b", "f.tgz")), s.bytes);
  t.deepEqual(await readdir(path.join(s.root, ".bundle-tmp")), []);
});

test("a server that keeps failing: the client gives up with a WorkError after its retries", async (t) => {
  const s = await setup(t);
  const proxy = await startFaultProxy(s.server.url);
  t.teardown(() => proxy.stop());
  proxy.addRule({ path: /./, times: 100, fault: { kind: "status", status: 503 } });
  const c = client(t, proxy.url, { retry: { retries: 2, baseDelayMs: 5 } });
  const err = await t.throwsAsync(c.put("b", "f.tgz", s.file, s.digest), { instanceOf: WorkError });
  t.regex(
    err?.message ?? "",
    /^PUT http:\/\/127\.0\.0\.1:\d+\/b\/f\.tgz: HTTP 503 \(gave up after 3 attempts\)$/,
  );
  await t.throwsAsync(c.list("b"), { instanceOf: WorkError, message: /GET .*\/_list\/b: HTTP 503/ });
  t.is(proxy.count("PUT", /./), 3);
});

test("a wrong or missing token is a WorkError telling to pass --token-file, and never shows the token", async (t) => {
  const s = await setup(t);
  const wrong = client(t, s.server.url, { token: "not-the-token-xyz" });
  const err = await t.throwsAsync(wrong.put("b", "f.tgz", s.file, s.digest), { instanceOf: WorkError });
  t.regex(
    err?.message ?? "",
    /PUT http:\/\/127\.0\.0\.1:\d+\/b\/f\.tgz: upload refused \(HTTP 401.*--token-file/,
  );
  t.false((err?.message ?? "").includes("not-the-token-xyz"));
  t.false(JSON.stringify(err).includes("not-the-token-xyz"), "nor anywhere in the error object");
  const none = new FileServerClient(s.server.url, { retry: FAST_RETRY });
  t.teardown(() => none.close());
  await t.throwsAsync(none.put("b", "f.tgz", s.file, s.digest), {
    instanceOf: WorkError,
    message: /needs a token: pass --token-file/,
  });
  const stored = await lstat(path.join(s.root, "b", "f.tgz")).catch(() => undefined);
  t.is(stored, undefined);
});

test("a server without a token: the client's 403 error says so", async (t) => {
  const s = await setup(t, { token: undefined });
  const c = client(t, s.server.url);
  const err = await t.throwsAsync(c.put("b", "f.tgz", s.file, s.digest), { instanceOf: WorkError });
  t.regex(err?.message ?? "", /HTTP 403: this server takes no uploads: it was started without --token-file/);
  t.false((err?.message ?? "").includes(TOKEN));
});

test("a digest mismatch is a WorkError naming the URL and both digests, not retried", async (t) => {
  const s = await setup(t);
  const proxy = await startFaultProxy(s.server.url);
  t.teardown(() => proxy.stop());
  const c = client(t, proxy.url);
  const declared = sha256("not this file");
  const err = await t.throwsAsync(c.put("b", "f.tgz", s.file, declared), { instanceOf: WorkError });
  const message = err?.message ?? "";
  t.true(message.startsWith(`PUT ${proxy.url}/b/f.tgz: HTTP 400`), message);
  t.true(message.includes(declared) && message.includes(s.digest), message);
  t.is(proxy.count("PUT", /./), 1);
  await t.throwsAsync(c.put("b", "f.tgz", s.file, "abc"), { instanceOf: InputError });
  await t.throwsAsync(c.put("b", "f.tgz", path.join(s.dir, "nope"), s.digest), {
    instanceOf: WorkError,
    message: /nope: cannot read the file to upload: no such file$/,
  });
});

test("a file over the server's limit is a WorkError naming --max-upload-size", async (t) => {
  const s = await setup(t, { maxUploadBytes: 1000 });
  const c = client(t, s.server.url);
  await t.throwsAsync(c.put("b", "f.tgz", s.file, s.digest), {
    instanceOf: WorkError,
    message: /\(300000 bytes\) is over the server's --max-upload-size \(HTTP 413\)/,
  });
});
