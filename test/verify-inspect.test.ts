/**
 * `verify` and `inspect` on real bundles: the standard images from a Distribution registry, a
 * git archive, a download and a template, prepared with the CLI once; each test works on its
 * own copy of that bundle and spoils it in one way.
 */
import test from "ava";
import http from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { appendFile, cp, mkdir, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { seedStandardImages, type StandardImages } from "./helpers/images.js";
import { makeGitRepo, type TestGitRepo } from "./helpers/git.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import type { Lock } from "../src/bundle/lock.js";
import { formatVerify, verifyBundle } from "../src/stages/verify.js";
import { formatInspect, inspectBundle } from "../src/stages/inspect.js";
import { sha256File, standardImageLines } from "./helpers/bundles.js";
import { openBundle } from "../src/bundle/contents.js";

const tool = randomBytes(30_000);
const toolSha = createHash("sha256").update(tool).digest("hex");

interface Fixture {
  registry: TestRegistry;
  images: StandardImages;
  repo: TestGitRepo;
  server: http.Server;
  root: string;
  cleanup: () => Promise<void>;
  /** The prepared bundle; tests copy it before changing anything. */
  bundle: string;
  prepareError?: string;
}

let fixture: Fixture | undefined;
let copies = 0;

test.before(async () => {
  const registry = await startRegistry();
  const images = await seedStandardImages(registry);
  const repo = await makeGitRepo();
  const server = http.createServer((_req, res) =>
    res.writeHead(200, { "content-length": tool.length }).end(tool),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const downloads = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { dir, cleanup } = await tempFiles(
    {
      "bundle.yml": [
        "name: vi-demo",
        ...standardImageLines(images),
        "git:",
        `  - url: ${repo.url}`,
        `    commit: ${repo.commits.at(-1) ?? ""}`,
        "    archive: app.tar.gz",
        "files:",
        `  - url: ${downloads}/dl/tool-1.0.tgz`,
        `    sha256: ${toolSha}`,
        "templates:",
        "  - source: init.sh",
        "    dest: files/init.sh",
      ].join("\n"),
      "init.sh": "curl -fsSL {{FILESERVER_URL}}/app.tar.gz # from {{MAIN_NODE_IP}}\n",
    },
    "vi-demo",
  );
  const bundle = path.join(dir, "out");
  const r = await runCli(["prepare", "-o", bundle], {
    cwd: dir,
    env: { BUNDLE_CACHE_DIR: path.join(dir, "cache") },
  });
  fixture = { registry, images, repo, server, root: dir, cleanup, bundle };
  if (r.code !== 0) fixture.prepareError = `prepare failed (${r.code}): ${r.stderr}`;
});

test.after.always(async () => {
  if (!fixture) return;
  const f = fixture;
  await new Promise<void>((resolve) => f.server.close(() => resolve()));
  await f.registry.stop();
  await f.repo.cleanup();
  await f.cleanup();
});

/** A private copy of the prepared bundle. */
async function copyBundle(): Promise<{ dir: string; lock: Lock; images: StandardImages }> {
  if (!fixture) throw new Error("the fixture did not start");
  if (fixture.prepareError) throw new Error(fixture.prepareError);
  const dir = path.join(fixture.root, `copy-${++copies}`);
  await cp(fixture.bundle, dir, { recursive: true });
  const lock = JSON.parse(await readFile(path.join(dir, "bundle.lock.json"), "utf8")) as Lock;
  return { dir, lock, images: fixture.images };
}

const blobFile = (dir: string, digest: string) =>
  path.join(dir, "images", "blobs", "sha256", digest.slice(7));

test("a fresh bundle verifies, with every blob and file counted once", async (t) => {
  const { dir, lock, images } = await copyBundle();
  const report = await verifyBundle(await openBundle(dir));
  t.deepEqual(report.problems, []);
  t.true(report.ok);

  const all = [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker];
  const blobs = new Set(
    all.flatMap((i) => [i.digest, ...i.platforms.map((p) => p.digest), ...i.blobs.map((b) => b.digest)]),
  );
  // app.tar.gz (git, also listed among the files), tool-1.0.tgz, templates/files/init.sh, and
  // templates/values.json, which the lock gives a sha256 too.
  t.deepEqual(lock.files.map((f) => f.path).sort(), ["app.tar.gz", "tool-1.0.tgz"]);
  t.deepEqual(
    lock.templates.map((x) => x.source),
    ["templates/files/init.sh"],
  );
  let bytes = 0;
  for (const d of blobs) bytes += (await stat(blobFile(dir, d))).size;
  t.is(lock.valuesSha256, await sha256File(path.join(dir, "templates", "values.json")));
  for (const rel of [
    "files/app.tar.gz",
    "files/tool-1.0.tgz",
    "templates/files/init.sh",
    "templates/values.json",
  ])
    bytes += (await stat(path.join(dir, rel))).size;
  t.deepEqual(report.checked, { blobs: blobs.size, files: 4, bytes });
  t.regex(formatVerify(report).at(-1) ?? "", /^bundle ok: \d+ blobs and 4 files checked/);
});

test("one flipped byte in a shared layer is a mismatch naming the blob and every image using it", async (t) => {
  const { dir, images } = await copyBundle();
  const shared = images.sharedBlobs[0] ?? "";
  t.truthy(shared);
  const file = blobFile(dir, shared);
  const bytes = await readFile(file);
  bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] ?? 0) ^ 0xff;
  await writeFile(file, bytes);

  const report = await verifyBundle(await openBundle(dir));
  t.false(report.ok);
  t.is(report.problems.length, 1, JSON.stringify(report.problems));
  const p = report.problems[0];
  t.is(p?.kind, "mismatch");
  t.true(p?.item.includes(shared), p?.item);
  const users = [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker].filter((i) =>
    i.blobs.some((b) => b.digest === shared),
  );
  t.true(users.length > 1);
  for (const u of users) t.true(p?.item.includes(u.ref), `${p?.item} names ${u.ref}`);
  t.regex(
    p?.detail ?? "",
    new RegExp(`expected ${bytes.length} bytes with digest ${shared}, got ${bytes.length} bytes`),
  );
  t.true(formatVerify(report).some((l) => l.startsWith("mismatch: ") && l.includes(shared)));
});

test("a truncated file under files/ is a mismatch naming its path with expected and actual size", async (t) => {
  const { dir, lock } = await copyBundle();
  const entry = lock.files.find((f) => f.path === "tool-1.0.tgz");
  t.truthy(entry);
  await truncate(path.join(dir, "files", "tool-1.0.tgz"), 1000);

  const report = await verifyBundle(await openBundle(dir));
  t.false(report.ok);
  t.is(report.problems.length, 1, JSON.stringify(report.problems));
  t.is(report.problems[0]?.kind, "mismatch");
  t.is(report.problems[0]?.item, "files/tool-1.0.tgz");
  t.regex(report.problems[0]?.detail ?? "", new RegExp(`expected ${entry?.size} bytes .*got 1000 bytes`));
  t.is(entry?.size, tool.length);
});

test("a deleted platform manifest is missing, named with its image and platform", async (t) => {
  const { dir, images } = await copyBundle();
  const arm = images.ociIndex.platforms.find((p) => p.platform === "linux/arm64");
  t.truthy(arm);
  await rm(blobFile(dir, arm?.digest ?? ""));

  const report = await verifyBundle(await openBundle(dir));
  t.false(report.ok);
  t.is(report.problems.length, 1, JSON.stringify(report.problems));
  const p = report.problems[0];
  t.is(p?.kind, "missing");
  t.true(p?.item.includes(arm?.digest ?? "-"));
  t.true(p?.item.includes(`${images.ociIndex.ref} linux/arm64 manifest`), p?.item);
});

test("a stray file under files/ and an unused blob are extra; work folders are ignored", async (t) => {
  const { dir } = await copyBundle();
  await writeFile(path.join(dir, "files", "stray.txt"), "not in the lock\n");
  const unused = Buffer.from("nobody uses me");
  const unusedHex = createHash("sha256").update(unused).digest("hex");
  await writeFile(path.join(dir, "images", "blobs", "sha256", unusedHex), unused);
  await mkdir(path.join(dir, "files", ".partial"), { recursive: true });
  await writeFile(path.join(dir, "files", ".partial", "half.tgz"), "half");
  await mkdir(path.join(dir, "deploy"), { recursive: true });
  await writeFile(path.join(dir, "deploy", "values.yaml"), "x: 1\n");

  const report = await verifyBundle(await openBundle(dir));
  t.false(report.ok);
  t.deepEqual(
    report.problems.map((p) => [p.kind, p.item]),
    [
      ["extra", `blob sha256:${unusedHex}`],
      ["extra", "files/stray.txt"],
    ],
  );
});

test("a lock entry whose index.json names another digest is a mismatch of the image", async (t) => {
  const { dir, images } = await copyBundle();
  const indexFile = path.join(dir, "images", "index.json");
  const index = JSON.parse(await readFile(indexFile, "utf8")) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const single = index.manifests.find(
    (m) => m.annotations?.["org.opencontainers.image.ref.name"] === images.singleOci.ref,
  );
  t.truthy(single);
  if (single) single.digest = images.singleDocker.digest;
  await writeFile(indexFile, JSON.stringify(index));
  await appendFile(path.join(dir, "templates", "files", "init.sh"), "# edited\n");

  const report = await verifyBundle(await openBundle(dir));
  t.deepEqual(
    report.problems.map((p) => [p.kind, p.item]),
    [
      ["mismatch", `image ${images.singleOci.ref}`],
      ["mismatch", "templates/files/init.sh"],
    ],
  );
  t.true(report.problems[0]?.detail.includes(images.singleDocker.digest));
});

test("inspect lists images, platforms, sizes and what sharing the base layer saves", async (t) => {
  const { dir, lock, images } = await copyBundle();
  const report = await inspectBundle(await openBundle(dir));
  t.is(report.name, "vi-demo");
  const all = [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker];
  const size = (i: (typeof all)[number]) => i.blobs.reduce((s, b) => s + b.size, 0);
  t.deepEqual(
    report.images.map((i) => [i.ref, i.digest, i.platforms, i.missingPlatforms, i.size, i.mirror]),
    [
      [
        images.ociIndex.ref,
        images.ociIndex.digest,
        ["linux/amd64", "linux/arm64"],
        [],
        size(images.ociIndex),
        "teleinfra/multi-oci:v1",
      ],
      [
        images.dockerList.ref,
        images.dockerList.digest,
        ["linux/amd64", "linux/arm64"],
        [],
        size(images.dockerList),
        "teleinfra/multi-docker:v1",
      ],
      [
        images.singleOci.ref,
        images.singleOci.digest,
        ["linux/amd64"],
        [],
        size(images.singleOci),
        "teleinfra/single-oci:v1",
      ],
      [
        images.singleDocker.ref,
        images.singleDocker.digest,
        ["linux/amd64"],
        ["linux/arm64"],
        size(images.singleDocker),
        "teleinfra/single-docker:v1",
      ],
    ],
  );
  const archive = await stat(path.join(dir, "files", "app.tar.gz"));
  t.deepEqual(report.git, [
    { url: lock.git[0]?.url, commit: lock.git[0]?.commit, archive: "app.tar.gz", size: archive.size },
  ]);
  t.deepEqual(
    report.files.map((f) => [f.path, f.size]),
    [
      ["app.tar.gz", archive.size],
      ["tool-1.0.tgz", tool.length],
    ],
  );
  t.deepEqual(report.siteValues, ["FILESERVER_URL", "MAIN_NODE_IP"]);

  const distinct = new Map(all.flatMap((i) => i.blobs.map((b) => [b.digest, b.size] as const)));
  const blobBytes = [...distinct.values()].reduce((s, n) => s + n, 0);
  const fileBytes = archive.size + tool.length;
  const sharedBytes = all.reduce((s, i) => s + size(i), 0) - blobBytes;
  t.true(sharedBytes > 0, "the standard images share a base layer");
  t.deepEqual(report.total, {
    bytes: blobBytes + fileBytes,
    unshared: blobBytes + fileBytes + sharedBytes,
    saved: sharedBytes,
  });
  // The layout on disk holds exactly these blobs plus the manifests.
  const onDisk = await readdir(path.join(dir, "images", "blobs", "sha256"));
  t.true([...distinct.keys()].every((d) => onDisk.includes(d.slice(7))));

  const text = formatInspect(report).join("\n");
  t.true(text.includes("teleinfra/single-docker:v1"));
  t.regex(text, /missing linux\/arm64/);
  t.regex(text, /saved by sharing blobs/);
  t.regex(text, /FILESERVER_URL, MAIN_NODE_IP/);
});

test("inspect lists the templates rendered at upload with the site values they need, in --json as templates", async (t) => {
  const { dir } = await copyBundle();
  const json = await runCli(["--json", "inspect", dir]);
  t.is(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as { templates: unknown; files: { path: string }[] };
  t.deepEqual(report.templates, [
    { dest: "files/init.sh", renderedAt: "upload", siteValues: ["FILESERVER_URL", "MAIN_NODE_IP"] },
  ]);
  const human = await runCli(["inspect", dir]);
  t.is(human.code, 0, human.stderr);
  t.regex(human.stdout, /^templates, rendered with the site's values \(1\)$/m);
  t.regex(human.stdout, /^ +files\/init\.sh +upload +FILESERVER_URL, MAIN_NODE_IP$/m);
});
