/**
 * Hostile image stores (issue 11, "parse, don't cast"): a crafted `index.json` or manifest in a
 * bundle, a registry or a Docker daemon that sends a crafted manifest or `docker save` archive.
 * Each is a clear error through the CLI naming the file (or URL), the field and the value: exit 2
 * for a bundle's file, exit 1 for what a server sent; never a stack trace, and a canary folder
 * beside the bundle stays as it was. Also: `load --docker` with a relative folder, a `../` name
 * that must not reach the daemon's API, and helm taking a release name as a name, not an option.
 */
import test, { type ExecutionContext } from "ava";
import { spawn } from "node:child_process";
import { cp, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import * as tar from "tar";
import { runCli, tempFiles, type CliResult } from "./helpers/cli.js";
import { snapshot } from "./helpers/bundles.js";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { startDockerd, type TestDockerd } from "./helpers/dockerd.js";
import { startFaultProxy } from "./helpers/faultProxy.js";
import { pushImage, sha256Digest, type PushedImage } from "./helpers/images.js";
import { HELM } from "./helpers/helm.js";
import { helmArgs, type PreparedRelease } from "../src/stages/deploy.js";
import type { Lock } from "../src/bundle/lock.js";

interface Shared {
  registry: TestRegistry;
  dockerd: TestDockerd;
  image: PushedImage;
  /** The folder holding the sound bundle `base/`, the crafted copies and the canary. */
  root: string;
  cleanup: () => Promise<void>;
}

let shared: Shared | undefined;

test.before(async () => {
  const [registry, dockerd] = await Promise.all([startRegistry(), startDockerd()]);
  const image = await pushImage(registry, "testbed/app", "v1", { kind: "single", layers: ["hostile-app"] });
  const { dir, cleanup } = await tempFiles(
    {
      "bundle.yml": `images:\n  - ref: ${image.ref}\n    platforms: [linux/amd64]\n`,
      "canary/secret.txt": "canary\n",
    },
    "site",
  );
  shared = { registry, dockerd, image, root: dir, cleanup };
  const r = await runCli(["prepare", "-o", "base"], { cwd: dir });
  if (r.code !== 0) throw new Error(`prepare of the sound bundle failed: ${r.stderr}`);
});

test.after.always(async () => {
  await Promise.all([shared?.registry.stop(), shared?.dockerd.stop()]);
  await shared?.cleanup();
});

function env(): Shared {
  if (!shared) throw new Error("test.before did not run");
  return shared;
}

type Json = Record<string, unknown>;

const readJson = async (file: string) => JSON.parse(await readFile(file, "utf8")) as Json;
const writeJson = (file: string, data: unknown) => writeFile(file, JSON.stringify(data, null, 2));

/** A copy of the sound bundle under `name`, changed by `craft`. */
async function crafted(name: string, craft: (dir: string) => Promise<void>): Promise<string> {
  const dir = path.join(env().root, name);
  await rm(dir, { recursive: true, force: true });
  await cp(path.join(env().root, "base"), dir, { recursive: true });
  await craft(dir);
  return dir;
}

/** Changes the first entry of the bundle's images/index.json. */
function indexEntry(change: (entry: Json, index: Json) => void) {
  return async (dir: string) => {
    const file = path.join(dir, "images", "index.json");
    const index = await readJson(file);
    change((index.manifests as Json[])[0] as Json, index);
    await writeJson(file, index);
  };
}

/**
 * Replaces the image's manifest by a changed one, stored under its own digest and named by
 * index.json and the lock alike: only what it says is wrong, not its digest.
 */
function manifest(change: (m: Json) => void) {
  return async (dir: string) => {
    const lockFile = path.join(dir, "bundle.lock.json");
    const lock = (await readJson(lockFile)) as unknown as Lock;
    const img = lock.images[0];
    if (!img) throw new Error("the sound bundle has no image");
    const blobs = path.join(dir, "images", "blobs", "sha256");
    const m = await readJson(path.join(blobs, img.digest.slice(7)));
    change(m);
    const bytes = Buffer.from(JSON.stringify(m));
    const digest = sha256Digest(bytes);
    await writeFile(path.join(blobs, digest.slice(7)), bytes);
    Object.assign(img, { digest, mirrorDigest: digest, size: bytes.length });
    img.platforms = img.platforms.map((p) => ({ ...p, digest, size: bytes.length }));
    await writeJson(lockFile, lock);
    await indexEntry((e) => Object.assign(e, { digest, size: bytes.length }))(dir);
  };
}

/** The result is a clear error: its exit code, the message, no stack trace, the canary as it was. */
async function refused(
  t: ExecutionContext,
  args: string[],
  code: 1 | 2,
  message: RegExp,
  opts: { env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  const canary = path.join(env().root, "canary");
  const before = await snapshot(canary);
  const r = await runCli(args, { cwd: env().root, ...opts });
  t.is(r.code, code, `${args.join(" ")}: ${r.stderr}`);
  t.regex(r.stdout + r.stderr, message, args[0]);
  t.false(/TypeError|unexpected error|\n\s+at /.test(r.stderr), `${args[0]}: no stack trace: ${r.stderr}`);
  t.deepEqual(await snapshot(canary), before, "nothing beside the bundle changed");
  return r;
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
const offline = ["--fileserver", "http://127.0.0.1:9"];

test.serial("the sound bundle uploads, and loads into the daemon from a relative folder", async (t) => {
  const site = await startRegistry();
  t.teardown(() => site.stop());
  const up = await runCli(["upload", "base", "--registry", site.host, ...offline], { cwd: env().root });
  t.is(up.code, 0, up.stderr);
  // A relative DIR: the blob files the daemon reads are linked by their absolute paths.
  const load = await runCli(["--json", "load", "base", "--docker"], {
    cwd: env().root,
    env: env().dockerd.env,
  });
  t.is(load.code, 0, load.stderr);
  const result = JSON.parse(load.stdout) as { images: { tag: string; imageId: string; action: string }[] };
  const config = env().image.blobs[0]?.digest ?? "";
  t.deepEqual(result.images, [
    {
      ref: env().image.ref,
      tag: env().image.ref,
      imageId: config,
      platform: "linux/amd64",
      action: "loaded",
    },
  ] as never);
  const info = (await env().dockerd.docker.getImage(env().image.ref).inspect()) as { Id: string };
  t.is(info.Id, config, "the daemon holds the image under its tag, its id the config digest");
});

const badIndex: [string, (e: Json, i: Json) => void, RegExp][] = [
  [
    "a digest with ../ in it",
    (e) => (e.digest = "sha256:../../../canary/secret.txt"),
    /manifests\[0\]\.digest: expected a digest sha256:<64 lowercase hex digits>, got "sha256:\.\.\/\.\.\/\.\.\/canary\/secret\.txt"/,
  ],
  [
    "a negative size",
    (e) => (e.size = -5),
    /manifests\[0\]\.size: expected a non-negative whole number of bytes, got -5/,
  ],
  [
    "manifests that are not a list",
    (_, i) => (i.manifests = { a: 1 }),
    /manifests: expected a list, got a map/,
  ],
];

for (const [what, craft, message] of badIndex) {
  test.serial(`an index.json with ${what}: upload and load exit 2 naming it, verify names it`, async (t) => {
    const dir = await crafted(`index-${what.replace(/\W+/g, "-")}`, indexEntry(craft));
    const named = new RegExp(`${esc(path.join(dir, "images", "index.json"))}: ${message.source}`);
    await refused(t, ["upload", dir, "--registry", env().registry.host, ...offline], 2, named);
    await refused(t, ["load", dir, "--docker"], 2, named, { env: env().dockerd.env });
    await refused(t, ["verify", dir], 1, named);
  });
}

const badManifest: [string, (m: Json) => void, RegExp][] = [
  [
    "a negative layer size",
    (m) => ((m.layers as Json[])[0]!.size = -1),
    /layers\[0\]\.size: expected a non-negative whole number of bytes, got -1/,
  ],
  ["layers that are not a list", (m) => (m.layers = { 0: m.layers }), /layers: expected a list, got a map/],
  [
    "a config digest with ../ in it",
    (m) => ((m.config as Json).digest = "sha256:../../canary/secret.txt"),
    /config\.digest: expected a digest sha256:<64 lowercase hex digits>, got "sha256:\.\.\/\.\.\/canary\/secret\.txt"/,
  ],
];

for (const [what, craft, message] of badManifest) {
  test.serial(`a bundle's manifest with ${what}: upload and load exit 2 naming its file`, async (t) => {
    const dir = await crafted(`manifest-${what.replace(/\W+/g, "-")}`, manifest(craft));
    const lock = (await readJson(path.join(dir, "bundle.lock.json"))) as unknown as Lock;
    const file = path.join(dir, "images", "blobs", "sha256", lock.images[0]!.digest.slice(7));
    const named = new RegExp(`${esc(file)}: ${message.source}`);
    await refused(t, ["upload", dir, "--registry", env().registry.host, ...offline], 2, named);
    await refused(t, ["load", dir, "--docker"], 2, named, { env: env().dockerd.env });
  });
}

test.serial(
  "load refuses an index.json image name or a lock mirror name with ../ before the daemon",
  async (t) => {
    const daemonImages = async () => (await env().dockerd.docker.listImages()).length;
    const before = await daemonImages();
    const ref = await crafted(
      "ref-name",
      indexEntry((e) => {
        (e.annotations as Json)["org.opencontainers.image.ref.name"] = "../../etc:passwd";
      }),
    );
    await refused(
      t,
      ["load", ref, "--docker"],
      2,
      /index\.json of OCI layout .*ref-name\/images: manifests\[0\]\.annotations\["org\.opencontainers\.image\.ref\.name"\]: invalid image reference "\.\.\/\.\.\/etc:passwd"/,
      { env: env().dockerd.env },
    );
    const mirror = await crafted("mirror-name", async (dir) => {
      const file = path.join(dir, "bundle.lock.json");
      const lock = await readJson(file);
      (lock.images as Json[])[0]!.mirror = "../etc:passwd";
      await writeJson(file, lock);
    });
    await refused(
      t,
      ["load", mirror, "--docker", "--tag-as", "mirror"],
      2,
      new RegExp(
        `${esc(path.join(mirror, "bundle.lock.json"))}: images\\[0\\]\\.mirror: expected an OCI repository name .*, got "\\.\\./etc:passwd"`,
      ),
      { env: env().dockerd.env },
    );
    t.is(await daemonImages(), before, "the daemon got nothing");
  },
);

test.serial(
  "a registry that sends a crafted manifest: prepare exits 1 naming the URL, field and value",
  async (t) => {
    const proxy = await startFaultProxy(env().registry.url);
    t.teardown(() => proxy.stop());
    const { image } = env();
    const good = JSON.parse(image.manifestBytes.toString()) as Json;
    const cases: [string, Json, RegExp][] = [
      ["layers", { ...good, layers: { 0: good.layers } }, /layers: expected a list, got a map/],
      [
        "config",
        { ...good, config: { ...(good.config as Json), digest: "sha256:../../../canary/x" } },
        /config\.digest: expected a digest sha256:<64 lowercase hex digits>, got "sha256:\.\.\/\.\.\/\.\.\/canary\/x"/,
      ],
    ];
    for (const [what, body, message] of cases) {
      proxy.clearRules();
      proxy.addRule({
        path: /\/manifests\//,
        times: 1000,
        fault: { kind: "status", status: 200, body: JSON.stringify(body) },
      });
      const def = path.join(env().root, `registry-${what}.yml`);
      await writeFile(def, `images:\n  - ref: ${proxy.host}/testbed/app:v1\n    platforms: [linux/amd64]\n`);
      const url = `http://${proxy.host}/v2/testbed/app/manifests/v1`;
      await refused(
        t,
        ["prepare", "-f", def, "-o", `registry-${what}`],
        1,
        new RegExp(`image ${esc(proxy.host)}/testbed/app:v1 from ${esc(url)}: ${message.source}`),
      );
    }
  },
);

/**
 * A Docker daemon stand-in on a unix socket that knows one image and answers `docker save` with
 * `files` (a crafted manifest.json): what a compromised or buggy daemon could send.
 */
async function craftedDaemon(t: ExecutionContext, files: Record<string, string>): Promise<NodeJS.ProcessEnv> {
  const dir = path.join(env().root, `daemon-${Math.random().toString(36).slice(2)}`);
  await mkdir(path.join(dir, "save"), { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, "save", name), text);
  const server = http.createServer((req, res) => {
    const url = req.url ?? "";
    if (req.method === "GET" && /^(?:\/v[\d.]+)?\/images\/.+\/json$/.test(url)) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ Id: sha256Digest(files["config.json"] ?? "") }));
    } else if (req.method === "GET" && /^(?:\/v[\d.]+)?\/images\/.+\/get$/.test(url)) {
      res.writeHead(200, { "content-type": "application/x-tar" });
      tar.c({ cwd: path.join(dir, "save"), portable: true }, Object.keys(files)).pipe(res);
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ message: `no such thing: ${url}` }));
    }
  });
  const socket = path.join(dir, "docker.sock");
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { DOCKER_HOST: `unix://${socket}` };
}

test.serial(
  "a docker save manifest.json with ../ paths: prepare exits 1 naming the field and value",
  async (t) => {
    const config = JSON.stringify({
      os: "linux",
      architecture: "amd64",
      rootfs: { type: "layers", diff_ids: [] },
    });
    const cases: [string, Json, RegExp][] = [
      [
        "layer",
        { Config: "config.json", RepoTags: ["local/app:1.0"], Layers: ["../../../canary/secret.txt"] },
        /\[0\]\.Layers\[0\]: expected a relative path inside the archive without \.\., got "\.\.\/\.\.\/\.\.\/canary\/secret\.txt"/,
      ],
      [
        "config",
        { Config: "/etc/passwd", RepoTags: null, Layers: [] },
        /\[0\]\.Config: expected a relative path inside the archive without \.\., got "\/etc\/passwd"/,
      ],
    ];
    for (const [what, entry, message] of cases) {
      const daemon = await craftedDaemon(t, {
        "manifest.json": JSON.stringify([entry]),
        "config.json": config,
      });
      const def = path.join(env().root, `daemon-${what}.yml`);
      await writeFile(def, "images:\n  - ref: docker-daemon:local/app:1.0\n    platforms: [linux/amd64]\n");
      await refused(
        t,
        ["prepare", "-f", def, "-o", `daemon-${what}`],
        1,
        new RegExp(`manifest\\.json of docker save docker\\.io/local/app:1\\.0: ${message.source}`),
        { env: daemon },
      );
    }
  },
);

/** A chart of one ConfigMap and a post-renderer that leaves a mark when helm runs it. */
async function chartAndRenderer(dir: string): Promise<{ chart: string; renderer: string; mark: string }> {
  const chart = path.join(dir, "chart");
  await mkdir(path.join(chart, "templates"), { recursive: true });
  await writeFile(path.join(chart, "Chart.yaml"), "apiVersion: v2\nname: c\nversion: 0.1.0\n");
  await writeFile(
    path.join(chart, "templates", "cm.yaml"),
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
  );
  await writeFile(path.join(chart, "values.yaml"), "");
  const mark = path.join(dir, "post-renderer-ran");
  const renderer = path.join(dir, "renderer.sh");
  await writeFile(renderer, `#!/bin/sh\ntouch '${mark}'\ncat\n`, { mode: 0o755 });
  return { chart, renderer, mark };
}

function runHelm(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(HELM, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stderr }));
  });
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

test.serial("helm takes the release name after -- as a name: --post-renderer=… never runs", async (t) => {
  const dir = path.join(env().root, "helm");
  const { chart, renderer, mark } = await chartAndRenderer(dir);
  const generated = path.join(chart, "values.yaml");
  const p = {
    release: { name: `--post-renderer=${renderer}`, chart: "c", namespace: "demo", valuesFiles: [] },
    dir,
    chartDir: chart,
    generated,
    valuesFiles: [],
    valuesNames: [],
  } as PreparedRelease;
  const args = helmArgs("template", p, { timeout: "1m" });
  t.deepEqual(args.slice(-3), ["--", `--post-renderer=${renderer}`, chart]);
  const safe = await runHelm(args);
  t.not(safe.code, 0);
  t.regex(safe.stderr, /invalid release name/);
  t.false(await exists(mark), "the post-renderer did not run");
  // The same arguments without `--`: the real helm takes the name as its option and runs it.
  const unsafe = await runHelm([...args.slice(0, -3), `--post-renderer=${renderer}`, chart]);
  t.is(unsafe.code, 0, unsafe.stderr);
  t.true(await exists(mark), "without -- the name is an option: this test can fail");

  // Through the CLI the lock parser refuses such a name before helm is looked for.
  const bundle = await crafted("release-option", async (b) => {
    const file = path.join(b, "bundle.lock.json");
    const lock = await readJson(file);
    lock.releases = [{ name: `--post-renderer=${renderer}`, chart: "c", namespace: "demo", valuesFiles: [] }];
    await writeJson(file, lock);
  });
  await rm(mark);
  await refused(
    t,
    ["deploy", bundle, "--dry-run", "--helm", HELM, "--registry", env().registry.host, ...offline],
    2,
    /bundle\.lock\.json: releases\[0\]\.name: expected a Helm release name .*, got "--post-renderer=/,
  );
  t.false(await exists(mark), "the post-renderer did not run");
});
