/**
 * Prepare under faults, with a fault-injecting proxy the tests own in front of a real registry:
 * transient faults are retried to success, a corrupt blob is never stored, and a run killed
 * mid-download is finished by the next one.
 */
import test from "ava";
import { spawn } from "node:child_process";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startRegistry } from "./helpers/registry.js";
import { pushImage, seedStandardImages } from "./helpers/images.js";
import { startFaultProxy } from "./helpers/faultProxy.js";
import { CLI, runCli, tempFiles } from "./helpers/cli.js";
import { skopeoInspectLayout } from "./helpers/skopeo.js";
import { sha256File } from "./helpers/bundles.js";

async function allBlobsVerify(layoutDir: string): Promise<string[]> {
  const dir = path.join(layoutDir, "blobs", "sha256");
  const bad: string[] = [];
  for (const f of await readdir(dir)) if ((await sha256File(path.join(dir, f))) !== f) bad.push(f);
  return bad;
}

async function behindProxy(t: { teardown: (fn: () => Promise<void>) => void }) {
  const registry = await startRegistry();
  t.teardown(() => registry.stop());
  const proxy = await startFaultProxy(registry.url);
  t.teardown(() => proxy.stop());
  return { registry, proxy };
}

test("503s, Retry-After and dropped connections are retried to success", async (t) => {
  const { registry, proxy } = await behindProxy(t);
  const images = await seedStandardImages(registry);
  const ref = images.ociIndex.ref.replace(registry.host, proxy.host);
  proxy.addRule({ method: "GET", path: /\/manifests\//, times: 2, fault: { kind: "status", status: 503 } });
  proxy.addRule({
    method: "GET",
    path: /\/blobs\//,
    times: 2,
    fault: { kind: "status", status: 429, retryAfterSeconds: 0 },
  });
  proxy.addRule({
    method: "GET",
    path: /\/blobs\//,
    times: 2,
    fault: { kind: "drop-response", afterBytes: 100 },
  });
  const { dir, cleanup } = await tempFiles({ "bundle.yml": `images:\n  - ${ref}\n` });
  t.teardown(cleanup);
  const r = await runCli(["-v", "prepare", "-o", path.join(dir, "out")], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  t.is(proxy.faultsApplied(), 6);
  t.regex(r.stderr, /retrying/);
  t.deepEqual(await skopeoInspectLayout(path.join(dir, "out", "images"), ref), images.ociIndex.manifestBytes);
  t.deepEqual(await allBlobsVerify(path.join(dir, "out", "images")), []);
});

test("a corrupt blob is never stored; the error names the image and the digest", async (t) => {
  const { registry, proxy } = await behindProxy(t);
  const images = await seedStandardImages(registry);
  const ref = images.singleOci.ref.replace(registry.host, proxy.host);
  const layer = images.singleOci.blobs.at(-1)?.digest ?? "";
  proxy.addRule({
    method: "GET",
    path: new RegExp(`/blobs/${layer}`),
    times: 10,
    fault: { kind: "corrupt-response", atByte: 20 },
  });
  const { dir, cleanup } = await tempFiles({
    "bundle.yml": `images:\n  - ref: ${ref}\n    platforms: [linux/amd64]\n`,
  });
  t.teardown(cleanup);
  const r = await runCli(["prepare", "-o", path.join(dir, "out")], { cwd: dir });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`blob ${layer} of ${ref.replace(/[.]/g, "\\.")}.*corrupt`));
  // The layout's own check, the one every blob passes before it gets its name (prepare does not
  // hash blobs a second time in the source store).
  t.regex(
    r.stderr,
    /corrupt: expected \d+ bytes, got \d+ bytes with digest sha256:[0-9a-f]{64}; nothing was stored/,
  );
  const blobs = await readdir(path.join(dir, "out", "images", "blobs", "sha256"));
  t.false(blobs.includes(layer.slice(7)), "the corrupt blob is not under its name");
  t.deepEqual(await allBlobsVerify(path.join(dir, "out", "images")), []);
  await t.throwsAsync(
    stat(path.join(dir, "out", "bundle.lock.json")),
    undefined,
    "no lock for an incomplete bundle",
  );
});

test("a run killed mid-download is finished by the next run, resuming the partial blob", async (t) => {
  const { registry, proxy } = await behindProxy(t);
  const big = await pushImage(registry, "testbed/big", "v1", {
    kind: "oci-index",
    layers: ["testbed-base", { seed: "big-layer", sizeBytes: 300_000_000, samePerPlatform: true }],
  });
  const ref = big.ref.replace(registry.host, proxy.host);
  const { dir, cleanup } = await tempFiles({ "bundle.yml": `images:\n  - ${ref}\n` });
  t.teardown(cleanup);
  const out = path.join(dir, "out");
  const bigLayer = big.blobs.reduce((a, b) => (b.size > a.size ? b : a));
  const partial = path.join(out, "images", ".partial", bigLayer.digest.slice(7));

  const child = spawn(process.execPath, [CLI, "-q", "prepare", "-o", out], { cwd: dir, stdio: "ignore" });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  let partialSize = 0;
  for (let i = 0; i < 3000 && partialSize < 20_000_000; i++) {
    partialSize = (await stat(partial).catch(() => undefined))?.size ?? 0;
    await sleep(5);
  }
  child.kill("SIGKILL");
  t.is(await exited, null, "killed, not finished");
  const leftBehind = (await stat(partial)).size;
  t.true(leftBehind > 0 && leftBehind < bigLayer.size, `partial of ${leftBehind} bytes`);
  t.false((await readdir(path.join(out, "images", "blobs", "sha256"))).includes(bigLayer.digest.slice(7)));

  const before = proxy.requests.length;
  const r = await runCli(["prepare", "-o", out], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  const resumed = proxy.requests.slice(before).find((q) => q.path.includes(bigLayer.digest));
  t.regex(
    String(resumed?.headers.range),
    /^bytes=\d+-$/,
    "the big layer was fetched from where the killed run stopped",
  );
  t.deepEqual(await allBlobsVerify(path.join(out, "images")), []);
  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as {
    images: { digest: string }[];
  };
  t.is(lock.images[0]?.digest, big.digest);
});
