/** Pinned downloads from a real HTTP server the test owns: pins checked, partials resumed. */
import test from "ava";
import http from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { download } from "../src/files/download.js";
import { WorkError } from "../src/util/errors.js";
import { tempFiles } from "./helpers/cli.js";

const body = randomBytes(300_000);
const sha = createHash("sha256").update(body).digest("hex");

async function server(t: { teardown: (fn: () => Promise<void>) => void }) {
  const requests: { url: string; range?: string }[] = [];
  let failures = 0;
  const srv = http.createServer((req, res) => {
    requests.push({ url: req.url ?? "", ...(req.headers.range ? { range: req.headers.range } : {}) });
    if (req.url === "/flaky" && failures++ < 2) return void res.writeHead(503).end();
    if (req.url === "/missing") return void res.writeHead(404).end();
    if (req.url === "/moved") return void res.writeHead(302, { location: "/tool.tgz" }).end();
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    const start = m ? Number(m[1]) : 0;
    res.writeHead(m ? 206 : 200, { "content-length": body.length - start });
    res.end(body.subarray(start));
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, requests };
}

test("a pinned download is checked and stored; a wrong pin keeps nothing", async (t) => {
  const { url } = await server(t);
  const { dir, cleanup } = await tempFiles({});
  t.teardown(cleanup);
  const file = path.join(dir, "files", "tool.tgz");
  const got = await download(`${url}/tool.tgz`, file, {
    sha256: sha,
    partialDir: path.join(dir, ".partial"),
  });
  t.deepEqual(got, { size: body.length, sha256: sha });
  t.deepEqual(await readFile(file), body);
  const other = path.join(dir, "files", "other.tgz");
  const err = await t.throwsAsync(
    download(`${url}/tool.tgz`, other, { sha256: "0".repeat(64), partialDir: path.join(dir, ".partial") }),
    {
      instanceOf: WorkError,
    },
  );
  t.regex(err?.message ?? "", new RegExp(`/tool.tgz: expected sha256 0{64}, got ${sha}`));
  t.deepEqual((await readdir(path.join(dir, "files"))).sort(), ["tool.tgz"]);
  t.deepEqual(await readdir(path.join(dir, ".partial")), []);
});

test("a partial download is resumed with Range; 503s are retried", async (t) => {
  const { url, requests } = await server(t);
  const { dir, cleanup } = await tempFiles({});
  t.teardown(cleanup);
  const file = path.join(dir, "files", "tool.tgz");
  const partialDir = path.join(dir, ".partial");
  const name = createHash("sha256").update(file).digest("hex").slice(0, 32);
  await mkdir(partialDir, { recursive: true });
  await writeFile(path.join(partialDir, name), body.subarray(0, 100_000));
  await download(`${url}/tool.tgz`, file, { sha256: sha, partialDir });
  t.is(requests.at(-1)?.range, "bytes=100000-");
  t.deepEqual(await readFile(file), body);

  const flaky = path.join(dir, "files", "flaky");
  await download(`${url}/flaky`, flaky, { sha256: sha, partialDir, retry: { baseDelayMs: 10 } });
  t.is(requests.filter((r) => r.url === "/flaky").length, 3);
  await t.throwsAsync(download(`${url}/missing`, path.join(dir, "m"), { partialDir }), {
    message: /missing: not found \(404\)/,
  });
});

test("a download follows a redirect, as a release URL sends to its storage", async (t) => {
  const { url, requests } = await server(t);
  const { dir, cleanup } = await tempFiles({});
  t.teardown(cleanup);
  const file = path.join(dir, "files", "tool.tgz");
  const got = await download(`${url}/moved`, file, { sha256: sha, partialDir: path.join(dir, ".partial") });
  t.deepEqual(got, { size: body.length, sha256: sha });
  t.deepEqual(
    requests.map((r) => r.url),
    ["/moved", "/tool.tgz"],
  );
});
