/**
 * `bundle serve --registry-port`: a prepared bundle's images served straight from its folder and
 * from its (split) archive, read in place, under the mirror names upload would push them to.
 * Real clients prove it: skopeo inspects and copies every image with the lock's digests, the
 * test dockerd pulls linux/amd64 and linux/arm64, containerd's ctr pulls with --plain-http and
 * with the hosts.toml serve prints, and deploy --registry passes its proof against it (real helm,
 * the cluster stand-in). Writes are refused with 405, and the bundle is left as it was.
 */
import test from "ava";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { pushImage, seedStandardImages } from "./helpers/images.js";
import { CLI, runCli, tempFiles } from "./helpers/cli.js";
import { skopeoCopyToOciLayout, skopeoInspectRaw } from "./helpers/skopeo.js";
import { startDockerd, type TestDockerd } from "./helpers/dockerd.js";
import { startContainerd, type TestContainerd } from "./helpers/containerd.js";
import { clusterStandIn } from "./helpers/helm.js";
import { helm } from "./helpers/helmRepo.js";
import { httpRequest, header } from "./helpers/http.js";
import { flipByte, sha256File } from "./helpers/bundles.js";
import { openArchive } from "../src/bundle/archive.js";
import { selfSignedCert } from "./helpers/keys.js";
import type { Lock } from "../src/bundle/lock.js";

const execFileAsync = promisify(execFile);

interface Served {
  url: string;
  /** `127.0.0.1:PORT`, as --registry and image references name it. */
  host: string;
  stderr: () => string;
  /** Resolves once serve's stderr matches `re` (it arrives through a pipe, after the answers). */
  printed: (re: RegExp) => Promise<void>;
}

let upstream: TestRegistry;
let root: string;
let cleanup: () => Promise<void>;
let lock: Lock;
let folder: Served;
let archive: Served;
const servers: ChildProcess[] = [];

const DEFINITION = (partial: string) =>
  [
    "name: srv",
    "images:",
    "  - testbed/multi-oci:v1",
    "  - testbed/multi-docker:v1",
    "  - ref: testbed/single-oci:v1",
    "    platforms: [linux/amd64]",
    "  - ref: testbed/single-docker:v1",
    "    allowMissingPlatforms: true",
    `  - ref: ${partial}`,
    "    platforms: [linux/amd64]",
    "charts:",
    "  - name: demo",
    "    path: chart",
    "releases:",
    "  - name: demo",
    "    chart: demo",
  ].join("\n");

const CHART = {
  "chart/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
  "chart/values.yaml": "image: testbed/multi-oci:v1\n",
  "chart/templates/pod.yaml": [
    "apiVersion: v1",
    "kind: Pod",
    "metadata:",
    "  name: demo",
    "spec:",
    "  containers:",
    "    - name: app",
    "      image: {{ .Values.image }}",
    "",
  ].join("\n"),
};

test.before(async () => {
  upstream = await startRegistry();
  await seedStandardImages(upstream);
  // Carried for linux/amd64 only: the mirror names the index of that platform alone.
  await pushImage(upstream, "testbed/partial", "v1", { kind: "oci-index", layers: ["partial-app"] });
  const tmp = await tempFiles({ "bundle.yml": DEFINITION("testbed/partial:v1"), ...CHART }, "srv");
  root = tmp.dir;
  cleanup = tmp.cleanup;
  const p = await prepare(["-o", "out", "--archive", "media/srv.tar", "--split", "16K"]);
  if (p.code !== 0) throw new Error(p.stderr);
  // An update bundle: one new image, whose shared base layer it leaves to the bundle above.
  await pushImage(upstream, "testbed/extra", "v1", {
    kind: "oci-index",
    layers: ["testbed-base", "extra-app"],
  });
  for (const [file, text] of Object.entries(CHART)) {
    await mkdir(path.dirname(path.join(root, "update", file)), { recursive: true });
    await writeFile(path.join(root, "update", file), text);
  }
  await writeFile(
    path.join(root, "update/bundle.yml"),
    `${DEFINITION("testbed/partial:v1").replace("images:", "images:\n  - testbed/extra:v1")}\n`,
  );
  const u = await prepare(["-f", "update/bundle.yml", "-o", "update-out", "--since", "out"]);
  if (u.code !== 0) throw new Error(u.stderr);
  lock = JSON.parse(await readFile(path.join(root, "out/bundle.lock.json"), "utf8")) as Lock;
  [folder, archive] = await Promise.all([startServe(["out"]), startServe(["media/srv.tar"])]);
});

/** prepare with the upstream registry standing in for Docker Hub. */
function prepare(args: string[]) {
  return runCli(["prepare", ...args, "--mirror", `docker.io=${upstream.url}`], {
    cwd: root,
    env: { BUNDLE_CACHE_DIR: path.join(root, "cache") },
  });
}

test.after.always(async () => {
  await Promise.all(servers.map(stopServe));
  await upstream?.stop();
  await cleanup?.();
});

/**
 * `bundle serve --registry-port 0 --no-fileserver BUNDLES` as a child; resolves once it listens
 * and has printed its notice (whose last line says how to deploy against it).
 */
function startServe(bundles: string[], extra: string[] = ["--no-fileserver"]): Promise<Served> {
  const args = [CLI, "serve", "--host", "127.0.0.1", "--registry-port", "0", ...extra];
  const child = spawn(process.execPath, [...args, ...bundles], {
    cwd: root,
    stdio: ["ignore", "ignore", "pipe"],
  });
  servers.push(child);
  let stderr = "";
  const printed = (re: RegExp) =>
    new Promise<void>((resolve) => {
      const check = () => re.test(stderr) && (child.stderr?.off("data", check), resolve());
      child.stderr?.on("data", check);
      setImmediate(check);
    });
  return new Promise((resolve, reject) => {
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      stderr += chunk;
      const m =
        /registry: .* at (https?:\/\/(127\.0\.0\.1:\d+)), read-only[\s\S]*Deploy against it: .*\n/.exec(
          stderr,
        );
      // Beside the file server, that one's line comes last.
      const files = extra.includes("--no-fileserver") || /serving \S+ at http/.test(stderr);
      if (m?.[1] && m[2] && files) resolve({ url: m[1], host: m[2], stderr: () => stderr, printed });
    });
    child.once("exit", (code) => reject(new Error(`serve exited (${code}) before listening:\n${stderr}`)));
  });
}

function stopServe(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

for (const which of ["folder", "archive"] as const) {
  const served = () => (which === "folder" ? folder : archive);

  test(`${which}: skopeo inspects and copies every image with the lock's mirror digests`, async (t) => {
    t.is(lock.images.length, 5);
    for (const img of lock.images) {
      const ref = `${served().host}/${img.mirror}`;
      const raw = await skopeoInspectRaw(ref);
      t.is(sha256(raw), img.mirrorDigest, ref);
      // skopeo checks every blob's digest and size on the way.
      const dest = path.join(root, `copies-${which}`);
      await skopeoCopyToOciLayout(ref, dest, { name: img.mirror });
      const index = JSON.parse(await readFile(path.join(dest, "index.json"), "utf8")) as {
        manifests: { digest: string; annotations?: Record<string, string> }[];
      };
      const entry = index.manifests.find(
        (m) => m.annotations?.["org.opencontainers.image.ref.name"] === img.mirror,
      );
      // Into an OCI layout skopeo converts a Docker manifest list; OCI manifests keep their bytes.
      if (img.mediaType.includes("oci"))
        t.is(entry?.digest, img.mirrorDigest, `${ref} copied with its digest`);
      else t.truthy(entry, `${ref} copied`);
      if (img.mediaType.includes("oci"))
        for (const b of img.blobs)
          t.is(await sha256File(path.join(dest, "blobs/sha256", b.digest.slice(7))), b.digest.slice(7));
    }
    const partial = lock.images.find((i) => i.mirror === "teleinfra/partial:v1");
    t.not(partial?.mirrorDigest, partial?.digest, "the partial image's mirror names the reduced index");
  });

  test(`${which}: the OCI pull API answers as a registry does, and refuses every write with 405`, async (t) => {
    const base = served().url;
    const img = lock.images.find((i) => i.mirror === "teleinfra/multi-oci:v1")!;
    const v2 = await httpRequest(`${base}/v2/`);
    t.is(v2.status, 200);
    t.is(header(v2, "docker-distribution-api-version"), "registry/2.0");
    const cat = JSON.parse((await httpRequest(`${base}/v2/_catalog`)).body.toString()) as {
      repositories: string[];
    };
    t.deepEqual(cat.repositories, [
      "teleinfra/charts/demo",
      "teleinfra/multi-docker",
      "teleinfra/multi-oci",
      "teleinfra/partial",
      "teleinfra/single-docker",
      "teleinfra/single-oci",
    ]);
    // The chart as upload pushes it: the real helm pulls the bundle's archive, byte for byte.
    const chart = lock.charts.find((c) => c.name === "demo")!;
    const pulled = path.join(root, `pulled-${which}`);
    await mkdir(pulled, { recursive: true });
    const ref = `oci://${served().host}/teleinfra/charts/demo`;
    await helm(path.join(root, "helm-home"), [
      "pull",
      ref,
      "--version",
      "0.1.0",
      "--plain-http",
      "-d",
      pulled,
    ]);
    t.is(
      await sha256File(path.join(pulled, "demo-0.1.0.tgz")),
      chart.archive?.sha256 ?? "no archive in the lock",
      ref,
    );
    const tags = await httpRequest(`${base}/v2/teleinfra/multi-oci/tags/list`);
    t.deepEqual(JSON.parse(tags.body.toString()), { name: "teleinfra/multi-oci", tags: ["v1"] });

    const head = await httpRequest(`${base}/v2/teleinfra/multi-oci/manifests/v1`, { method: "HEAD" });
    t.is(head.status, 200);
    t.is(header(head, "docker-content-digest"), img.digest);
    t.is(header(head, "content-type"), img.mediaType);
    t.is(Number(header(head, "content-length")), img.size);
    t.is(head.body.length, 0);
    const child = img.platforms[1]!;
    const byDigest = await httpRequest(`${base}/v2/teleinfra/multi-oci/manifests/${child.digest}`);
    t.is(sha256(byDigest.body), child.digest);
    t.is(header(byDigest, "content-type"), child.mediaType);

    const referrers = await httpRequest(`${base}/v2/teleinfra/multi-oci/referrers/${img.digest}`);
    t.is(referrers.status, 200);
    t.is(header(referrers, "content-type"), "application/vnd.oci.image.index.v1+json");
    t.deepEqual(JSON.parse(referrers.body.toString()), {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [],
    });

    const errorOf = async (url: string, method = "GET") => {
      // node's client sends a DELETE's body without a length, which no server can read.
      const sent = method === "PUT" || method === "PATCH" ? { body: Buffer.from("x") } : {};
      const r = await httpRequest(url, { method, ...sent });
      const body = JSON.parse(r.body.toString()) as { errors: { code: string; message: string }[] };
      return { status: r.status, code: body.errors[0]?.code, message: body.errors[0]?.message ?? "" };
    };
    t.like(await errorOf(`${base}/v2/teleinfra/multi-oci/manifests/v2`), {
      status: 404,
      code: "MANIFEST_UNKNOWN",
    });
    t.like(await errorOf(`${base}/v2/teleinfra/nothing/tags/list`), { status: 404, code: "NAME_UNKNOWN" });
    t.like(await errorOf(`${base}/v2/Tele/x/manifests/v1`), { status: 400, code: "NAME_INVALID" });
    // A blob of another image is not served under this repository, as a registry would not.
    const other = lock.images.find((i) => i.mirror === "teleinfra/partial:v1")!.blobs.at(-1)!.digest;
    t.like(await errorOf(`${base}/v2/teleinfra/multi-oci/blobs/${other}`), {
      status: 404,
      code: "BLOB_UNKNOWN",
    });
    t.like(await errorOf(`${base}/v2/teleinfra/multi-oci/blobs/sha256:..%2f..%2fbundle.lock.json`), {
      status: 400,
    });

    const before = await snapshot();
    for (const [method, url] of [
      ["PUT", `${base}/v2/teleinfra/multi-oci/manifests/v2`],
      ["PATCH", `${base}/v2/teleinfra/multi-oci/blobs/uploads/1`],
      ["DELETE", `${base}/v2/teleinfra/multi-oci/manifests/${img.digest}`],
      ["POST", `${base}/v2/teleinfra/multi-oci/blobs/uploads/`],
    ] as const) {
      const e = await errorOf(url, method);
      t.is(e.status, 405, method);
      t.is(e.code, "UNSUPPORTED", method);
      t.regex(e.message, /read-only/);
    }
    t.deepEqual(await snapshot(), before, "the bundle and the folders beside it are untouched");
  });

  test(`${which}: a Range read returns exactly the bytes asked for`, async (t) => {
    const base = served().url;
    const img = lock.images.find((i) => i.mirror === "teleinfra/multi-docker:v1")!;
    const layer = [...img.blobs].sort((a, b) => b.size - a.size)[0]!;
    const whole = await readFile(path.join(root, "out/images/blobs/sha256", layer.digest.slice(7)));
    const url = `${base}/v2/teleinfra/multi-docker/blobs/${layer.digest}`;
    const full = await httpRequest(url);
    t.is(full.status, 200);
    t.is(sha256(full.body), layer.digest);
    t.is(header(full, "docker-content-digest"), layer.digest);

    const part = await httpRequest(url, { headers: { Range: "bytes=100-1123" } });
    t.is(part.status, 206);
    t.is(header(part, "content-range"), `bytes 100-1123/${layer.size}`);
    t.true(part.body.equals(whole.subarray(100, 1124)));
    const tail = await httpRequest(url, { headers: { Range: "bytes=-10" } });
    t.true(tail.body.equals(whole.subarray(whole.length - 10)));
    const open = await httpRequest(url, { headers: { Range: `bytes=${layer.size - 5}-` } });
    t.is(open.body.length, 5);
    const beyond = await httpRequest(url, { headers: { Range: `bytes=${layer.size}-` } });
    t.is(beyond.status, 416);
    t.is(header(beyond, "content-range"), `bytes */${layer.size}`);
  });
}

/** Every file under the test's folder with its sha256: the bundle, its archive and their neighbours. */
async function snapshot(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const dir of ["out", "media"]) {
    for (const e of await readdir(path.join(root, dir), { recursive: true, withFileTypes: true })) {
      if (!e.isFile()) continue;
      const file = path.join(e.parentPath, e.name);
      out[path.relative(root, file)] = await sha256File(file);
    }
  }
  return out;
}

test.serial(
  "the test dockerd pulls linux/amd64 and linux/arm64 from the folder and the archive",
  async (t) => {
    const dockerd: TestDockerd = await startDockerd();
    t.teardown(() => dockerd.stop());
    for (const [served, mirror] of [
      [folder, "teleinfra/multi-oci:v1"],
      [archive, "teleinfra/multi-docker:v1"],
    ] as const) {
      const ref = `${served.host}/${mirror}`;
      const img = lock.images.find((i) => i.mirror === mirror)!;
      for (const platform of ["linux/amd64", "linux/arm64"]) {
        const pulled = await execFileAsync("docker", ["pull", "--platform", platform, ref], {
          env: dockerd.env,
        });
        t.regex(pulled.stdout, new RegExp(`Digest: ${img.digest}`), `${ref} ${platform}`);
        const info = await dockerd.docker.getImage(ref).inspect();
        t.is(`${info.Os}/${info.Architecture}`, platform, ref);
        // The image is that platform's, as the bundle holds it: its config digest is the image id.
        const child = img.platforms.find((p) => p.platform === platform)!;
        const manifest = JSON.parse(
          await readFile(path.join(root, "out/images/blobs/sha256", child.digest.slice(7)), "utf8"),
        ) as { config: { digest: string } };
        t.is(info.Id, manifest.config.digest, `${ref} ${platform}`);
      }
    }
  },
);

test.serial("containerd's ctr pulls with --plain-http, and with the hosts.toml serve printed", async (t) => {
  const containerd: TestContainerd = await startContainerd();
  t.teardown(() => containerd.stop());
  const img = lock.images.find((i) => i.mirror === "teleinfra/multi-oci:v1")!;
  const ref = `${archive.host}/${img.mirror}`;
  await containerd.ctr([
    "images",
    "pull",
    "--plain-http",
    "--platform",
    "linux/arm64",
    "--snapshotter",
    "native",
    ref,
  ]);
  const listed = await containerd.ctr(["images", "ls"]);
  t.regex(listed, new RegExp(`${ref.replace(/[.:/]/g, "\\$&")}\\s+\\S+\\s+${img.digest}`));

  // The hosts.toml lines serve printed, as a site would install them; no --plain-http.
  const printed = folder.stderr();
  const start = printed.indexOf(`    server = "http://${folder.host}"`);
  t.true(start >= 0, printed);
  const toml = printed
    .slice(start)
    .split("\n")
    .slice(0, 4)
    .map((l) => l.replace(/^ {4}/, ""))
    .join("\n");
  const hostsDir = path.join(root, "certs.d");
  await mkdir(path.join(hostsDir, folder.host), { recursive: true });
  await writeFile(path.join(hostsDir, folder.host, "hosts.toml"), `${toml}\n`);
  const viaHosts = `${folder.host}/${img.mirror}`;
  await containerd.ctr([
    "images",
    "pull",
    "--hosts-dir",
    hostsDir,
    "--platform",
    "linux/amd64",
    "--snapshotter",
    "native",
    viaHosts,
  ]);
  t.regex(await containerd.ctr(["images", "ls", "-q"]), new RegExp(viaHosts.replace(/[.:/]/g, "\\$&")));
});

test.serial("deploy --registry against the served archive passes its proof", async (t) => {
  const cluster = await clusterStandIn(path.join(root, "cluster"));
  const r = await runCli(
    ["deploy", "media/srv.tar", "--registry", `http://${archive.host}`, "--helm", cluster.helm, "-v"],
    { cwd: root },
  );
  t.is(r.code, 0, r.stderr);
  t.regex(
    r.stderr,
    new RegExp(`preflight: 5 images on ${archive.host.replace(/\./g, "\\.")} with the lock's digests`),
  );
  t.regex(r.stderr, /proof: release demo runs 1 image, all on the site registry/);
  const installs = await cluster.installs();
  t.is(installs.length, 1);
  t.regex(installs[0]!.rendered, new RegExp(`image: ${archive.host}/teleinfra/multi-oci:v1`));
});

test.serial("an update bundle is served over its base, over HTTPS with --tls-cert/--tls-key", async (t) => {
  const { certFile: cert, keyFile: key } = await selfSignedCert(root);
  const both = await startServe(
    ["out", "update-out"],
    ["--no-fileserver", "--tls-cert", cert, "--tls-key", key],
  );
  t.regex(both.url, /^https:/);
  t.regex(both.stderr(), /registry: 2 bundles \(11 images and 2 charts in 7 repositories\)/);
  t.regex(both.stderr(), new RegExp(`--registry https://${both.host.replace(/\./g, "\\.")}`));
  const update = JSON.parse(
    await readFile(path.join(root, "update-out/bundle.lock.json"), "utf8"),
  ) as Lock & {
    update: { omittedBlobs: string[] };
  };
  const extra = update.images.find((i) => i.mirror === "teleinfra/extra:v1")!;
  t.true(
    extra.blobs.some((b) => update.update.omittedBlobs.includes(b.digest)),
    "the update leaves a blob out",
  );
  for (const img of update.images) {
    const raw = await skopeoInspectRaw(`${both.host}/${img.mirror}`);
    t.is(sha256(raw), img.mirrorDigest, img.mirror);
  }
  // Every blob of the new image, the one only the base holds included.
  await skopeoCopyToOciLayout(`${both.host}/${extra.mirror}`, path.join(root, "copy-extra"));
  const plain = await httpRequest(`http://${both.host}/v2/`).catch((err: Error) => err);
  t.true(plain instanceof Error || plain.status === 400, "no plain HTTP on the TLS port");

  // The update alone names what it needs its base for.
  const alone = await startServe(["update-out"]);
  t.regex(
    alone.stderr(),
    /warning: teleinfra\/multi-oci:v1: no bundle given holds its manifest sha256:[0-9a-f]{64}; serve its base bundle too/,
  );
  const missing = await httpRequest(`${alone.url}/v2/teleinfra/multi-oci/manifests/v1`);
  t.is(missing.status, 404);
});

test.serial(
  "beside the file server; a blob damaged in the archive is cut off, never sent whole",
  async (t) => {
    const packed = await runCli(["pack", "out", "bad.tar"], { cwd: root });
    t.is(packed.code, 0, packed.stderr);
    const img = lock.images.find((i) => i.mirror === "teleinfra/multi-oci:v1")!;
    const layer = img.blobs.at(-1)!;
    const opened = await openArchive(path.join(root, "bad.tar"));
    const member = opened.member(`images/blobs/sha256/${layer.digest.slice(7)}`)!;
    await flipByte(path.join(root, "bad.tar"), member.offset + 100);

    const served = await startServe(["bad.tar"], ["--port", "0", "--root", "files"]);
    const files = /serving \S+ at (http:\/\/127\.0\.0\.1:\d+)/.exec(served.stderr());
    t.truthy(files?.[1], served.stderr());
    t.is((await httpRequest(`${files?.[1]}/srv/none.txt`)).status, 404, "the file server answers beside it");
    const got = await httpRequest(`${served.url}/v2/teleinfra/multi-oci/blobs/${layer.digest}`).catch(
      (e: Error) => e,
    );
    t.true(got instanceof Error || sha256(got.body) !== layer.digest, "the damaged blob never arrives whole");
    const manifest = await httpRequest(`${served.url}/v2/teleinfra/multi-oci/manifests/v1`);
    t.is(sha256(manifest.body), img.digest, "the rest is served");
    await served.printed(
      /error: GET \/v2\/teleinfra\/multi-oci\/blobs\/sha256:[0-9a-f]{64}: member images\/blobs\/sha256\/[0-9a-f]{64} of .*bad\.tar is corrupt/,
    );
    t.pass("serve names the damaged member");
  },
);

test("serve prints the containerd and Docker snippets for a plain-HTTP registry", (t) => {
  const printed = folder.stderr();
  t.true(printed.includes(`/etc/containerd/certs.d/${folder.host}/hosts.toml`));
  t.true(printed.includes(`[host."http://${folder.host}"]`));
  t.true(printed.includes(`{"insecure-registries":["${folder.host}"]}`));
  t.true(printed.includes(`bundle deploy BUNDLE --registry http://${folder.host}`));
  t.regex(
    printed,
    /registry: 1 bundle \(5 images and 1 chart in 6 repositories\) at http:\/\/127\.0\.0\.1:\d+, read-only/,
  );
});

test("serve's usage errors exit 2 naming the flag or the bundle", async (t) => {
  const stray = await runCli(["serve", "out"], { cwd: root });
  t.is(stray.code, 2);
  t.regex(
    stray.stderr,
    /out: bundles, TLS and --no-fileserver are for the registry; add --registry-port PORT/,
  );
  const none = await runCli(["serve", "--no-fileserver", "--registry-port", "0"], { cwd: root });
  t.is(none.code, 2);
  t.regex(none.stderr, /--registry-port: name the bundles to serve/);
  const missing = await runCli(["serve", "--no-fileserver", "--registry-port", "0", "nowhere"], {
    cwd: root,
  });
  t.is(missing.code, 2, missing.stderr);
  t.regex(missing.stderr, /nowhere/);
  const port = await runCli(["serve", "--registry-port", "70000", "out"], { cwd: root });
  t.is(port.code, 2);
  t.regex(port.stderr, /--registry-port 70000: not a TCP port/);
  const tls = await runCli(
    ["serve", "--no-fileserver", "--registry-port", "0", "--tls-cert", "x.pem", "out"],
    {
      cwd: root,
    },
  );
  t.is(tls.code, 2);
  t.regex(tls.stderr, /--tls-cert and --tls-key go together/);
  for (const r of [stray, none, missing, port, tls]) t.notRegex(r.stderr, /\n\s+at /);
});
