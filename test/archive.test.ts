/**
 * A bundle as one file: pack and unpack round trips, seeking by the index, split archives, an
 * archive as an image source for the copy engine, and damage caught naming the member. The
 * bundle is made by the CLI from a real registry, as a user would.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, mkdtemp, open, readdir, readFile, rm, stat, truncate } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pLimit from "p-limit";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { seedStandardImages, type StandardImages } from "./helpers/images.js";
import { skopeoInspectRaw } from "./helpers/skopeo.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { ARCHIVE_INDEX, openArchive, packBundle, type ArchiveIndex } from "../src/bundle/archive.js";
import { ArchiveLayout } from "../src/bundle/archiveLayout.js";
import { openBundle, unpackBundle } from "../src/bundle/contents.js";
import { verifyBundle } from "../src/stages/verify.js";
import { RegistryStore } from "../src/store/registry.js";
import { RegistryClient } from "../src/registry/client.js";
import { CopyEngine } from "../src/copy/engine.js";
import type { Lock } from "../src/bundle/lock.js";
import { flipByte, sha256File, standardImageLines } from "./helpers/bundles.js";

const execFileAsync = promisify(execFile);

function definition(images: StandardImages): string {
  return ["name: demo", ...standardImageLines(images)].join("\n");
}

interface Prepared {
  source: TestRegistry;
  images: StandardImages;
  bundle: string;
  cleanup: () => Promise<void>;
}

/** One prepared bundle shared by the tests (read only); each test packs into its own folder. */
let prepared: Promise<Prepared> | undefined;
function prepare(): Promise<Prepared> {
  prepared ??= (async () => {
    const source = await startRegistry();
    const images = await seedStandardImages(source);
    const { dir, cleanup } = await tempFiles({ "bundle.yml": definition(images) }, "demo");
    const bundle = path.join(dir, "out");
    const r = await runCli(["prepare", "-o", bundle], { cwd: dir });
    if (r.code !== 0) throw new Error(`prepare failed: ${r.stderr}`);
    return { source, images, bundle, cleanup };
  })();
  return prepared;
}

test.after.always(async () => {
  if (!prepared) return;
  const p = await prepared.catch(() => undefined);
  await p?.source.stop();
  await p?.cleanup();
});

async function workDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-archive-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Every file under `dir` (relative path → sha256), skipping nothing. */
async function hashTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string) => {
    for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else out.set(r, await sha256File(path.join(dir, r)));
    }
  };
  await walk("");
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function readAt(file: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function drain(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test("pack then unpack gives the same files, and the unpacked folder verifies", async (t) => {
  const { bundle } = await prepare();
  const dir = await workDir(t);
  const file = path.join(dir, "demo.bundle.tar");
  const packed = await packBundle(bundle, file);
  t.deepEqual(packed.files, [file]);
  t.is((await stat(file)).size, packed.bytes);
  t.false(
    (await readdir(dir)).some((n) => n.endsWith(".partial")),
    "no partial file left",
  );

  // Any tar reads it; the index comes first, then the lock.
  const { stdout } = await execFileAsync("tar", ["-tf", file]);
  const listed = stdout.trim().split("\n");
  t.is(listed[0], ARCHIVE_INDEX);
  t.is(listed[1], "bundle.lock.json");

  const out = path.join(dir, "unpacked");
  await unpackBundle(file, out);
  const want = await hashTree(bundle);
  t.true(want.size > 5);
  t.deepEqual(await hashTree(out), want, "every file identical");
  t.deepEqual(listed.slice(1).sort(), [...want.keys()].sort(), "tar lists every file and only those");

  const verify = await runCli(["verify", out]);
  t.is(verify.code, 0, verify.stderr + verify.stdout);
});

test("the index is the first member and its offsets reach every blob without reading the rest", async (t) => {
  const { bundle } = await prepare();
  const dir = await workDir(t);
  const file = path.join(dir, "demo.tar");
  await packBundle(bundle, file);

  // Parse the first header by hand: a plain ustar block naming the index.
  const head = await readAt(file, 0, 512);
  t.is(head.subarray(0, 100).toString("utf8").replace(/\0+$/, ""), ARCHIVE_INDEX);
  const size = parseInt(head.subarray(124, 136).toString("utf8").replace(/\0/g, "").trim(), 8);
  const index = JSON.parse((await readAt(file, 512, size)).toString("utf8")) as ArchiveIndex;
  t.is(index.members[0]?.path, "bundle.lock.json");
  const blobs = index.members.filter((m) => m.path.startsWith("images/blobs/sha256/"));
  t.true(blobs.length > 5);
  for (const m of blobs) {
    const hex = path.basename(m.path);
    t.is(m.sha256, hex);
    const bytes = await readAt(file, m.offset, m.size);
    t.is(createHash("sha256").update(bytes).digest("hex"), hex, `${m.path} at offset ${m.offset}`);
  }

  const archive = await openArchive(file);
  t.teardown(() => archive.close());
  t.deepEqual(archive.index, index.members);
  const lock = JSON.parse(await readFile(path.join(bundle, "bundle.lock.json"), "utf8")) as Lock;
  t.deepEqual(archive.lock, lock);
  t.true(archive.has("images/index.json"));
  t.false(archive.has("images/nothing"));
  const biggest = [...blobs].sort((a, b) => b.size - a.size)[0];
  if (!biggest) return t.fail();
  const whole = await drain(archive.read(biggest.path));
  const tail = await drain(archive.read(biggest.path, { start: 100 }));
  t.deepEqual(tail, whole.subarray(100), "read from an offset");
});

test("a split archive has several parts and reads back the same", async (t) => {
  const { bundle } = await prepare();
  const dir = await workDir(t);
  const whole = path.join(dir, "whole.tar");
  const { bytes } = await packBundle(bundle, whole);
  const file = path.join(dir, "split.tar");
  const splitBytes = Math.ceil(bytes / 4 / 512) * 512 + 1000; // not block-aligned on purpose
  const packed = await packBundle(bundle, file, { splitBytes });
  t.true(packed.files.length >= 3, `${packed.files.length} parts`);
  t.deepEqual(
    packed.files.map((f) => path.basename(f)),
    packed.files.map((_, i) => `split.tar.${String(i).padStart(3, "0")}`),
  );
  for (const f of packed.files.slice(0, -1)) t.is((await stat(f)).size, splitBytes);
  t.is(packed.bytes, bytes);
  // The joined parts are the same bytes as the unsplit archive.
  const joined = Buffer.concat(await Promise.all(packed.files.map((f) => readFile(f))));
  t.true(joined.equals(await readFile(whole)));

  const archive = await openArchive(file);
  t.teardown(() => archive.close());
  for (const m of archive.index) {
    const got = await drain(archive.read(m.path));
    t.is(got.length, m.size);
    t.is(createHash("sha256").update(got).digest("hex"), await sha256File(path.join(bundle, m.path)), m.path);
  }
  const out = path.join(dir, "unpacked");
  await unpackBundle(file, out);
  t.deepEqual(await hashTree(out), await hashTree(bundle));
  t.true((await verifyBundle(await openBundle(file))).ok);

  // Packing again with fewer parts leaves no stale part behind.
  const again = await packBundle(bundle, file, { splitBytes: bytes });
  t.is(again.files.length, 1);
  t.deepEqual(
    (await readdir(dir)).filter((n) => n.startsWith("split.tar")),
    ["split.tar.000"],
  );
});

test("images copied out of an archive keep the source's digests on a registry", async (t) => {
  const { bundle, images } = await prepare();
  const dir = await workDir(t);
  const file = path.join(dir, "demo.tar");
  await packBundle(bundle, file, { splitBytes: 64 * 1024 });
  const archive = await openArchive(file);
  t.teardown(() => archive.close());
  const source = new ArchiveLayout(archive);
  const site = await startRegistry();
  t.teardown(() => site.stop());
  const target = new RegistryStore(new RegistryClient(site.host));
  const engine = new CopyEngine({ blobLimit: pLimit(4) });
  const expected = new Map([
    [images.ociIndex.ref, images.ociIndex.digest],
    [images.dockerList.ref, images.dockerList.digest],
    [images.singleOci.ref, images.singleOci.digest],
    [images.singleDocker.ref, images.singleDocker.digest],
  ]);
  t.is(archive.lock.images.length, 4);
  for (const img of archive.lock.images) {
    const tag = img.ref.slice(img.ref.lastIndexOf(":") + 1);
    const [repo, mirrorTag] = img.mirror.split(":");
    if (!repo || !mirrorTag) return t.fail(img.mirror);
    const head = await source.headManifest({ repository: "", reference: tag, name: img.ref });
    t.is(head?.digest, img.digest);
    t.is(head?.mediaType, img.mediaType, "the source media type, not the layout's OCI listing");
    const copied = await engine.copy({
      source,
      target,
      from: { repository: "", reference: tag, name: img.ref },
      to: { repository: repo, reference: mirrorTag, name: `${site.host}/${img.mirror}` },
      platforms: img.platforms.map((p) => p.platform),
      allowMissingPlatforms: true,
    });
    t.is(copied.digest, img.digest);
    t.is(copied.mirrorDigest, img.mirrorDigest);
    const raw = await skopeoInspectRaw(`${site.host}/${img.mirror}`);
    const digest = `sha256:${createHash("sha256").update(raw).digest("hex")}`;
    t.is(digest, img.mirrorDigest, `${img.ref} on the registry`);
    t.is(digest as string | undefined, expected.get(img.ref), `${img.ref} has the source registry's digest`);
  }
});

test("a truncated archive or a flipped byte in a blob is caught, naming the member", async (t) => {
  const { bundle } = await prepare();
  const dir = await workDir(t);
  const file = path.join(dir, "demo.tar");
  await packBundle(bundle, file);
  const archive = await openArchive(file);
  const blob = [...archive.index]
    .filter((m) => m.path.startsWith("images/blobs/"))
    .sort((a, b) => b.size - a.size)[0];
  await archive.close();
  if (!blob) return t.fail();

  // Cut the archive in the middle of the largest blob.
  const cut = path.join(dir, "cut.tar");
  await copyFile(file, cut);
  await truncate(cut, blob.offset + Math.floor(blob.size / 2));
  const truncErr = await t.throwsAsync(openArchive(cut));
  t.regex(truncErr?.message ?? "", /truncated/);
  t.true(truncErr?.message.includes(blob.path), truncErr?.message);
  const unpackCut = await t.throwsAsync(unpackBundle(cut, path.join(dir, "cut-out")));
  t.true(unpackCut?.message.includes(blob.path), unpackCut?.message);

  // One flipped byte inside the blob: opening works, reading it fails naming it.
  const bad = path.join(dir, "bad.tar");
  await copyFile(file, bad);
  await flipByte(bad, blob.offset + Math.floor(blob.size / 3));
  const damaged = await openArchive(bad);
  t.teardown(() => damaged.close());
  const readErr = await t.throwsAsync(drain(damaged.read(blob.path)));
  t.regex(readErr?.message ?? "", /corrupt/);
  t.true(readErr?.message.includes(blob.path), readErr?.message);
  const report = await verifyBundle(await openBundle(bad));
  t.false(report.ok);
  t.deepEqual(
    report.problems.map((p) => [p.kind, p.item.split(" ")[1]]),
    [["mismatch", `sha256:${path.posix.basename(blob.path)}`]],
  );
  const out = path.join(dir, "bad-out");
  const unpackErr = await t.throwsAsync(unpackBundle(bad, out));
  t.true(unpackErr?.message.includes(blob.path), unpackErr?.message);
  t.false(
    await stat(out).then(
      () => true,
      () => false,
    ),
    "a failed unpack leaves nothing under the folder's name: it is not taken for a bundle",
  );
  t.deepEqual(await readdir(dir), ["bad.tar", "cut.tar", "demo.tar"], "no work folder left beside it");
});
