/**
 * `bundle serve`'s file server over real sockets: reads with Range and ETag, authenticated and
 * verified uploads, and every way out of the root refused. Each test runs in a sandbox whose
 * files outside the root are sealed (atime set to 2000): at the end, none of them may have been
 * read, changed or added to.
 */
import test, { type ExecutionContext } from "ava";
import { createHash } from "node:crypto";
import http from "node:http";
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startFileServer, type FileServer, type FileServerOptions } from "../src/fileserver/server.js";
import { freePort } from "./helpers/ports.js";

const TOKEN = "s3cret-token-for-tests";
const MARKER = "TOP-SECRET-OUTSIDE-ROOT";
const SEALED = new Date("2000-01-01T00:00:00Z");

const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");
/** 1000 bytes that differ from one position to the next, so a wrong range shows. */
const PATTERN = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));

interface Sandbox {
  dir: string;
  root: string;
  outside: string;
  /** Fails the test if anything outside root was read, changed or created. */
  checkOutside(): Promise<void>;
}

interface Entry {
  type: string;
  size: number;
  mtimeMs: number;
  atimeMs: number;
}

/** Everything under `dir` but root, by lstat alone: the check must not read what it guards. */
async function outsideState(dir: string, root: string): Promise<Map<string, Entry>> {
  const state = new Map<string, Entry>();
  for (const name of await readdir(dir, { recursive: true })) {
    const full = path.join(dir, name);
    if (full === root || full.startsWith(root + path.sep)) continue;
    const s = await lstat(full);
    const type = s.isSymbolicLink() ? "link" : s.isDirectory() ? "dir" : "file";
    // A folder's atime moves whenever it is listed, by this check too: files' atimes tell reads.
    state.set(name, { type, size: s.size, mtimeMs: s.mtimeMs, atimeMs: type === "file" ? s.atimeMs : 0 });
  }
  return state;
}

async function sandbox(t: ExecutionContext): Promise<Sandbox> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-fileserver-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const root = path.join(dir, "root");
  const outside = path.join(dir, "outside");
  await mkdir(path.join(root, "b"), { recursive: true });
  await mkdir(path.join(outside, "sub"), { recursive: true });
  const secrets = [
    path.join(outside, "secret.txt"),
    path.join(outside, "sub", "x.txt"),
    path.join(dir, "sentinel"),
  ];
  for (const file of secrets) {
    await writeFile(file, `${MARKER} ${path.basename(file)}\n`);
    await utimes(file, SEALED, SEALED);
  }
  const before = await outsideState(dir, root);
  return {
    dir,
    root,
    outside,
    async checkOutside() {
      const after = await outsideState(dir, root);
      t.deepEqual(
        [...after.keys()].sort(),
        [...before.keys()].sort(),
        "no file appeared or vanished outside root",
      );
      for (const [name, entry] of before)
        t.deepEqual(after.get(name), entry, `${name} outside root is untouched`);
      for (const file of secrets) t.is(await readFile(file, "utf8"), `${MARKER} ${path.basename(file)}\n`);
    },
  };
}

async function serve(
  t: ExecutionContext,
  sb: Sandbox,
  opts: Partial<FileServerOptions> = {},
): Promise<FileServer & { log: string[] }> {
  const log: string[] = [];
  for (let attempt = 0; ; attempt++) {
    try {
      const server = await startFileServer({
        root: sb.root,
        host: "127.0.0.1",
        port: await freePort(),
        token: TOKEN,
        log: (line) => log.push(line),
        ...opts,
      });
      t.teardown(() => server.close());
      return Object.assign(server, { log });
    } catch (err) {
      // freePort's port may be taken by someone else before we bind it.
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || attempt >= 5) throw err;
    }
  }
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * A request with its path sent exactly as written: fetch and `new URL` would resolve `..` and
 * `%2e%2e` before the server ever saw them.
 */
function open(
  server: FileServer,
  method: string,
  rawPath: string,
  headers: Record<string, string> = {},
  agent: http.Agent | false = false,
): { req: http.ClientRequest; response: Promise<RawResponse> } {
  const req = http.request({ host: "127.0.0.1", port: server.port, method, path: rawPath, headers, agent });
  const response = new Promise<RawResponse>((resolve, reject) => {
    req.on("error", reject);
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
    });
  });
  return { req, response };
}

function request(
  server: FileServer,
  method: string,
  rawPath: string,
  headers: Record<string, string> = {},
  body?: Buffer,
): Promise<RawResponse> {
  const { req, response } = open(server, method, rawPath, headers);
  req.end(body);
  return response;
}

function upload(server: FileServer, rawPath: string, body: Buffer, headers: Record<string, string> = {}) {
  return request(
    server,
    "PUT",
    rawPath,
    { authorization: `Bearer ${TOKEN}`, "x-checksum-sha256": sha256(body), ...headers },
    body,
  );
}

async function tempFiles(root: string): Promise<string[]> {
  return readdir(path.join(root, ".bundle-tmp")).catch(() => []);
}

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

test("GET and HEAD send Content-Length, the sha256 as strong ETag, and X-Checksum-Sha256", async (t) => {
  const sb = await sandbox(t);
  await writeFile(path.join(sb.root, "b", "data.bin"), PATTERN);
  const server = await serve(t, sb);
  const get = await request(server, "GET", "/b/data.bin");
  t.is(get.status, 200);
  t.deepEqual(get.body, PATTERN);
  t.is(get.headers["content-length"], "1000");
  t.is(get.headers.etag, `"${sha256(PATTERN)}"`);
  t.is(get.headers["x-checksum-sha256"], sha256(PATTERN));
  const head = await request(server, "HEAD", "/b/data.bin");
  t.is(head.status, 200);
  t.is(head.body.length, 0);
  t.is(head.headers["content-length"], "1000");
  t.is(head.headers.etag, get.headers.etag);
  t.is(head.headers["x-checksum-sha256"], sha256(PATTERN));
  t.is((await request(server, "GET", "/b/missing.bin")).status, 404);
  t.is((await request(server, "GET", "/b")).status, 404, "a folder is not a file");
  await sb.checkOutside();
});

test("a file changed by other means gets its new digest (the cache is keyed by the file's version)", async (t) => {
  const sb = await sandbox(t);
  const file = path.join(sb.root, "b", "f.txt");
  await writeFile(file, "first version\n");
  const server = await serve(t, sb);
  t.is((await request(server, "HEAD", "/b/f.txt")).headers["x-checksum-sha256"], sha256("first version\n"));
  t.is((await readdir(path.join(sb.root, ".bundle-meta"))).length, 1, "the digest was recorded once");
  await writeFile(file, "other version\n"); // same size: only the mtime tells
  await utimes(file, new Date(), new Date(Date.now() + 5000));
  const head = await request(server, "HEAD", "/b/f.txt");
  t.is(head.headers["x-checksum-sha256"], sha256("other version\n"));
  t.is(
    (await request(server, "GET", "/_list/b")).body.toString(),
    JSON.stringify({ files: [{ path: "f.txt", size: 14, sha256: sha256("other version\n") }] }),
  );
  await sb.checkOutside();
});

test("Range requests: first bytes, suffix, middle, and 416 when unsatisfiable", async (t) => {
  const sb = await sandbox(t);
  await writeFile(path.join(sb.root, "b", "data.bin"), PATTERN);
  const server = await serve(t, sb);
  const first = await request(server, "GET", "/b/data.bin", { range: "bytes=0-9" });
  t.is(first.status, 206);
  t.deepEqual(first.body, PATTERN.subarray(0, 10));
  t.is(first.headers["content-range"], "bytes 0-9/1000");
  t.is(first.headers["content-length"], "10");
  t.is(first.headers.etag, `"${sha256(PATTERN)}"`, "the ETag names the whole file");
  const suffix = await request(server, "GET", "/b/data.bin", { range: "bytes=-5" });
  t.is(suffix.status, 206);
  t.deepEqual(suffix.body, PATTERN.subarray(995));
  t.is(suffix.headers["content-range"], "bytes 995-999/1000");
  const middle = await request(server, "GET", "/b/data.bin", { range: "bytes=300-599" });
  t.is(middle.status, 206);
  t.deepEqual(middle.body, PATTERN.subarray(300, 600));
  t.is(middle.headers["content-length"], "300");
  const open = await request(server, "GET", "/b/data.bin", { range: "bytes=990-" });
  t.deepEqual(open.body, PATTERN.subarray(990));
  const beyond = await request(server, "GET", "/b/data.bin", { range: "bytes=1000-1100" });
  t.is(beyond.status, 416);
  t.is(beyond.headers["content-range"], "bytes */1000");
  await sb.checkOutside();
});

test("conditional GET: If-None-Match gives 304, If-Range keeps or drops the range", async (t) => {
  const sb = await sandbox(t);
  await writeFile(path.join(sb.root, "b", "data.bin"), PATTERN);
  const server = await serve(t, sb);
  const etag = `"${sha256(PATTERN)}"`;
  const cached = await request(server, "GET", "/b/data.bin", { "if-none-match": etag });
  t.is(cached.status, 304);
  t.is(cached.body.length, 0);
  t.is(cached.headers.etag, etag);
  t.is((await request(server, "GET", "/b/data.bin", { "if-none-match": `"other", ${etag}` })).status, 304);
  const stale = await request(server, "GET", "/b/data.bin", { "if-none-match": `"${"0".repeat(64)}"` });
  t.is(stale.status, 200);
  t.deepEqual(stale.body, PATTERN);
  const same = await request(server, "GET", "/b/data.bin", { range: "bytes=0-1", "if-range": etag });
  t.is(same.status, 206);
  const changed = await request(server, "GET", "/b/data.bin", { range: "bytes=0-1", "if-range": '"old"' });
  t.is(changed.status, 200, "a changed file is sent whole");
  t.deepEqual(changed.body, PATTERN);
  await sb.checkOutside();
});

test("an upload with the right token is stored whole, listed with its sha256, and the token is never logged", async (t) => {
  const sb = await sandbox(t);
  const server = await serve(t, sb);
  const body = Buffer.concat([PATTERN, Buffer.from("tail")]);
  const put = await upload(server, "/b/deep/er/file.bin", body);
  t.is(put.status, 201);
  t.deepEqual(JSON.parse(put.body.toString()), {
    path: "deep/er/file.bin",
    size: body.length,
    sha256: sha256(body),
  });
  t.deepEqual(await readFile(path.join(sb.root, "b", "deep", "er", "file.bin")), body);
  const again = await upload(server, "/b/deep/er/file.bin", PATTERN);
  t.is(again.status, 201, "a replaced file is 201 too");
  t.deepEqual(await readFile(path.join(sb.root, "b", "deep", "er", "file.bin")), PATTERN);
  await writeFile(path.join(sb.root, "b", "placed.txt"), "placed by hand\n");
  const list = await request(server, "GET", "/_list/b");
  t.is(list.status, 200);
  t.deepEqual(JSON.parse(list.body.toString()), {
    files: [
      { path: "deep/er/file.bin", size: 1000, sha256: sha256(PATTERN) },
      { path: "placed.txt", size: 15, sha256: sha256("placed by hand\n") },
    ],
  });
  t.is((await request(server, "GET", "/_list/nope")).status, 404);
  t.deepEqual(await tempFiles(sb.root), []);
  const putLine = server.log.find((l) => l.includes("PUT /b/deep/er/file.bin 201"));
  t.regex(putLine ?? "", /^\S+ 127\.0\.0\.1 PUT \/b\/deep\/er\/file\.bin 201 in=1004 out=\d+ [\d.]+ms$/);
  t.false(server.log.some((l) => l.includes(TOKEN) || /bearer|authorization/i.test(l)));
  await sb.checkOutside();
});

test("uploads without a token or with a wrong one are refused with 401, and nothing is stored", async (t) => {
  const sb = await sandbox(t);
  const server = await serve(t, sb);
  const cases: Record<string, string>[] = [
    {},
    { authorization: "Bearer wrong" },
    { authorization: `Bearer ${TOKEN}x` },
    { authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString("base64")}` },
    { authorization: "Bearer" },
  ];
  for (const auth of cases) {
    const res = await request(
      server,
      "PUT",
      "/b/f.txt",
      { ...auth, "x-checksum-sha256": sha256(PATTERN) },
      PATTERN,
    );
    t.is(res.status, 401, JSON.stringify(auth));
    t.is(res.headers["www-authenticate"], 'Bearer realm="bundle"');
  }
  t.false(await exists(path.join(sb.root, "b", "f.txt")));
  t.deepEqual(await tempFiles(sb.root), []);
  t.false(server.log.some((l) => l.includes(TOKEN)));
  await sb.checkOutside();
});

test("a server started without a token refuses every upload with 403", async (t) => {
  const sb = await sandbox(t);
  const server = await serve(t, sb, { token: undefined });
  t.is((await upload(server, "/b/f.txt", PATTERN)).status, 403);
  t.is(
    (await request(server, "PUT", "/b/f.txt", { "x-checksum-sha256": sha256(PATTERN) }, PATTERN)).status,
    403,
  );
  t.false(await exists(path.join(sb.root, "b", "f.txt")));
  t.is((await request(server, "GET", "/b/f.txt")).status, 404);
  await sb.checkOutside();
});

test("a body that does not match its declared sha256 is refused with 400 naming both, and nothing is kept", async (t) => {
  const sb = await sandbox(t);
  const server = await serve(t, sb);
  const declared = sha256("something else");
  const res = await upload(server, "/b/f.bin", PATTERN, { "x-checksum-sha256": declared });
  t.is(res.status, 400);
  const message = JSON.parse(res.body.toString()).error as string;
  t.true(message.includes(declared) && message.includes(sha256(PATTERN)), message);
  t.false(await exists(path.join(sb.root, "b", "f.bin")));
  t.deepEqual(await tempFiles(sb.root), [], "the temporary file is removed");
  const none = await request(server, "PUT", "/b/f.bin", { authorization: `Bearer ${TOKEN}` }, PATTERN);
  t.is(none.status, 400, "the checksum header is required");
  const bad = await upload(server, "/b/f.bin", PATTERN, { "x-checksum-sha256": "sha256:abc" });
  t.is(bad.status, 400);
  t.false(await exists(path.join(sb.root, "b", "f.bin")));
  await sb.checkOutside();
});

/** Ways out of root, each with the statuses it may get: never 2xx, never the secret. */
const ESCAPES: [string, number[]][] = [
  ["/b/../outside/secret.txt", [400]],
  ["/../outside/secret.txt", [400]],
  ["/b/%2e%2e/%2e%2e/outside/secret.txt", [400]],
  ["/b/%2E%2E/x", [400]],
  ["/b/.%2e/x", [400]],
  ["/b/..%2f..%2foutside%2fsecret.txt", [400]],
  ["/b%2f..%2f..%2foutside%2fsecret.txt", [400]],
  ["/b/..%5c..%5coutside%5csecret.txt", [400]],
  ["/b/%00", [400]],
  ["/b/f%00.txt", [400]],
  ["//etc/passwd", [400]],
  ["/%2fetc%2fpasswd", [400]],
  ["/b//x", [400]],
  ["/b/%zz", [400]],
  ["/b/link-out", [403, 404]],
  ["/b/dir-out/secret.txt", [403, 404]],
  ["/b/dir-out/sub/x.txt", [403, 404]],
  ["/.bundle-meta/x", [403, 404]],
  ["/.bundle-tmp/x", [403, 404]],
  ["/b/link-meta", [403, 404]],
];

async function plantEscapes(sb: Sandbox): Promise<void> {
  await symlink(path.join(sb.outside, "secret.txt"), path.join(sb.root, "b", "link-out"));
  await symlink(path.join("..", "..", "outside"), path.join(sb.root, "b", "dir-out"));
  await symlink(path.join(sb.root, ".bundle-meta"), path.join(sb.root, "b", "link-meta"));
  await writeFile(path.join(sb.root, "b", "inside.txt"), "inside\n");
  await symlink("inside.txt", path.join(sb.root, "b", "link-in"));
}

test("GET and HEAD never leave root: .., encoded dots and slashes, NUL, absolute paths, hidden folders, symlinks out", async (t) => {
  const sb = await sandbox(t);
  await plantEscapes(sb);
  const server = await serve(t, sb);
  for (const [rawPath, statuses] of ESCAPES) {
    for (const method of ["GET", "HEAD"]) {
      const res = await request(server, method, rawPath);
      t.true(statuses.includes(res.status), `${method} ${rawPath} → ${res.status}`);
      t.false(res.body.toString().includes(MARKER), `${method} ${rawPath} sent nothing from outside`);
    }
  }
  const recorded = (await readdir(path.join(sb.root, ".bundle-meta")))[0];
  if (recorded) t.is((await request(server, "GET", `/.bundle-meta/${recorded}`)).status, 404);
  const inside = await request(server, "GET", "/b/link-in");
  t.is(inside.status, 200, "a symlink that stays inside root is served");
  t.is(inside.body.toString(), "inside\n");
  const list = JSON.parse((await request(server, "GET", "/_list/b")).body.toString()) as {
    files: { path: string }[];
  };
  t.deepEqual(
    list.files.map((f) => f.path),
    ["inside.txt", "link-in"],
    "links out of root and into its hidden folders are not listed",
  );
  t.is((await request(server, "GET", "/_list/..")).status, 400);
  t.is((await request(server, "GET", "/_list/%2e%2e")).status, 400);
  t.is((await request(server, "GET", "/_list/.bundle-meta")).status, 404);
  await sb.checkOutside();
});

test("PUT never writes outside root, nor into the server's folders, nor through a symlink", async (t) => {
  const sb = await sandbox(t);
  await plantEscapes(sb);
  const server = await serve(t, sb);
  const body = Buffer.from(`${MARKER} overwritten\n`);
  for (const [rawPath, statuses] of [
    ...ESCAPES.filter(([p]) => p !== "/b/link-out" && p !== "/b/link-meta"),
    ["/b/dir-out/new.txt", [403]],
    ["/b/dir-out/sub/new.txt", [403]],
    ["/b/dir-out/newdir/new.txt", [403]],
    ["/_list/b", [403]],
    ["/.bundle-meta/b/x", [403]],
    ["/top-level-file", [400]],
  ] as [string, number[]][]) {
    const res = await upload(server, rawPath, body);
    t.true(statuses.includes(res.status), `PUT ${rawPath} → ${res.status}`);
  }
  t.deepEqual(await tempFiles(sb.root), []);
  // A symlink as the target itself is replaced by the file (rename does not follow it).
  t.is((await upload(server, "/b/link-out", body)).status, 201);
  t.false((await lstat(path.join(sb.root, "b", "link-out"))).isSymbolicLink());
  t.deepEqual(await readFile(path.join(sb.root, "b", "link-out")), body);
  await sb.checkOutside();
});

test("an upload where a folder stands, or below a file, is refused with 409 and changes nothing", async (t) => {
  const sb = await sandbox(t);
  await mkdir(path.join(sb.root, "b", "folder", "inner"), { recursive: true });
  await writeFile(path.join(sb.root, "b", "file.txt"), "a file\n");
  const server = await serve(t, sb);
  t.is((await upload(server, "/b/folder", PATTERN)).status, 409);
  t.is((await upload(server, "/b/file.txt/below", PATTERN)).status, 409);
  t.true((await stat(path.join(sb.root, "b", "folder", "inner"))).isDirectory());
  t.is(await readFile(path.join(sb.root, "b", "file.txt"), "utf8"), "a file\n");
  t.deepEqual(await tempFiles(sb.root), []);
  await sb.checkOutside();
});

test("a body over the limit is refused with 413, by its Content-Length or while it streams, and nothing is kept", async (t) => {
  const sb = await sandbox(t);
  const server = await serve(t, sb, { maxUploadBytes: 4096 });
  const big = Buffer.alloc(64 * 1024, 1);
  const declared = await upload(server, "/b/big.bin", big);
  t.is(declared.status, 413);
  // Chunked: no Content-Length, so the server counts and stops reading at the limit.
  const { req, response } = open(server, "PUT", "/b/big.bin", {
    authorization: `Bearer ${TOKEN}`,
    "x-checksum-sha256": sha256(big),
  });
  req.on("error", () => undefined); // the server may close before the last chunk is written
  for (let i = 0; i < 16; i++) req.write(big.subarray(i * 4096, (i + 1) * 4096));
  req.end();
  const streamed = await response;
  t.is(streamed.status, 413);
  t.is(streamed.headers.connection, "close", "the rest of the body is not read");
  t.false(await exists(path.join(sb.root, "b", "big.bin")));
  t.deepEqual(await tempFiles(sb.root), []);
  t.is(
    (await upload(server, "/b/small.bin", big.subarray(0, 4096))).status,
    201,
    "the limit itself is allowed",
  );
  await sb.checkOutside();
});

test("two uploads to the same path at once: the file is always one of them, whole", async (t) => {
  const sb = await sandbox(t);
  const server = await serve(t, sb);
  const size = 4 * 1024 * 1024;
  const a = Buffer.alloc(size, "a");
  const b = Buffer.alloc(size, "b");
  const uploads = [a, b].map((body) =>
    open(server, "PUT", "/b/same.bin", {
      authorization: `Bearer ${TOKEN}`,
      "x-checksum-sha256": sha256(body),
      "content-length": String(size),
    }),
  );
  const chunk = 256 * 1024;
  let bothWriting = false;
  for (let offset = 0; offset < size; offset += chunk) {
    for (const [i, body] of [a, b].entries()) uploads[i]?.req.write(body.subarray(offset, offset + chunk));
    await sleep(5);
    if ((await tempFiles(sb.root)).length === 2) bothWriting = true;
  }
  for (const u of uploads) u.req.end();
  const answers = await Promise.all(uploads.map((u) => u.response));
  t.deepEqual(
    answers.map((r) => r.status),
    [201, 201],
  );
  t.true(bothWriting, "both uploads were being received at the same time");
  const stored = await readFile(path.join(sb.root, "b", "same.bin"));
  t.true(stored.equals(a) || stored.equals(b), "the stored file is one whole upload");
  const list = JSON.parse((await request(server, "GET", "/_list/b")).body.toString()) as {
    files: { sha256: string }[];
  };
  t.is(list.files[0]?.sha256, sha256(stored), "the listed digest is the stored file's");
  t.deepEqual(await tempFiles(sb.root), []);
  await sb.checkOutside();
});

test("an upload cut off by its client leaves neither a file nor a temporary file", async (t) => {
  const sb = await sandbox(t);
  const server = await serve(t, sb);
  const body = Buffer.alloc(1024 * 1024, 3);
  const { req, response } = open(server, "PUT", "/b/cut.bin", {
    authorization: `Bearer ${TOKEN}`,
    "x-checksum-sha256": sha256(body),
    "content-length": String(body.length),
  });
  response.catch(() => undefined);
  req.on("error", () => undefined);
  req.write(body.subarray(0, 100_000));
  await waitFor(async () => (await tempFiles(sb.root)).length === 1);
  req.destroy();
  await waitFor(async () => (await tempFiles(sb.root)).length === 0);
  t.false(await exists(path.join(sb.root, "b", "cut.bin")));
  await waitFor(async () => server.log.some((l) => l.includes("PUT /b/cut.bin")));
  t.regex(server.log.find((l) => l.includes("PUT /b/cut.bin")) ?? "", /-aborted in=\d+/);
  await sb.checkOutside();
});

test("close() stops accepting, lets a running upload finish, then resolves", async (t) => {
  const sb = await sandbox(t);
  const server = await serve(t, sb);
  const body = Buffer.alloc(512 * 1024, 9);
  // A keep-alive client, whose connection would otherwise stay open after its answer.
  const agent = new http.Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  const { req, response } = open(
    server,
    "PUT",
    "/b/slow.bin",
    {
      authorization: `Bearer ${TOKEN}`,
      "x-checksum-sha256": sha256(body),
      "content-length": String(body.length),
    },
    agent,
  );
  req.write(body.subarray(0, 1000));
  await waitFor(async () => (await tempFiles(sb.root)).length === 1);
  let closed = false;
  const closing = server.close().then(() => (closed = true));
  await sleep(200);
  t.false(closed, "close waits for the upload");
  const refused = await request(server, "GET", "/b/slow.bin").catch((err: NodeJS.ErrnoException) => err.code);
  t.is(refused, "ECONNREFUSED", "no new connection is accepted");
  const started = Date.now();
  req.end(body.subarray(1000));
  t.is((await response).status, 201);
  await closing;
  t.true(Date.now() - started < 2000, `closed ${Date.now() - started} ms after the upload ended`);
  t.deepEqual(await readFile(path.join(sb.root, "b", "slow.bin")), body);
  await sb.checkOutside();
});

test("close() gives up on an upload that never ends after its timeout, and the upload leaves nothing", async (t) => {
  const sb = await sandbox(t);
  const server = await serve(t, sb, { closeTimeoutMs: 300 });
  const { req, response } = open(server, "PUT", "/b/stuck.bin", {
    authorization: `Bearer ${TOKEN}`,
    "x-checksum-sha256": sha256("x"),
    "content-length": "1000000",
  });
  response.catch(() => undefined);
  req.on("error", () => undefined);
  req.write(Buffer.alloc(1000));
  await waitFor(async () => (await tempFiles(sb.root)).length === 1);
  const started = Date.now();
  await server.close();
  const took = Date.now() - started;
  t.true(took >= 250 && took < 3000, `close took ${took} ms`);
  await waitFor(async () => (await tempFiles(sb.root)).length === 0);
  t.false(await exists(path.join(sb.root, "b", "stuck.bin")));
  await sb.checkOutside();
});

test("the server needs no privileges: it runs as the user that starts it and writes files that user owns", async (t) => {
  const sb = await sandbox(t);
  const server = await serve(t, sb, { root: path.join(sb.root, "created", "on", "start") });
  t.is((await upload(server, "/b/f.txt", Buffer.from("x"))).status, 201);
  const s = await stat(path.join(sb.root, "created", "on", "start", "b", "f.txt"));
  t.is(s.uid, process.getuid?.() ?? s.uid);
  t.is(s.mode & 0o133, 0, "no execute bits, no write for others");
  await sb.checkOutside();
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(10);
  }
}
