/** The bundle's OCI layout as a content-addressed store: verified, atomic, resumable, shared. */
import test from "ava";
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { createHash } from "node:crypto";
import { OciLayout } from "../src/store/layout.js";
import { WorkError } from "../src/util/errors.js";
import type { Descriptor } from "../src/oci/types.js";

const loc = { repository: "library/demo", reference: "1.0", name: "docker.io/library/demo:1.0" };

function blob(text: string): { bytes: Buffer; desc: Descriptor } {
  const bytes = Buffer.from(text.repeat(1000));
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  return { bytes, desc: { mediaType: "application/octet-stream", digest, size: bytes.length } };
}

async function layoutIn(t: { teardown: (fn: () => Promise<void>) => void }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-layout-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return { dir, layout: await OciLayout.open(path.join(dir, "images"), { create: true }) };
}

test("a blob is stored under its digest only after its digest is checked", async (t) => {
  const { dir, layout } = await layoutIn(t);
  const { bytes, desc } = blob("hello ");
  await layout.putBlob(loc, desc, async () => Readable.from([bytes]));
  t.deepEqual(await readFile(layout.blobPath(desc.digest)), bytes);
  t.true(await layout.hasBlob(loc, desc));
  t.is(await readFile(path.join(dir, "images", "oci-layout"), "utf8"), '{"imageLayoutVersion":"1.0.0"}');
});

test("a corrupt blob is never stored and the error names the image and digest", async (t) => {
  const { layout } = await layoutIn(t);
  const { bytes, desc } = blob("data ");
  const corrupt = Buffer.from(bytes);
  corrupt[10] = (corrupt[10] ?? 0) ^ 0xff;
  const err = await t.throwsAsync(
    layout.putBlob(loc, desc, async () => Readable.from([corrupt])),
    { instanceOf: WorkError },
  );
  t.regex(err?.message ?? "", new RegExp(`blob ${desc.digest} of docker.io/library/demo:1.0 is corrupt`));
  t.false(await layout.hasBlob(loc, desc));
  t.deepEqual(await readdir(path.join(layout.dir, "blobs", "sha256")), []);
  t.deepEqual(await readdir(path.join(layout.dir, ".partial")), [], "the partial file is removed too");
});

test("a partial blob left by a killed run is resumed from where it stopped", async (t) => {
  const { layout } = await layoutIn(t);
  const { bytes, desc } = blob("resume ");
  const partial = path.join(layout.dir, ".partial", desc.digest.slice(7));
  await mkdir(path.dirname(partial), { recursive: true });
  await writeFile(partial, bytes.subarray(0, 3000));
  const offsets: number[] = [];
  let moved = 0;
  await layout.putBlob(
    loc,
    desc,
    async (offset) => (offsets.push(offset), Readable.from([bytes.subarray(offset)])),
    (n) => (moved += n),
  );
  t.deepEqual(offsets, [3000]);
  t.is(moved, bytes.length - 3000);
  t.deepEqual(await readFile(layout.blobPath(desc.digest)), bytes);
});

test("a partial blob with wrong bytes is caught by the digest check and fetched again whole", async (t) => {
  const { layout } = await layoutIn(t);
  const { bytes, desc } = blob("wrong ");
  const partial = path.join(layout.dir, ".partial", desc.digest.slice(7));
  await mkdir(path.dirname(partial), { recursive: true });
  await writeFile(partial, Buffer.alloc(3000, 0x41));
  const offsets: number[] = [];
  await layout.putBlob(loc, desc, async (o) => (offsets.push(o), Readable.from([bytes.subarray(o)])));
  t.deepEqual(offsets, [3000, 0]);
  t.deepEqual(await readFile(layout.blobPath(desc.digest)), bytes);
});

test("two images writing the same blob at once fetch it once", async (t) => {
  const { layout } = await layoutIn(t);
  const { bytes, desc } = blob("shared ");
  let opened = 0;
  const open = async () => (opened++, Readable.from([bytes]));
  await Promise.all([
    layout.putBlob(loc, desc, open),
    layout.putBlob({ ...loc, name: "other:1" }, desc, open),
  ]);
  t.is(opened, 1);
  await layout.putBlob(loc, desc, open);
  t.is(opened, 1, "a blob already stored is not fetched again");
});

test("index.json names each image once, by its full reference, written atomically", async (t) => {
  const { layout } = await layoutIn(t);
  const m1 = Buffer.from(
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}',
  );
  const m2 = Buffer.from(
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"x":1},"layers":[]}',
  );
  const raw = (b: Buffer) => ({
    bytes: b,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: `sha256:${createHash("sha256").update(b).digest("hex")}`,
  });
  await Promise.all([
    layout.putManifest(loc, raw(m1), "image"),
    layout.putManifest({ ...loc, name: "docker.io/library/other:2" }, raw(m1), "image"),
  ]);
  await layout.putManifest(loc, raw(m2), "image");
  await layout.putManifest({ ...loc, reference: raw(m2).digest }, raw(m2), "child");
  const index = await layout.readIndex();
  t.deepEqual(
    index.manifests.map((m) => [m.annotations?.["org.opencontainers.image.ref.name"], m.digest]),
    [
      ["docker.io/library/other:2", raw(m1).digest],
      ["docker.io/library/demo:1.0", raw(m2).digest],
    ],
  );
  t.deepEqual((await layout.getManifest(loc)).bytes, m2);
  const files = await readdir(layout.dir);
  t.deepEqual(
    files.filter((f) => f.includes(".tmp")),
    [],
    "no temporary index file is left",
  );
});
