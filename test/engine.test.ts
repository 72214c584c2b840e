/**
 * The copy engine between two OCI layouts: the source layout is written by skopeo from a real
 * registry, so everything the engine reads was made by an independent tool.
 */
import test from "ava";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pLimit from "p-limit";
import { startRegistry } from "./helpers/registry.js";
import { seedStandardImages, type PushedImage } from "./helpers/images.js";
import { skopeoCopyToOciLayout, skopeoInspectLayout } from "./helpers/skopeo.js";
import { OciLayout } from "../src/store/layout.js";
import { CopyEngine } from "../src/copy/engine.js";
import { InputError } from "../src/util/errors.js";

const PLATFORMS = ["linux/amd64", "linux/arm64"];

async function fixture(t: { teardown: (fn: () => Promise<void>) => void }) {
  const registry = await startRegistry();
  t.teardown(() => registry.stop());
  const images = await seedStandardImages(registry);
  const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-engine-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const all = [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker];
  for (const img of all) await skopeoCopyToOciLayout(img.ref, path.join(dir, "src"), { name: img.ref });
  const source = await OciLayout.open(path.join(dir, "src"), { create: false });
  const target = await OciLayout.open(path.join(dir, "dst"), { create: true });
  return { images, all, source, target, dir };
}

const locOf = (img: PushedImage) => ({ repository: img.repo, reference: img.tag, name: img.ref });

test("copies indexes, lists and single images byte for byte, each shared blob once", async (t) => {
  const { images, all, source, target, dir } = await fixture(t);
  const engine = new CopyEngine({ blobLimit: pLimit(4) });
  const copy = (img: PushedImage, platforms: string[]) =>
    engine.copy({
      source,
      target,
      targetReader: target,
      from: locOf(img),
      to: locOf(img),
      platforms,
      allowMissingPlatforms: false,
    });
  const results = await Promise.all([
    copy(images.ociIndex, PLATFORMS),
    copy(images.dockerList, PLATFORMS),
    copy(images.singleOci, ["linux/amd64"]),
    copy(images.singleDocker, ["linux/amd64"]),
  ]);
  // skopeo converts Docker manifests to OCI when it writes a layout, so the source of truth
  // here is skopeo's layout, not the registry (prepare's tests compare with the registry).
  for (const img of all) {
    const expected = await skopeoInspectLayout(path.join(dir, "src"), img.ref);
    t.deepEqual(await skopeoInspectLayout(path.join(dir, "dst"), img.ref), expected, img.ref);
  }
  t.is(results[0]?.digest, images.ociIndex.digest, "an OCI index keeps its digest even through skopeo");
  t.deepEqual(
    results[0]?.platforms.map((p) => [p.platform, p.digest]),
    images.ociIndex.platforms.map((p) => [p.platform, p.digest]),
  );
  const stored = (await readdir(path.join(dir, "dst", "blobs", "sha256"))).sort();
  const carried = results.flatMap((r) => [
    r.digest,
    ...r.platforms.map((p) => p.digest),
    ...r.blobs.map((b) => b.digest),
  ]);
  const expected = [...new Set(carried.map((d) => d.slice(7)))].sort();
  t.deepEqual(stored, expected, "every blob once, shared ones included, nothing else");
  t.true(images.sharedBlobs.length > 0);

  const again = await Promise.all([
    copy(images.ociIndex, PLATFORMS),
    copy(images.singleOci, ["linux/amd64"]),
  ]);
  t.deepEqual(
    again.map((r) => r.bytesMoved),
    [0, 0],
    "a rerun moves no blob bytes",
  );
});

test("a platform the image lacks is an input error naming the image and what it has", async (t) => {
  const { images, source, target } = await fixture(t);
  const engine = new CopyEngine({ blobLimit: pLimit(4) });
  const req = {
    source,
    target,
    targetReader: target,
    from: locOf(images.singleOci),
    to: locOf(images.singleOci),
  };
  const err = await t.throwsAsync(
    engine.copy({ ...req, platforms: PLATFORMS, allowMissingPlatforms: false }),
    { instanceOf: InputError },
  );
  t.is(
    err?.message,
    `${images.singleOci.ref} has no linux/arm64 image; it is a single-platform image for linux/amd64. ` +
      "Request only that platform, or allow missing ones for this image (allowMissingPlatforms: true)",
  );
  const allowed = await engine.copy({ ...req, platforms: PLATFORMS, allowMissingPlatforms: true });
  t.deepEqual(allowed.missingPlatforms, ["linux/arm64"]);
  t.is(allowed.mirrorDigest, images.singleOci.digest);
});

test("carrying fewer platforms than the index has: the layout keeps the index, a registry gets a reduced one", async (t) => {
  const { images, source, target } = await fixture(t);
  const engine = new CopyEngine({ blobLimit: pLimit(4) });
  const img = images.ociIndex;
  const r = await engine.copy({
    source,
    target,
    targetReader: target,
    from: locOf(img),
    to: locOf(img),
    platforms: ["linux/arm64"],
    allowMissingPlatforms: false,
  });
  t.is(r.targetDigest, img.digest, "the layout keeps the source's index byte for byte");
  t.not(r.mirrorDigest, img.digest);
  t.deepEqual(
    r.platforms.map((p) => p.platform),
    ["linux/arm64"],
  );
  const amd64 = img.platforms.find((p) => p.platform === "linux/amd64");
  t.false(await target.hasManifest({ ...locOf(img), reference: amd64?.digest ?? "" }, amd64?.digest ?? ""));
});

test("an image's blobs are listed in the index's order however its platforms' copies finish", async (t) => {
  const { images, source, target } = await fixture(t);
  const img = images.ociIndex;
  const [first, second] = img.platforms.map((p) => p.digest);
  // The first platform's manifest arrives only after the second has been stored whole.
  let secondStored!: () => void;
  const secondIsStored = new Promise<void>((resolve) => (secondStored = resolve));
  const slowFirst = Object.create(source) as OciLayout;
  slowFirst.getManifest = async (loc) => {
    if (loc.reference === first) await secondIsStored;
    return source.getManifest(loc);
  };
  const watched = Object.create(target) as OciLayout;
  watched.putManifest = async (loc, raw, role) => {
    await target.putManifest(loc, raw, role);
    if (raw.digest === second) secondStored();
  };
  const copied = await new CopyEngine({ blobLimit: pLimit(4) }).copy({
    source: slowFirst,
    target: watched,
    targetReader: target,
    from: locOf(img),
    to: locOf(img),
    platforms: PLATFORMS,
    allowMissingPlatforms: false,
  });
  const inOrder: string[] = [];
  for (const digest of [first, second]) {
    const raw = await source.getManifest({ ...locOf(img), reference: digest ?? "" });
    const doc = JSON.parse(raw.bytes.toString("utf8")) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    for (const d of [doc.config.digest, ...doc.layers.map((l) => l.digest)])
      if (!inOrder.includes(d)) inOrder.push(d);
  }
  t.deepEqual(
    copied.blobs.map((b) => b.digest),
    inOrder,
  );
});
