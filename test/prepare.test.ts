/**
 * `bundle prepare` and `bundle upload` for images, end to end through the CLI, against real
 * Distribution registries; skopeo checks what was written and pushed.
 */
import test from "ava";
import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { startRegistry } from "./helpers/registry.js";
import { seedStandardImages, type StandardImages } from "./helpers/images.js";
import { skopeoInspectLayout, skopeoInspectRaw } from "./helpers/skopeo.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import type { Lock } from "../src/bundle/lock.js";
import { sha256File, standardImageLines } from "./helpers/bundles.js";

function definition(images: StandardImages, extra = ""): string {
  return ["name: demo", ...standardImageLines(images), extra].join("\n");
}

async function setup(t: { teardown: (fn: () => Promise<void>) => void }) {
  const source = await startRegistry();
  t.teardown(() => source.stop());
  const images = await seedStandardImages(source);
  const { dir, cleanup } = await tempFiles({ "bundle.yml": definition(images) }, "demo");
  t.teardown(cleanup);
  return { source, images, dir, out: path.join(dir, "out") };
}

test("prepare keeps every manifest byte for byte, stores shared blobs once, and a rerun moves nothing", async (t) => {
  const { images, dir, out } = await setup(t);
  const first = await runCli(["--json", "prepare", "-o", out], { cwd: dir });
  t.is(first.code, 0, first.stderr);
  const result = JSON.parse(first.stdout) as { bytesMoved: number; images: unknown[] };
  t.true(result.bytesMoved > 0);

  for (const img of [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker]) {
    const raw = await skopeoInspectLayout(path.join(out, "images"), img.ref);
    t.deepEqual(raw, img.manifestBytes, `${img.ref} as skopeo reads it from the layout`);
  }
  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  t.deepEqual(
    lock.images.map((i) => [
      i.ref,
      i.digest,
      i.platforms.map((p) => p.platform).join(","),
      i.missingPlatforms.join(","),
      i.mirror,
    ]),
    [
      [images.ociIndex.ref, images.ociIndex.digest, "linux/amd64,linux/arm64", "", "teleinfra/multi-oci:v1"],
      [
        images.dockerList.ref,
        images.dockerList.digest,
        "linux/amd64,linux/arm64",
        "",
        "teleinfra/multi-docker:v1",
      ],
      [images.singleOci.ref, images.singleOci.digest, "linux/amd64", "", "teleinfra/single-oci:v1"],
      [
        images.singleDocker.ref,
        images.singleDocker.digest,
        "linux/amd64",
        "linux/arm64",
        "teleinfra/single-docker:v1",
      ],
    ],
  );

  const blobDir = path.join(out, "images", "blobs", "sha256");
  const files = await readdir(blobDir);
  for (const f of files)
    t.is(await sha256File(path.join(blobDir, f)), f, `blob ${f} holds what its name says`);
  const all = [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker];
  const expected = new Set(
    all.flatMap((i) => [i.digest, ...i.platforms.map((p) => p.digest), ...i.blobs.map((b) => b.digest)]),
  );
  t.is(files.length, expected.size, "each blob once, shared base layers included");
  t.true(images.sharedBlobs.every((d) => files.includes(d.slice(7))));

  const indexFile = path.join(out, "images", "index.json");
  const index = JSON.parse(await readFile(indexFile, "utf8")) as { manifests: { digest: string }[] };
  t.deepEqual(
    index.manifests.map((m) => m.digest).sort(),
    all.map((i) => i.digest).sort(),
    "index.json names each image once",
  );
  const indexBefore = await stat(indexFile);
  const mtimes = await Promise.all(files.map(async (f) => (await stat(path.join(blobDir, f))).mtimeMs));
  const second = await runCli(["--json", "prepare", "-o", out], { cwd: dir });
  t.is(second.code, 0, second.stderr);
  t.is((JSON.parse(second.stdout) as { bytesMoved: number }).bytesMoved, 0);
  const after = await Promise.all(files.map(async (f) => (await stat(path.join(blobDir, f))).mtimeMs));
  t.deepEqual(after, mtimes, "no blob was written again");
  const indexAfter = await stat(indexFile);
  t.deepEqual(
    [indexAfter.ino, indexAfter.mtimeMs],
    [indexBefore.ino, indexBefore.mtimeMs],
    "index.json not rewritten",
  );
});

test("upload pushes every image under its mirror name with the source's digests; a second upload only checks", async (t) => {
  const { images, dir, out } = await setup(t);
  t.is((await runCli(["prepare", "-o", out], { cwd: dir })).code, 0);
  const site = await startRegistry({ auth: { username: "site", password: "s3cret-pw" } });
  t.teardown(() => site.stop());
  const args = ["--json", "upload", out, "--registry", site.host, "--username", "site", "--password-stdin"];
  const first = await runCli(args, { cwd: dir, input: "s3cret-pw\n" });
  t.is(first.code, 0, first.stderr);
  t.false(first.stdout.includes("s3cret-pw") || first.stderr.includes("s3cret-pw"));
  const creds = { username: "site", password: "s3cret-pw" };
  for (const [img, name] of [
    [images.ociIndex, "multi-oci"],
    [images.dockerList, "multi-docker"],
    [images.singleOci, "single-oci"],
    [images.singleDocker, "single-docker"],
  ] as const) {
    const raw = await skopeoInspectRaw(`${site.host}/teleinfra/${name}:v1`, { creds });
    t.deepEqual(raw, img.manifestBytes, name);
    for (const p of img.platforms) {
      const child = await skopeoInspectRaw(`${site.host}/teleinfra/${name}@${p.digest}`, { creds });
      t.is(`sha256:${createHash("sha256").update(child).digest("hex")}`, p.digest);
    }
  }
  const second = await runCli(args, { cwd: dir, input: "s3cret-pw\n" });
  t.is(second.code, 0, second.stderr);
  t.is((JSON.parse(second.stdout) as { bytesMoved: number }).bytesMoved, 0);
});

test("bad input: unknown image, unknown tag, missing platform — each named, exit 2", async (t) => {
  const { source, images, dir } = await setup(t);
  const cases: [string, RegExp][] = [
    [`${source.host}/testbed/nothing-here:v1`, /testbed\/nothing-here:v1.*(not found|unknown)/i],
    [`${source.host}/testbed/multi-oci:v9`, /testbed\/multi-oci:v9.*(not found|unknown)/i],
  ];
  for (const [ref, message] of cases) {
    const { dir: d, cleanup } = await tempFiles({ "bundle.yml": `images:\n  - ${ref}\n` });
    t.teardown(cleanup);
    const r = await runCli(["prepare", "-o", path.join(d, "out")], { cwd: d });
    t.is(r.code, 2, `${ref}: ${r.stderr}`);
    t.regex(r.stderr, message);
  }
  const { dir: d, cleanup } = await tempFiles({ "bundle.yml": `images:\n  - ${images.singleOci.ref}\n` });
  t.teardown(cleanup);
  const r = await runCli(["prepare", "-o", path.join(d, "out")], { cwd: d });
  t.is(r.code, 2);
  t.regex(
    r.stderr,
    new RegExp(
      `${images.singleOci.ref.replace(/[.]/g, "\\.")} has no linux/arm64 image; it is a single-platform image for linux/amd64`,
    ),
  );
  t.truthy(dir);
});

test("bad input: an unreachable registry is exit 1 naming its URL; wrong credentials are named without the password", async (t) => {
  const { dir, out } = await setup(t);
  const unreachable = await tempFiles({ "bundle.yml": "images:\n  - 127.0.0.1:9/nothing/here:v1\n" });
  t.teardown(unreachable.cleanup);
  const r = await runCli(["prepare", "-o", path.join(unreachable.dir, "out")], {
    cwd: unreachable.dir,
    env: { BUNDLE_RETRIES: "1" },
  });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /127\.0\.0\.1:9/);
  t.regex(r.stderr, /ECONNREFUSED|refused|unreachable/i);

  t.is((await runCli(["prepare", "-o", out], { cwd: dir })).code, 0);
  const site = await startRegistry({ auth: { username: "site", password: "right-pw" } });
  t.teardown(() => site.stop());
  const bad = await runCli(
    ["upload", out, "--registry", site.host, "--username", "site", "--password-stdin"],
    {
      cwd: dir,
      input: "wrong-pw-123\n",
    },
  );
  t.is(bad.code, 1, bad.stderr);
  t.regex(bad.stderr, /site/);
  t.false(bad.stderr.includes("wrong-pw-123"));
});

test("prepare --platform carries only the platforms asked for, the lock says so, and an absent one is named with what the image has", async (t) => {
  const { images, dir, out } = await setup(t);
  const r = await runCli(["--json", "prepare", "-o", out, "--platform", "linux/amd64"], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  t.deepEqual(lock.platforms, ["linux/amd64"]);
  t.deepEqual(
    lock.images.map((i) => [
      i.ref,
      i.platforms.map((p) => p.platform).join(","),
      i.missingPlatforms.join(","),
    ]),
    [
      [images.ociIndex.ref, "linux/amd64", ""],
      [images.dockerList.ref, "linux/amd64", ""],
      [images.singleOci.ref, "linux/amd64", ""],
      [images.singleDocker.ref, "linux/amd64", ""],
    ],
  );
  const arm64 = images.ociIndex.platforms.find((p) => p.platform === "linux/arm64");
  const blobs = await readdir(path.join(out, "images", "blobs", "sha256"));
  t.false(blobs.includes(arm64!.digest.slice(7)), "no linux/arm64 manifest in the layout");

  const absent = await runCli(["prepare", "-o", path.join(dir, "s390x"), "--platform", "linux/s390x"], {
    cwd: dir,
  });
  t.is(absent.code, 2, absent.stderr);
  t.regex(
    absent.stderr,
    new RegExp(
      `${images.ociIndex.ref.replace(/[.]/g, "\\.")} has no linux/s390x image; it has linux/amd64, linux/arm64`,
    ),
  );
  t.notRegex(absent.stderr, /\n\s+at /, "no stack trace");
});
