/**
 * What `bundle upload` asks of the site's registry, counted at a proxy in front of it: one
 * existence check (`HEAD`) per blob of each image, with platforms of an image sharing a layer
 * and images sharing base layers (the copy engine's answer reaches the registry store), one
 * per platform manifest, and none for an index whose platforms were just pushed.
 */
import test from "ava";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { startRegistry } from "./helpers/registry.js";
import { pushImage, seedStandardImages } from "./helpers/images.js";
import { startFaultProxy } from "./helpers/faultProxy.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { standardImageLines } from "./helpers/bundles.js";
import type { Lock } from "../src/bundle/lock.js";

test("upload asks once: one HEAD per blob of each image and per platform manifest, none for a new index", async (t) => {
  const source = await startRegistry();
  t.teardown(() => source.stop());
  const images = await seedStandardImages(source);
  // Both platforms of this index use the same layer.
  const twin = await pushImage(source, "testbed/twin", "v1", {
    kind: "oci-index",
    layers: [{ seed: "twin-layer", sizeBytes: 300_000, samePerPlatform: true }, "twin-app"],
    label: "twin",
  });
  const def = ["name: demo", ...standardImageLines(images), `  - ${twin.ref}`].join("\n");
  const { dir, cleanup } = await tempFiles({ "bundle.yml": def }, "demo");
  t.teardown(cleanup);
  const out = path.join(dir, "out");
  const prepared = await runCli(["prepare", "-o", out], { cwd: dir });
  t.is(prepared.code, 0, prepared.stderr);

  const site = await startRegistry();
  t.teardown(() => site.stop());
  const proxy = await startFaultProxy(site.url);
  t.teardown(() => proxy.stop());
  const upload = await runCli(["upload", out, "--registry", proxy.host], { cwd: dir });
  t.is(upload.code, 0, upload.stderr);

  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  let expected = 0;
  for (const image of lock.images) {
    const repo = image.mirror.replace(/:[^/:]+$/, "");
    const digests = new Set(image.blobs.map((b) => b.digest));
    expected += digests.size;
    for (const digest of digests)
      t.is(proxy.count("HEAD", new RegExp(`^/v2/${repo}/blobs/${digest}$`)), 1, `${repo} ${digest}`);
  }
  t.is(proxy.count("HEAD", /^\/v2\/.+\/blobs\/sha256:/), expected, "no other blob HEAD");
  // A manifest HEAD for each platform's manifest; none for an index whose children were just
  // stored (it goes in after them, so it cannot be there yet).
  for (const image of lock.images) {
    const repo = image.mirror.replace(/:[^/:]+$/, "");
    const heads = proxy.count("HEAD", new RegExp(`^/v2/${repo}/manifests/`));
    t.is(heads, image.platforms.length, `${repo}: manifest HEADs`);
  }
});
