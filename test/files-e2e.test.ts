/**
 * Files end to end: a real git repository, a real HTTP download and templates prepared into a
 * bundle, then uploaded to `bundle serve`'s file server with a token, and read back over HTTP.
 */
import test from "ava";
import http from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { makeGitRepo } from "./helpers/git.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { startFileServer } from "../src/fileserver/server.js";
import { startRegistry } from "./helpers/registry.js";
import { pushImage } from "./helpers/images.js";
import type { Lock } from "../src/bundle/lock.js";

const tool = randomBytes(50_000);
const toolSha = createHash("sha256").update(tool).digest("hex");
const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

async function downloadsServer(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const srv = http.createServer((_req, res) =>
    res.writeHead(200, { "content-length": tool.length }).end(tool),
  );
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

test("prepare archives git, downloads and renders; upload serves them with site values bound", async (t) => {
  const repo = await makeGitRepo({ chart: "demo" });
  t.teardown(repo.cleanup);
  const commit = repo.commits.at(-1) ?? "";
  const downloads = await downloadsServer(t);
  const { dir, cleanup } = await tempFiles(
    {
      "bundle.yml": [
        "name: site-demo",
        "values: { greeting: hello }",
        "git:",
        `  - url: ${repo.url}`,
        `    commit: ${commit}`,
        "    archive: app.tar.gz",
        "    chart: helm/demo",
        "files:",
        `  - url: ${downloads}/dl/tool-1.0.tgz`,
        `    sha256: ${toolSha}`,
        "templates:",
        "  - source: init.sh",
        "    dest: files/init.sh",
        '    mode: "0755"',
        "  - source: notes.txt",
        "    dest: charts/demo/NOTES.txt",
      ].join("\n"),
      "init.sh": "curl -fsSL {{FILESERVER_URL}}/app.tar.gz # from {{MAIN_NODE_IP}}\n",
      "notes.txt": "{{greeting}} from the chart\n",
    },
    "site",
  );
  t.teardown(cleanup);
  const env = { BUNDLE_CACHE_DIR: path.join(dir, "cache") };
  const out = path.join(dir, "out");
  const prepared = await runCli(["prepare", "-o", out], { cwd: dir, env });
  t.is(prepared.code, 0, prepared.stderr);

  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  const archive = await readFile(path.join(out, "files", "app.tar.gz"));
  t.deepEqual(lock.git, [
    { url: repo.url, commit, archive: "app.tar.gz", size: archive.length, sha256: sha256(archive) },
  ]);
  t.deepEqual(
    lock.files.map((f) => [f.path, f.sha256]),
    [
      ["app.tar.gz", sha256(archive)],
      ["tool-1.0.tgz", toolSha],
    ],
  );
  t.is(await readFile(path.join(out, "charts", "demo", "NOTES.txt"), "utf8"), "hello from the chart\n");
  t.truthy(await stat(path.join(out, "charts", "demo", "Chart.yaml")));

  const root = path.join(dir, "served");
  const server = await startFileServer({
    root,
    host: "127.0.0.1",
    port: 0,
    token: "t0ken-value",
    log: () => undefined,
  });
  t.teardown(() => server.close());
  await writeFile(path.join(dir, "token"), "t0ken-value\n");

  const noToken = await runCli(["upload", out, "--fileserver", server.url], { cwd: dir });
  t.is(noToken.code, 2, noToken.stderr);
  t.regex(noToken.stderr, /the bundle holds files: .*give it with --token-file FILE/);
  const noServer = await runCli(["upload", out], { cwd: dir });
  t.is(noServer.code, 2);
  t.regex(noServer.stderr, /give the file server with --fileserver/);

  const args = ["--json", "upload", out, "--fileserver", server.url, "--token-file", "token"];
  const first = await runCli(args, { cwd: dir });
  t.is(first.code, 0, first.stderr);
  t.false(first.stdout.includes("t0ken-value") || first.stderr.includes("t0ken-value"));
  const get = async (p: string) =>
    Buffer.from(await (await fetch(`${server.url}/site-demo/${p}`)).arrayBuffer());
  t.deepEqual(await get("app.tar.gz"), archive);
  t.deepEqual(await get("tool-1.0.tgz"), tool);
  const host = new URL(server.url).hostname;
  t.is((await get("init.sh")).toString(), `curl -fsSL ${server.url}/site-demo/app.tar.gz # from ${host}\n`);

  const second = await runCli(args, { cwd: dir });
  t.is(second.code, 0, second.stderr);
  const files = (JSON.parse(second.stdout) as { files: { sent: string[]; skipped: string[] } }).files;
  t.deepEqual(files.sent, [], "a second upload sends nothing");
  t.deepEqual(files.skipped.sort(), ["app.tar.gz", "init.sh", "tool-1.0.tgz"]);
});

test("a download with extract: true is unpacked beside itself, each file listed with its sha256", async (t) => {
  const { dir, cleanup } = await tempFiles(
    { "src/bin/tool": "#!/bin/sh\necho tool\n", "src/README": "read me\n" },
    "x",
  );
  t.teardown(cleanup);
  const tarball = path.join(dir, "tool-1.0.tgz");
  const tar = await import("tar");
  await tar.c({ gzip: true, file: tarball, cwd: path.join(dir, "src") }, ["bin", "README"]);
  const bytes = await readFile(tarball);
  const srv = http.createServer((_req, res) =>
    res.writeHead(200, { "content-length": bytes.length }).end(bytes),
  );
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/tool-1.0.tgz`;
  await writeFile(
    path.join(dir, "bundle.yml"),
    `files:\n  - url: ${url}\n    path: tools/tool-1.0.tgz\n    extract: true\n`,
  );
  const r = await runCli(["prepare", "-o", path.join(dir, "out")], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /is not pinned; add {2}sha256: [0-9a-f]{64}/, "an unpinned download prints its sha256");
  t.is(
    await readFile(path.join(dir, "out", "files", "tools", "tool-1.0", "bin", "tool"), "utf8"),
    "#!/bin/sh\necho tool\n",
  );
  const lock = JSON.parse(await readFile(path.join(dir, "out", "bundle.lock.json"), "utf8")) as Lock;
  t.deepEqual(
    lock.files.map((f) => [f.path, f.sha256]),
    [
      ["tools/tool-1.0.tgz", sha256(bytes)],
      ["tools/tool-1.0/README", sha256("read me\n")],
      ["tools/tool-1.0/bin/tool", sha256("#!/bin/sh\necho tool\n")],
    ],
  );
});

test("upload without --token-file is refused before any image moves; a refused file upload counts as nothing moved", async (t) => {
  const [source, site] = await Promise.all([startRegistry(), startRegistry()]);
  t.teardown(() => Promise.all([source.stop(), site.stop()]).then(() => undefined));
  const image = await pushImage(source, "testbed/app", "v1", { kind: "single", layers: ["app-layer"] });
  const { dir, cleanup } = await tempFiles(
    {
      "bundle.yml": [
        "name: tokens",
        "images:",
        `  - ref: ${image.ref}`,
        "    platforms: [linux/amd64]",
        "templates:",
        "  - source: notes.txt",
        "    dest: files/notes.txt",
      ].join("\n"),
      "notes.txt": "pull from {{IMG_REPO}}\n",
      "wrong-token": "not-the-token\n",
    },
    "tokens",
  );
  t.teardown(cleanup);
  const out = path.join(dir, "out");
  t.is((await runCli(["prepare", "-o", out], { cwd: dir })).code, 0);
  const server = await startFileServer({
    root: path.join(dir, "served"),
    host: "127.0.0.1",
    port: 0,
    token: "the-token",
    log: () => undefined,
  });
  t.teardown(() => server.close());
  const site_ = ["--registry", site.host, "--fileserver", server.url];

  const noToken = await runCli(["upload", out, ...site_], { cwd: dir });
  t.is(noToken.code, 2, noToken.stderr);
  t.regex(noToken.stderr, /^error: the bundle holds files: .*--token-file FILE$/m);
  t.notRegex(noToken.stderr, /images:/, "no image work started");
  const tags = await fetch(`${site.url}/v2/teleinfra/app/tags/list`);
  t.is(tags.status, 404, "the site's registry got nothing");

  const refused = await runCli(["upload", out, ...site_, "--token-file", "wrong-token"], { cwd: dir });
  t.is(refused.code, 1, refused.stderr);
  t.regex(refused.stderr, /upload refused \(HTTP 401/);
  t.regex(refused.stderr, /^files: 0 B moved/m);
  t.notRegex(refused.stdout, /sent/);
});
