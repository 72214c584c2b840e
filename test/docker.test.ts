/**
 * The Docker daemon as a store, against a real dockerd (20.10) and real registries. What the
 * daemon holds is read back the way a user would: `docker image inspect`, `docker pull`, skopeo.
 * Tests are serial: they share one daemon, and what one test loads must not race another's check.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pLimit from "p-limit";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { startDockerd, type TestDockerd } from "./helpers/dockerd.js";
import { pushImage, seedStandardImages, type PushedImage, type StandardImages } from "./helpers/images.js";
import { httpRequest } from "./helpers/http.js";
import { skopeoCopyToOciLayout, skopeoInspectLayout, skopeoInspectRaw } from "./helpers/skopeo.js";
import { emptyLock } from "./helpers/bundles.js";
import { OciLayout } from "../src/store/layout.js";
import { DockerDaemonSource, DockerDaemonTarget } from "../src/store/docker.js";
import { CopyEngine } from "../src/copy/engine.js";
import { loadIntoDocker, type LoadResult } from "../src/stages/load.js";
import { writeLock } from "../src/bundle/lock.js";
import { packBundle } from "../src/bundle/archive.js";
import { InputError, WorkError } from "../src/util/errors.js";
import { sha256Digest } from "../src/oci/types.js";

const execFileAsync = promisify(execFile);

interface Shared {
  dockerd: TestDockerd;
  registry: TestRegistry;
  images: StandardImages;
  tmp: string;
}

let shared: Shared | undefined;

test.before(async () => {
  const [dockerd, registry] = await Promise.all([startDockerd(), startRegistry()]);
  const tmp = await mkdtemp(path.join(os.tmpdir(), "bundle-docker-test-"));
  shared = { dockerd, registry, images: await seedStandardImages(registry), tmp };
});

test.after.always(async () => {
  await Promise.all([shared?.dockerd.stop(), shared?.registry.stop()]);
  if (shared) await rm(shared.tmp, { recursive: true, force: true });
});

function env(): Shared {
  if (!shared) throw new Error("test.before did not run");
  return shared;
}

/** A bundle folder whose images/ layout skopeo wrote from the registry (every platform). */
async function bundleOf(name: string, images: PushedImage[]): Promise<string> {
  const dir = path.join(env().tmp, name);
  await mkdir(dir, { recursive: true });
  for (const img of images) await skopeoCopyToOciLayout(img.ref, path.join(dir, "images"), { name: img.ref });
  return dir;
}

/** `docker image inspect` through the CLI, as a user checks what the daemon holds. */
async function dockerInspect(
  ref: string,
): Promise<{ Id: string; RepoTags: string[]; RootFS: { Layers: string[] } }> {
  const { stdout } = await execFileAsync("docker", ["image", "inspect", ref], { env: env().dockerd.env });
  const [info] = JSON.parse(stdout) as { Id: string; RepoTags: string[]; RootFS: { Layers: string[] } }[];
  if (!info) throw new Error(`docker image inspect ${ref} printed nothing`);
  return info;
}

/** What the registry serves for one platform of an image: its config digest and diff_ids. */
async function platformConfig(registry: TestRegistry, img: PushedImage, platform: string) {
  const child = img.platforms.find((p) => p.platform === platform);
  if (!child) throw new Error(`${img.ref} has no ${platform}`);
  const manifest = JSON.parse(
    (await skopeoInspectRaw(`${registry.host}/${img.repo}@${child.digest}`)).toString(),
  ) as {
    config: { digest: string };
  };
  const res = await httpRequest(`${registry.url}/v2/${img.repo}/blobs/${manifest.config.digest}`);
  const config = JSON.parse(res.body.toString()) as { rootfs: { diff_ids: string[] } };
  return { configDigest: manifest.config.digest, diffIds: config.rootfs.diff_ids };
}

/**
 * What a bundle holds for one platform of an image, read from the layout's files: the config
 * digest and diff_ids. (skopeo rewrites Docker-format configs when it writes a layout, so for
 * those the bundle's config is skopeo's, not the registry's.)
 */
async function bundleConfig(bundle: string, ref: string, platform: string) {
  const blob = async (digest: string) =>
    JSON.parse(await readFile(path.join(bundle, "images", "blobs", "sha256", digest.slice(7)), "utf8")) as {
      manifests?: { digest: string; platform?: { os: string; architecture: string } }[];
      config?: { digest: string };
      rootfs?: { diff_ids: string[] };
    };
  const top = JSON.parse((await skopeoInspectLayout(path.join(bundle, "images"), ref)).toString()) as Awaited<
    ReturnType<typeof blob>
  >;
  const child = top.manifests?.find((m) => `${m.platform?.os}/${m.platform?.architecture}` === platform);
  const manifest = child ? await blob(child.digest) : top;
  const configDigest = manifest.config?.digest ?? "";
  return { configDigest, diffIds: (await blob(configDigest)).rootfs?.diff_ids };
}

/** The image events (load, tag, pull…) the daemon reported while `action` ran. */
async function imageEventsDuring(action: () => Promise<unknown>): Promise<string[]> {
  const since = Date.now();
  await action();
  const stream = await env().dockerd.docker.getEvents({
    // Docker reads "seconds.nanoseconds"; a plain fraction would be taken as nanoseconds.
    since: dockerTime(since),
    until: dockerTime(Date.now() + 1),
    filters: { type: ["image"] },
  });
  let text = "";
  for await (const chunk of stream) text += (chunk as Buffer).toString();
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { Action: string }).Action);
}

function dockerTime(ms: number): number {
  const nanos = String((ms % 1000) * 1_000_000).padStart(9, "0");
  return `${Math.floor(ms / 1000)}.${nanos}` as unknown as number;
}

test.serial(
  "load puts each image's amd64 platform into the daemon under its source tag; a rerun loads nothing",
  async (t) => {
    const { images, dockerd } = env();
    const all = [images.ociIndex, images.dockerList, images.singleOci, images.singleDocker];
    const bundle = await bundleOf("load", all);

    const result = await loadIntoDocker(bundle, { docker: dockerd.docker, tagAs: "source" });
    t.is(result.platform, "linux/amd64");
    t.deepEqual(
      result.images.map((i) => [i.ref, i.tag, i.platform, i.action]),
      all.map((img) => [img.ref, img.ref, "linux/amd64", "loaded"]),
    );
    for (const img of all) {
      const expected = await bundleConfig(bundle, img.ref, "linux/amd64");
      const info = await dockerInspect(img.ref);
      t.deepEqual(info.RepoTags, [img.ref], img.ref);
      t.is(info.Id, expected.configDigest, `${img.ref}: the image id is the amd64 config digest`);
      t.deepEqual(
        info.RootFS.Layers,
        expected.diffIds,
        `${img.ref}: gzip layers were unpacked to their diff_ids`,
      );
      t.is(result.images.find((i) => i.ref === img.ref)?.imageId, expected.configDigest);
    }

    let again: LoadResult | undefined;
    const events = await imageEventsDuring(async () => {
      again = await loadIntoDocker(bundle, { docker: dockerd.docker, tagAs: "source" });
    });
    t.deepEqual(
      again?.images.map((i) => i.action),
      ["present", "present", "present", "present"],
    );
    t.deepEqual(events, [], "the daemon saw no load and no tag on the rerun");
  },
);

test.serial(
  "load from a split archive reads it in place: the amd64 image, its diff_ids, its tag",
  async (t) => {
    const { registry, dockerd } = env();
    const img = await pushImage(registry, "testbed/from-archive", "v1", {
      kind: "oci-index",
      layers: ["archive-base", "archive-app"],
      label: "from-archive",
    });
    const bundle = await bundleOf("archived", [img]);
    const lock = emptyLock();
    await writeLock(bundle, lock);
    const file = path.join(env().tmp, "archived.tar");
    const { files } = await packBundle(bundle, file, { splitBytes: 4096 });
    t.true(files.length > 1, files.join(", "));

    const result = await loadIntoDocker(file, { docker: dockerd.docker, tagAs: "source" });
    const expected = await bundleConfig(bundle, img.ref, "linux/amd64");
    t.deepEqual(
      result.images.map((i) => [i.ref, i.tag, i.platform, i.action, i.imageId]),
      [[img.ref, img.ref, "linux/amd64", "loaded", expected.configDigest]],
    );
    const info = await dockerInspect(img.ref);
    t.is(info.Id, expected.configDigest);
    t.deepEqual(info.RootFS.Layers, expected.diffIds);
  },
);

test.serial("load under the mirror names from bundle.lock.json tags the images already there", async (t) => {
  const { images, dockerd } = env();
  const img = images.ociIndex;
  const bundle = await bundleOf("mirror", [img]);
  const lock = emptyLock({
    images: [
      {
        ref: img.ref,
        source: "registry",
        digest: img.digest,
        mediaType: img.mediaType,
        size: img.manifestBytes.length,
        platforms: [],
        missingPlatforms: [],
        mirror: "teleinfra/multi-oci:v1",
        mirrorDigest: img.digest,
        blobs: [],
        bytes: 0,
      },
    ],
  });
  await writeLock(bundle, lock);
  const first = await loadIntoDocker(bundle, { docker: dockerd.docker, tagAs: "source" });
  let mirrored: LoadResult | undefined;
  const events = await imageEventsDuring(async () => {
    mirrored = await loadIntoDocker(bundle, {
      docker: dockerd.docker,
      tagAs: "mirror",
      registry: "registry.site:5000",
    });
  });
  t.deepEqual(events, ["tag"], "the image is tagged, not loaded again");
  t.deepEqual(
    mirrored?.images.map((i) => [i.tag, i.action]),
    [["registry.site:5000/teleinfra/multi-oci:v1", "tagged"]],
  );
  const info = await dockerInspect("registry.site:5000/teleinfra/multi-oci:v1");
  t.is(first.images[0]?.imageId, info.Id);
});

test.serial("a docker-daemon image copies into an OCI layout that skopeo reads and pushes", async (t) => {
  const { registry, dockerd } = env();
  const img = await pushImage(registry, "testbed/from-daemon", "v1", {
    kind: "single",
    format: "docker",
    layers: ["daemon-base", "daemon-app"],
    label: "from-daemon",
  });
  await execFileAsync("docker", ["pull", img.ref], { env: dockerd.env });
  const daemonId = (await dockerInspect(img.ref)).Id;

  const source = new DockerDaemonSource(dockerd.docker);
  t.teardown(() => source.dispose());
  const layoutDir = path.join(env().tmp, "from-daemon");
  const layout = await OciLayout.open(layoutDir, { create: true });
  const loc = { repository: img.repo, reference: img.tag, name: img.ref };
  const copyFrom = (from: DockerDaemonSource) =>
    new CopyEngine({ blobLimit: pLimit(4) }).copy({
      source: from,
      target: layout,
      targetReader: layout,
      from: loc,
      to: loc,
      platforms: ["linux/amd64"],
      allowMissingPlatforms: false,
    });
  const copied = await copyFrom(source);

  const manifest = JSON.parse((await skopeoInspectLayout(layoutDir, img.ref)).toString()) as {
    mediaType: string;
    config: { digest: string };
    layers: { mediaType: string; digest: string }[];
  };
  t.is(manifest.mediaType, "application/vnd.oci.image.manifest.v1+json");
  t.is(manifest.config.digest, daemonId, "the config is the daemon's image, byte for byte");
  t.deepEqual(
    manifest.layers.map((l) => [l.mediaType, l.digest]),
    (await dockerInspect(img.ref)).RootFS.Layers.map((d) => ["application/vnd.oci.image.layer.v1.tar", d]),
    "layers are the saved, uncompressed tars: their digests are the diff_ids",
  );

  const again = new DockerDaemonSource(dockerd.docker);
  t.teardown(() => again.dispose());
  const rerun = await copyFrom(again);
  t.is(rerun.digest, copied.digest, "exporting again gives the same manifest digest");
  t.is(rerun.bytesMoved, 0, "so a rerun of prepare stores nothing new");

  // The layout is a real image: skopeo pushes it, and docker pulls it back as the same image.
  const pushed = `${registry.host}/testbed/from-daemon-copy:v1`;
  await execFileAsync("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layoutDir}:${img.ref}`,
    `docker://${pushed}`,
  ]);
  await execFileAsync("docker", ["pull", pushed], { env: dockerd.env });
  t.is((await dockerInspect(pushed)).Id, daemonId);
});

test.serial(
  "docker pull through the test daemon gives each platform's image (for upload tests)",
  async (t) => {
    const { dockerd } = env();
    // A registry of its own, so these pulls do not retag the images the load tests use.
    const registry = await startRegistry();
    t.teardown(() => registry.stop());
    const images = await seedStandardImages(registry);
    for (const img of [images.ociIndex, images.dockerList]) {
      for (const platform of ["linux/amd64", "linux/arm64"]) {
        await execFileAsync("docker", ["pull", "--platform", platform, img.ref], { env: dockerd.env });
        const expected = await platformConfig(registry, img, platform);
        t.is((await dockerInspect(img.ref)).Id, expected.configDigest, `${img.ref} ${platform}`);
      }
    }
  },
);

test.serial(
  "loading an image the bundle holds no amd64 platform of names it and what it holds",
  async (t) => {
    const { registry, images, dockerd } = env();
    const armOnly = await pushImage(registry, "testbed/arm-only", "v1", {
      kind: "single",
      platforms: ["linux/arm64"],
      layers: ["arm-only"],
    });
    const single = await bundleOf("arm-only", [armOnly]);
    const err = await t.throwsAsync(loadIntoDocker(single, { docker: dockerd.docker, tagAs: "source" }), {
      instanceOf: InputError,
    });
    t.is(
      err?.message,
      `${armOnly.ref} has no linux/amd64 image in this bundle; it holds linux/arm64. ` +
        "Prepare the bundle with --platform including linux/amd64 to load it into this Docker daemon",
    );

    // An index prepared for arm64 only still lists amd64, but the bundle does not hold it.
    const partial = path.join(env().tmp, "arm64-of-index");
    const whole = await bundleOf("whole-index", [images.ociIndex]);
    const src = await OciLayout.open(path.join(whole, "images"), { create: false });
    const dst = await OciLayout.open(path.join(partial, "images"), { create: true });
    const loc = {
      repository: images.ociIndex.repo,
      reference: images.ociIndex.tag,
      name: images.ociIndex.ref,
    };
    await new CopyEngine({ blobLimit: pLimit(4) }).copy({
      source: src,
      target: dst,
      from: loc,
      to: loc,
      platforms: ["linux/arm64"],
      allowMissingPlatforms: false,
    });
    const err2 = await t.throwsAsync(loadIntoDocker(partial, { docker: dockerd.docker, tagAs: "source" }), {
      instanceOf: InputError,
    });
    t.regex(
      err2?.message ?? "",
      /multi-oci:v1 has no linux\/amd64 image in this bundle; it holds linux\/arm64\./,
    );
  },
);

test.serial("exporting an image the daemon lacks names it", async (t) => {
  const { registry, dockerd } = env();
  const source = new DockerDaemonSource(dockerd.docker);
  t.teardown(() => source.dispose());
  const name = `${registry.host}/testbed/never-pulled:v1`;
  const layout = await OciLayout.open(path.join(env().tmp, "unknown"), { create: true });
  const loc = { repository: "testbed/never-pulled", reference: "v1", name };
  const err = await t.throwsAsync(
    new CopyEngine({ blobLimit: pLimit(4) }).copy({
      source,
      target: layout,
      from: loc,
      to: loc,
      platforms: ["linux/amd64"],
      allowMissingPlatforms: false,
    }),
    { instanceOf: WorkError },
  );
  t.is(
    err?.message,
    `image ${name} is not in the local Docker daemon (docker image inspect finds no such image)`,
  );
});

test.serial(
  "a layer that does not match its diff_id: docker load's complaint is a WorkError naming the image",
  async (t) => {
    const { registry, images, dockerd } = env();
    const bundle = await bundleOf("broken", [images.singleOci]);
    const layout = await OciLayout.open(path.join(bundle, "images"), { create: false });
    const name = `${registry.host}/testbed/broken:v1`;
    await putSwappedDiffIds(layout, images.singleOci.ref, name);

    const err = await t.throwsAsync(
      loadIntoDocker(bundle, { docker: dockerd.docker, tagAs: "source", images: [name] }),
      { instanceOf: WorkError },
    );
    t.regex(
      err?.message ?? "",
      new RegExp(`^docker load of ${name.replace(/[.]/g, "\\.")} failed: .*diff`, "i"),
    );
    const tagged = await dockerd.docker
      .getImage(name)
      .inspect()
      .then(
        () => true,
        () => false,
      );
    t.false(tagged, "nothing is tagged with the broken image's name");
  },
);

/** Stores `name`: `ref`'s image with a config whose two diff_ids are swapped. */
async function putSwappedDiffIds(layout: OciLayout, ref: string, name: string): Promise<void> {
  const blobFile = (digest: string) => layout.blobPath(digest);
  const manifest = JSON.parse(
    await readFile(
      blobFile((await layout.headManifest({ repository: "", reference: "v1", name: ref }))!.digest),
      "utf8",
    ),
  ) as {
    config: { digest: string; size: number };
  };
  const config = JSON.parse(await readFile(blobFile(manifest.config.digest), "utf8")) as {
    rootfs: { diff_ids: string[] };
  };
  config.rootfs.diff_ids.reverse();
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = sha256Digest(configBytes);
  await writeFile(blobFile(configDigest), configBytes);
  const bytes = Buffer.from(
    JSON.stringify({
      ...manifest,
      config: { ...manifest.config, digest: configDigest, size: configBytes.length },
    }),
  );
  const loc = { repository: "testbed/broken", reference: "v1", name };
  await layout.putManifest(
    loc,
    { bytes, digest: sha256Digest(bytes), mediaType: "application/vnd.oci.image.manifest.v1+json" },
    "image",
  );
}

test.serial(
  "without a local layout, the target stages the blobs it is sent and loads from there",
  async (t) => {
    const { registry, dockerd } = env();
    const img = await pushImage(registry, "testbed/staged", "v1", {
      kind: "oci-index",
      layers: ["staged-base", "staged-app"],
    });
    const bundle = await bundleOf("staged", [img]);
    const source = await OciLayout.open(path.join(bundle, "images"), { create: false });
    const target = new DockerDaemonTarget(dockerd.docker);
    t.teardown(() => target.dispose());
    const loc = { repository: img.repo, reference: img.tag, name: img.ref };
    const copy = () =>
      new CopyEngine({ blobLimit: pLimit(4) }).copy({
        source,
        target,
        from: loc,
        to: loc,
        platforms: ["linux/amd64"],
        allowMissingPlatforms: false,
      });
    const first = await copy();
    const expected = await bundleConfig(bundle, img.ref, "linux/amd64");
    t.is((await dockerInspect(img.ref)).Id, expected.configDigest);
    t.is(
      first.bytesMoved,
      first.blobs.reduce((n, b) => n + b.size, 0),
      "every blob went through the staging dir",
    );
    t.deepEqual(target.outcome(img.ref), { imageId: expected.configDigest, tag: img.ref, action: "loaded" });
    const second = await copy();
    t.is(second.bytesMoved, 0, "the daemon has the image: nothing is sent again");
    t.is(target.outcome(img.ref)?.action, "present");
  },
);
