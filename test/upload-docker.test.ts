/**
 * What a site does with an uploaded bundle, checked by a real Docker daemon: pull each platform
 * of an uploaded image from the site's registry; load a bundle straight into a daemon; and take
 * an image that only exists in the local daemon into a bundle.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import path from "node:path";
import { readFile } from "node:fs/promises";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { seedStandardImages, type StandardImages } from "./helpers/images.js";
import { startDockerd, type TestDockerd } from "./helpers/dockerd.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { skopeoInspectLayout, skopeoInspectRaw } from "./helpers/skopeo.js";
import type { Lock } from "../src/bundle/lock.js";

const exec = promisify(execFile);

let source: TestRegistry;
let site: TestRegistry;
let dockerd: TestDockerd;
let images: StandardImages;
let bundleDir: string;
let cleanup: (() => Promise<void>) | undefined;

test.before(async () => {
  source = await startRegistry();
  site = await startRegistry();
  dockerd = await startDockerd();
  images = await seedStandardImages(source);
  const temp = await tempFiles(
    { "bundle.yml": `images:\n  - ${images.ociIndex.ref}\n  - ${images.dockerList.ref}\n` },
    "site",
  );
  cleanup = temp.cleanup;
  const dir = temp.dir;
  bundleDir = path.join(dir, "out");
  const prepared = await runCli(["prepare", "-o", bundleDir], { cwd: dir });
  if (prepared.code !== 0) throw new Error(prepared.stderr);
  const uploaded = await runCli(["upload", bundleDir, "--registry", site.host], { cwd: dir });
  if (uploaded.code !== 0) throw new Error(uploaded.stderr);
});

test.after.always(async () => {
  await dockerd?.stop();
  await site?.stop();
  await source?.stop();
  await cleanup?.();
});
test.serial.afterEach.always(async () => {
  await exec("docker", ["image", "prune", "-af"], { env: { ...process.env, ...dockerd.env } }).catch(
    () => undefined,
  );
});

async function docker(...args: string[]): Promise<string> {
  const { stdout } = await exec("docker", args, { env: { ...process.env, ...dockerd.env } });
  return stdout.trim();
}

/** The config digest of a platform's manifest, as the site's registry serves it: a pulled image's Id. */
async function configDigest(repo: string, childDigest: string): Promise<string> {
  const raw = await skopeoInspectRaw(`${site.host}/${repo}@${childDigest}`);
  return (JSON.parse(raw.toString()) as { config: { digest: string } }).config.digest;
}

for (const platform of ["linux/amd64", "linux/arm64"]) {
  test.serial(`docker pulls ${platform} of uploaded images from the site's registry`, async (t) => {
    for (const [img, repo] of [
      [images.ociIndex, "teleinfra/multi-oci"],
      [images.dockerList, "teleinfra/multi-docker"],
    ] as const) {
      await docker("pull", "-q", "--platform", platform, `${site.host}/${repo}:v1`);
      const id = await docker("image", "inspect", "--format", "{{.Id}}", `${site.host}/${repo}:v1`);
      const child = img.platforms.find((p) => p.platform === platform);
      t.is(id, await configDigest(repo, child?.digest ?? ""), `${repo} ${platform}`);
      const arch = await docker(
        "image",
        "inspect",
        "--format",
        "{{.Os}}/{{.Architecture}}",
        `${site.host}/${repo}:v1`,
      );
      t.is(arch, platform);
    }
  });
}

test.serial("bundle load --docker puts the daemon's platform of each image into the daemon", async (t) => {
  const r = await runCli(
    ["--json", "load", bundleDir, "--docker", "--tag-as", "mirror", "--registry", site.host],
    {
      env: dockerd.env,
    },
  );
  t.is(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout) as { platform: string; images: { tag: string; imageId: string }[] };
  t.is(result.platform, "linux/amd64");
  const tag = `${site.host}/teleinfra/multi-oci:v1`;
  t.true(result.images.some((i) => i.tag === tag));
  const amd64 = images.ociIndex.platforms.find((p) => p.platform === "linux/amd64");
  t.is(
    await docker("image", "inspect", "--format", "{{.Id}}", tag),
    await configDigest("teleinfra/multi-oci", amd64?.digest ?? ""),
  );
});

test.serial("an image only the local daemon has goes into the bundle with docker-daemon:", async (t) => {
  await docker("pull", "-q", "--platform", "linux/amd64", `${site.host}/teleinfra/multi-oci:v1`);
  await docker("tag", `${site.host}/teleinfra/multi-oci:v1`, "local/app:1.0");
  const id = await docker("image", "inspect", "--format", "{{.Id}}", "local/app:1.0");
  const { dir, cleanup } = await tempFiles({
    "bundle.yml": "images:\n  - ref: docker-daemon:local/app:1.0\n    platforms: [linux/amd64]\n",
  });
  t.teardown(cleanup);
  const r = await runCli(["prepare", "-o", path.join(dir, "out")], { cwd: dir, env: dockerd.env });
  t.is(r.code, 0, r.stderr);
  const lock = JSON.parse(await readFile(path.join(dir, "out", "bundle.lock.json"), "utf8")) as Lock;
  t.is(lock.images[0]?.source, "docker");
  t.is(lock.images[0]?.mirror, "teleinfra/app:1.0");
  const manifest = JSON.parse(
    (await skopeoInspectLayout(path.join(dir, "out", "images"), "docker.io/local/app:1.0")).toString(),
  ) as {
    config: { digest: string };
  };
  t.is(manifest.config.digest, id, "the bundle's config is the daemon's image, byte for byte");
});
