// What a hostile server can do to the CLI, and what stops it (issue 11): bodies past their
// size (a blob sent forever, a Content-Length of 10^12, a 200 MB manifest, a download that
// never ends), time (a server that accepts and never answers, one that sends a byte at a
// time) and credentials (an upload Location or a redirect on another origin). Each case runs
// through the CLI against a server the test owns, on 127.0.0.1 only.
import test, { type ExecutionContext } from "ava";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import { readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { runCli, tempFiles, type CliResult } from "./helpers/cli.js";
import { fakeServer, type FakeServer } from "./helpers/http.js";

const PASSWORD = "hostile-pw-5f3a9";
const USER = "siteuser";
/** Every CLI run here gives up after the first attempt: the cases are about one request. */
const ENV = { BUNDLE_RETRIES: "0" };

function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A small single-platform image: its manifest, config and one layer. */
function makeImage() {
  const config = Buffer.from(
    JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers" } }),
  );
  const layer = randomBytes(1000);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: `sha256:${sha256(config)}`,
        size: config.length,
      },
      layers: [
        {
          mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
          digest: `sha256:${sha256(layer)}`,
          size: layer.length,
        },
      ],
    }),
  );
  const blobs = new Map([
    [`sha256:${sha256(config)}`, config],
    [`sha256:${sha256(layer)}`, layer],
  ]);
  return { manifest, digest: `sha256:${sha256(manifest)}`, layerDigest: `sha256:${sha256(layer)}`, blobs };
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Body bytes the servers managed to write, per request path. */
const sent = new Map<string, number>();

/** A server of the test's that reads (and drops) every request body before `handle` answers. */
function serve(t: ExecutionContext, handle: Handler): Promise<FakeServer> {
  return fakeServer(t, (req, res) => {
    req.resume();
    handle(req, res);
  });
}

function authorized(s: FakeServer) {
  return s.requests.filter((q) => q.headers.authorization !== undefined);
}

/** Writes zeros until the client goes away, counting them. */
function endless(req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunk = Buffer.alloc(64 * 1024);
  const key = req.url ?? "";
  let open = true;
  res.on("close", () => (open = false));
  const pump = () => {
    while (open) {
      sent.set(key, (sent.get(key) ?? 0) + chunk.length);
      if (!res.write(chunk)) return void res.once("drain", pump);
    }
  };
  pump();
}

/** One byte every 100 ms, until the client goes away. */
function trickle(res: http.ServerResponse, body: Buffer): void {
  let at = 0;
  const timer = setInterval(() => {
    if (at < body.length) res.write(body.subarray(at, ++at));
  }, 100);
  res.on("close", () => clearInterval(timer));
}

/**
 * A registry serving `good/app:1` properly and misbehaving for the other repositories:
 * `endless` (layer never ends), `huge` (layer announces 10^12 bytes), `bigmanifest` (manifest
 * announces 200 MB), `chunkedmanifest` (manifest sent forever without a length), `slow`
 * (manifest at 10 bytes a second), `slowblob` (layer likewise), `silent` (manifest never answered).
 */
function hostileRegistry(
  image: ReturnType<typeof makeImage>,
  opts: { redirectBlobsTo?: string } = {},
): Handler {
  return (req, res) => {
    const url = req.url ?? "";
    const m = /^\/v2\/([a-z]+)\/app\/(manifests|blobs)\/(.+)$/.exec(url);
    if (url === "/v2/") return void res.writeHead(200, { "content-type": "application/json" }).end("{}");
    if (!m) return void res.writeHead(404).end();
    const [, repo, kind, ref] = m;
    if (kind === "manifests") {
      const headers = {
        "content-type": "application/vnd.oci.image.manifest.v1+json",
        "docker-content-digest": image.digest,
      };
      if (repo === "silent") return; // accepted, never answered
      if (repo === "bigmanifest") {
        res.writeHead(200, { ...headers, "content-length": String(200 * 1024 * 1024) });
        return req.method === "HEAD" ? void res.end() : endless(req, res);
      }
      if (repo === "chunkedmanifest") {
        res.writeHead(200, headers);
        return req.method === "HEAD" ? void res.end() : endless(req, res);
      }
      res.writeHead(200, { ...headers, "content-length": String(image.manifest.length) });
      if (req.method === "HEAD") return void res.end();
      if (repo === "slow") return trickle(res, image.manifest);
      return void res.end(image.manifest);
    }
    const blob = image.blobs.get(ref ?? "");
    if (!blob) return void res.writeHead(404).end();
    const isLayer = ref === image.layerDigest;
    if (isLayer && repo === "endless") {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      return endless(req, res);
    }
    if (isLayer && repo === "slowblob") {
      res.writeHead(200, { "content-length": String(blob.length) });
      return trickle(res, blob);
    }
    if (isLayer && repo === "huge") {
      res.writeHead(200, { "content-length": String(10 ** 12) });
      return endless(req, res);
    }
    if (opts.redirectBlobsTo && req.method === "GET")
      return void res.writeHead(307, { location: `${opts.redirectBlobsTo}/storage/${ref}` }).end();
    res.writeHead(200, { "content-length": String(blob.length), "docker-content-digest": ref });
    res.end(req.method === "HEAD" ? undefined : blob);
  };
}

/** A Basic-auth front for a registry handler: 401 unless the right user and password come. */
function withBasicAuth(inner: Handler): Handler {
  const expected = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;
  return (req, res) => {
    if (req.headers.authorization !== expected)
      return void res.writeHead(401, { "www-authenticate": 'Basic realm="hostile"' }).end();
    inner(req, res);
  };
}

/** A folder for the run, with a canary beside the output that must stay as it is. */
async function workspace(t: ExecutionContext, definition: string) {
  const { dir, cleanup } = await tempFiles({ "bundle.yml": definition, token: "s3cret-token\n" });
  t.teardown(cleanup);
  const canary = path.join(path.dirname(dir), "canary.txt");
  await writeFile(canary, "canary\n");
  const before = await stat(canary);
  return {
    dir,
    out: path.join(dir, "out"),
    async canaryUntouched() {
      const after = await stat(canary);
      t.is(await readFile(canary, "utf8"), "canary\n");
      t.is(after.mtimeMs, before.mtimeMs);
      t.deepEqual(await readdir(path.dirname(dir)), ["canary.txt", "def"].sort());
    },
  };
}

/** Every file under `dir` with its size; none may be big or sit under a partial name unnoticed. */
async function filesUnder(dir: string): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    found.set(path.relative(dir, file), (await stat(file)).size);
  }
  return found;
}

async function assertNothingBig(t: ExecutionContext, out: string, max = 64 * 1024): Promise<void> {
  for (const [file, size] of await filesUnder(out)) t.true(size <= max, `${file} holds ${size} bytes`);
}

function noSecrets(t: ExecutionContext, r: CliResult): void {
  for (const secret of [PASSWORD, "s3cret-token", Buffer.from(`${USER}:${PASSWORD}`).toString("base64")]) {
    t.false(r.stdout.includes(secret), "stdout holds a secret");
    t.false(r.stderr.includes(secret), "stderr holds a secret");
  }
}

async function prepareImage(t: ExecutionContext, ref: string, args: string[] = []) {
  const ws = await workspace(t, `images:\n  - ${ref}\n`);
  const r = await runCli(["prepare", "-o", ws.out, "--platform", "linux/amd64", ...args], {
    cwd: ws.dir,
    env: ENV,
  });
  return { ...ws, r };
}

// Sizes

test("a layer sent forever is cut off at its descriptor's size and nothing of it is kept", async (t) => {
  const image = makeImage();
  const reg = await serve(t, hostileRegistry(image));
  const { r, out, canaryUntouched } = await prepareImage(t, `${reg.host}/endless/app:1`);
  t.is(r.code, 1, r.stderr);
  t.regex(
    r.stderr,
    new RegExp(`blob ${image.layerDigest} .*sends more than the 1000 bytes its descriptor says`),
  );
  t.notRegex(r.stderr, /at .*\.js:\d+/, "no stack trace");
  const files = await filesUnder(out);
  t.false(
    [...files.keys()].some((f) => f.includes(image.layerDigest.slice(7))),
    "no blob or partial of it",
  );
  await assertNothingBig(t, out);
  await canaryUntouched();
});

test("a layer announcing 10^12 bytes is refused before its body is read", async (t) => {
  const image = makeImage();
  const reg = await serve(t, hostileRegistry(image));
  const { r, out, canaryUntouched } = await prepareImage(t, `${reg.host}/huge/app:1`);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /announces 1000000000000 bytes than the 1000 bytes its descriptor says; dropped/);
  const files = await filesUnder(out);
  t.false([...files.keys()].some((f) => f.includes(image.layerDigest.slice(7))));
  await assertNothingBig(t, out);
  await canaryUntouched();
});

test("a 200 MB manifest is refused: at once by its Content-Length, at 4 MiB without one", async (t) => {
  const image = makeImage();
  const reg = await serve(t, hostileRegistry(image));
  const declared = await prepareImage(t, `${reg.host}/bigmanifest/app:1`);
  t.is(declared.r.code, 1, declared.r.stderr);
  t.regex(
    declared.r.stderr,
    /manifests\/1: the answer announces 209715200 bytes, more than the 4194304 accepted/,
  );
  await assertNothingBig(t, declared.out);
  await declared.canaryUntouched();

  const chunked = await prepareImage(t, `${reg.host}/chunkedmanifest/app:1`);
  t.is(chunked.r.code, 1, chunked.r.stderr);
  t.regex(chunked.r.stderr, /manifests\/1: the answer goes on past 4194304 bytes/);
  // Read up to the cap, then the connection closed: far from the 200 MB it would have sent.
  const written = sent.get("/v2/chunkedmanifest/app/manifests/1") ?? 0;
  t.true(written >= 4 * 1024 * 1024 && written < 64 * 1024 * 1024, `the server got ${written} bytes out`);
  await assertNothingBig(t, chunked.out);
  await chunked.canaryUntouched();
});

/** A file server for `files:` downloads: `endless`, `huge` (10^12 announced), `silent`, `slow`, `ok`. */
function downloads(body: Buffer): Handler {
  return (req, res) => {
    const name = (req.url ?? "").slice(1);
    if (name === "silent") return;
    if (name === "endless") return void (res.writeHead(200), endless(req, res));
    if (name === "huge")
      return void (res.writeHead(200, { "content-length": String(10 ** 12) }), endless(req, res));
    res.writeHead(200, { "content-length": String(body.length) });
    if (name === "slow") return trickle(res, body);
    res.end(body);
  };
}

test("an unpinned download stops at --max-download: sent forever, or announced too large", async (t) => {
  const srv = await serve(t, downloads(randomBytes(2000)));
  for (const [name, message] of [
    [
      "endless",
      /endless: larger than 1048576 bytes \(--max-download\); it goes on past that; nothing was kept, raise --max-download/,
    ],
    ["huge", /huge: larger than 1048576 bytes \(--max-download\); it announces 1000000000000 bytes/],
  ] as const) {
    const ws = await workspace(t, `files:\n  - url: ${srv.url}/${name}\n    path: tool.bin\n`);
    const r = await runCli(["prepare", "-o", ws.out, "--max-download", "1M"], { cwd: ws.dir, env: ENV });
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, message);
    t.false((await filesUnder(ws.out)).has("files/tool.bin"), "nothing under the final name");
    await assertNothingBig(t, ws.out);
    await ws.canaryUntouched();
  }
  const ws = await workspace(t, `files:\n  - url: ${srv.url}/ok\n    path: tool.bin\n`);
  const bad = await runCli(["prepare", "-o", ws.out, "--max-download", "lots"], { cwd: ws.dir });
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--max-download lots: write a size in bytes/);
});

test("a pinned download stops at the size its earlier run recorded", async (t) => {
  const body = randomBytes(2000);
  let served = body;
  const srv = await serve(t, (req, res) => {
    // The second run gets an endless body for the same pinned URL.
    if (served !== body) return void (res.writeHead(200), res.write(served));
    res.writeHead(200, { "content-length": String(body.length) }).end(body);
  });
  const ws = await workspace(
    t,
    `files:\n  - url: ${srv.url}/tool\n    path: tool.bin\n    sha256: ${sha256(body)}\n`,
  );
  t.is((await runCli(["prepare", "-o", ws.out], { cwd: ws.dir, env: ENV })).code, 0);
  await writeFile(path.join(ws.out, "files", "tool.bin"), "damaged, so the next run fetches again");
  served = randomBytes(100_000);
  const r = await runCli(["prepare", "-o", ws.out], { cwd: ws.dir, env: ENV });
  t.is(r.code, 1, r.stderr);
  t.regex(
    r.stderr,
    /tool: larger than 2000 bytes \(the size recorded with its pin\); it goes on past that; nothing was kept/,
  );
  await assertNothingBig(t, ws.out);
  await ws.canaryUntouched();
});

// Time

test("a registry or download server that accepts and never answers fails after --response-timeout", async (t) => {
  const image = makeImage();
  const reg = await serve(t, hostileRegistry(image));
  const { r, out, canaryUntouched } = await prepareImage(t, `${reg.host}/silent/app:1`, [
    "--response-timeout",
    "0.5",
  ]);
  t.is(r.code, 1, r.stderr);
  t.regex(
    r.stderr,
    new RegExp(
      `(HEAD|GET) ${reg.url}/v2/silent/app/manifests/1: no answer within 0.5 s \\(raise it with --response-timeout\\)`,
    ),
  );
  await assertNothingBig(t, out);
  await canaryUntouched();

  const srv = await serve(t, downloads(randomBytes(10)));
  const ws = await workspace(t, `files:\n  - url: ${srv.url}/silent\n    path: tool.bin\n`);
  const d = await runCli(["prepare", "-o", ws.out, "--response-timeout", "0.5"], { cwd: ws.dir, env: ENV });
  t.is(d.code, 1, d.stderr);
  t.regex(
    d.stderr,
    new RegExp(`${srv.url}/silent: no answer within 0.5 s \\(raise it with --response-timeout\\)`),
  );
  t.false((await filesUnder(ws.out)).has("files/tool.bin"));
  await ws.canaryUntouched();

  const bad = await runCli(["prepare", "-o", ws.out, "--response-timeout", "soon"], { cwd: ws.dir });
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--response-timeout soon: write seconds/);
});

test("a manifest, blob or download trickling at 10 bytes a second fails under --min-rate", async (t) => {
  const image = makeImage();
  const reg = await serve(t, hostileRegistry(image));
  const limits = ["--min-rate", "1K", "--rate-window", "1"];
  const { r, out, canaryUntouched } = await prepareImage(t, `${reg.host}/slow/app:1`, limits);
  t.is(r.code, 1, r.stderr);
  t.regex(
    r.stderr,
    /manifests\/1: slower than 1 KiB\/s for 1 s \(\d+ bytes in [\d.]+ s\); raise --rate-window or lower --min-rate/,
  );
  await assertNothingBig(t, out);
  await canaryUntouched();

  const blob = await prepareImage(t, `${reg.host}/slowblob/app:1`, limits);
  t.is(blob.r.code, 1, blob.r.stderr);
  t.regex(blob.r.stderr, new RegExp(`blobs/${image.layerDigest}: slower than 1 KiB/s for 1 s`));
  t.false([...(await filesUnder(blob.out)).keys()].some((f) => f.includes(image.layerDigest.slice(7))));
  await blob.canaryUntouched();

  const srv = await serve(t, downloads(randomBytes(5000)));
  const ws = await workspace(t, `files:\n  - url: ${srv.url}/slow\n    path: tool.bin\n`);
  const d = await runCli(["prepare", "-o", ws.out, ...limits], { cwd: ws.dir, env: ENV });
  t.is(d.code, 1, d.stderr);
  t.regex(d.stderr, new RegExp(`${srv.url}/slow: download interrupted: slower than 1 KiB/s for 1 s`));
  t.false((await filesUnder(ws.out)).has("files/tool.bin"));
  await ws.canaryUntouched();
});

test("upload and deploy give up on a file server that never answers or trickles", async (t) => {
  const body = randomBytes(3000);
  const good = await serve(t, downloads(body));
  const ws = await workspace(
    t,
    `files:\n  - url: ${good.url}/ok\n    path: tool.bin\n    sha256: ${sha256(body)}\n`,
  );
  const prepared = await runCli(["prepare", "-o", ws.out], { cwd: ws.dir, env: ENV });
  t.is(prepared.code, 0, prepared.stderr);

  const silent = await serve(t, () => undefined);
  const up = await runCli(
    ["upload", ws.out, "--fileserver", silent.url, "--token-file", "token", "--response-timeout", "0.5"],
    { cwd: ws.dir, env: ENV },
  );
  t.is(up.code, 1, up.stderr);
  t.regex(
    up.stderr,
    new RegExp(`${silent.url}/\\S+: no answer within 0.5 s \\(raise it with --response-timeout\\)`),
  );
  noSecrets(t, up);

  const slow = await serve(t, (_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    trickle(res, Buffer.from(JSON.stringify({ files: [] })));
  });
  const dep = await runCli(
    ["deploy", ws.out, "--fileserver", slow.url, "--dry-run", "--min-rate", "1K", "--rate-window", "1"],
    { cwd: ws.dir, env: ENV },
  );
  t.is(dep.code, 1, dep.stderr);
  t.regex(dep.stderr, new RegExp(`GET ${slow.url}/_list/def: slower than 1 KiB/s for 1 s`));
  await ws.canaryUntouched();
});

// Credentials

test("an upload Location on another origin gets no Authorization, and its 401 is not answered", async (t) => {
  const image = makeImage();
  const source = await serve(t, hostileRegistry(image));
  const ws = await workspace(t, `images:\n  - ${source.host}/good/app:1\n`);
  const prepared = await runCli(["prepare", "-o", ws.out, "--platform", "linux/amd64"], {
    cwd: ws.dir,
    env: ENV,
  });
  t.is(prepared.code, 0, prepared.stderr);

  const foreign = await serve(
    t,
    (_req, res) =>
      void res.writeHead(401, { "www-authenticate": 'Basic realm="give me your password"' }).end(),
  );
  const site = await serve(
    t,
    withBasicAuth((req, res) => {
      const url = req.url ?? "";
      if (url === "/v2/") return void res.writeHead(200).end("{}");
      if (req.method === "POST" && /\/blobs\/uploads\/$/.test(url))
        return void res.writeHead(202, { location: `${foreign.url}/upload/1?_state=x` }).end();
      res.writeHead(404).end();
    }),
  );
  const r = await runCli(
    ["upload", ws.out, "--registry", site.host, "--username", USER, "--password-stdin"],
    {
      cwd: ws.dir,
      input: `${PASSWORD}\n`,
      env: ENV,
    },
  );
  t.is(r.code, 1, r.stderr);
  t.regex(
    r.stderr,
    new RegExp(
      `${foreign.url}/upload/1\\S*: HTTP 401; the credentials of registry ${site.host} are not sent to another origin`,
    ),
  );
  t.true(foreign.requests.length > 0, "the upload went to the foreign Location");
  t.deepEqual(authorized(foreign), []);
  t.true(authorized(site).length > 0, "the registry itself got the credentials");
  noSecrets(t, r);
  await ws.canaryUntouched();
});

test("a blob redirected to another origin is fetched there without the registry's credentials", async (t) => {
  const image = makeImage();
  const storage = await serve(t, (req, res) => {
    const blob = image.blobs.get((req.url ?? "").replace("/storage/", ""));
    if (!blob) return void res.writeHead(404).end();
    res.writeHead(200, { "content-length": String(blob.length) }).end(blob);
  });
  const reg = await serve(t, withBasicAuth(hostileRegistry(image, { redirectBlobsTo: storage.url })));
  const ws = await workspace(t, `images:\n  - ${reg.host}/good/app:1\n`);
  const r = await runCli(
    ["prepare", "-o", ws.out, "--platform", "linux/amd64", "--username", USER, "--password-stdin"],
    { cwd: ws.dir, input: `${PASSWORD}\n`, env: ENV },
  );
  t.is(r.code, 0, r.stderr);
  t.true(storage.requests.length >= 2, "config and layer came from the storage");
  t.deepEqual(authorized(storage), []);
  t.true(authorized(reg).length > 0);
  noSecrets(t, r);
  const lock = await readFile(path.join(ws.out, "bundle.lock.json"), "utf8");
  t.false(lock.includes(PASSWORD));
  await ws.canaryUntouched();
});
