/**
 * bundle deploy against a real registry and file server with the real helm; the one stand-in is
 * the cluster: `helm upgrade --install` renders with the real `helm template` (test/helpers/helm.ts).
 */
import test from "ava";
import { opensslKeyPair } from "./helpers/keys.js";
import { cp, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { seedStandardImages, type StandardImages } from "./helpers/images.js";
import { makeGitRepo, type TestGitRepo } from "./helpers/git.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { startFileServer, type FileServer } from "../src/fileserver/server.js";
import { clusterStandIn, renderedImages, type ClusterStandIn } from "./helpers/helm.js";

let source: TestRegistry;
let site: TestRegistry;
let empty: TestRegistry;
let server: FileServer;
let emptyServer: FileServer;
let images: StandardImages;
let repo: TestGitRepo;
let root: string;
let bundle: string;
let helm: string;
let cluster: ClusterStandIn;
let cleanups: (() => Promise<void>)[] = [];

test.before(async () => {
  [source, site, empty] = await Promise.all([startRegistry(), startRegistry(), startRegistry()]);
  images = await seedStandardImages(source);
  repo = await makeGitRepo({ chart: "demo" });
  const tmp = await tempFiles(
    {
      "bundle.yml": [
        "name: dep",
        "values: { ingress_ip: 10.1.2.3 }",
        "images:",
        `  - ${images.ociIndex.ref}`,
        "git:",
        `  - url: ${repo.url}`,
        `    commit: ${repo.commits.at(-1)}`,
        "    chart: helm/demo",
        "templates:",
        "  - source: override.yml",
        "    dest: files/override.yml",
        "  - source: init.sh",
        "    dest: charts/demo/init.sh",
        '    mode: "0755"',
        "charts:",
        "  - name: second",
        "    path: second",
        "releases:",
        "  - name: demo",
        "    chart: demo",
        "    namespace: apps",
        "    values: [files/override.yml]",
        "  - name: second",
        "    chart: second",
      ].join("\n"),
      "override.yml":
        'docker:\n  registry:\n    name: "{{IMG_REPO}}/"\napiHost: {{ingress_ip}}\n' +
        'image:\n  repository: "{{IMG_REPO}}/teleinfra/multi-oci"\n  tag: v1\n',
      "init.sh": "curl {{FILESERVER_URL}}/x.tar.gz\n",
      "second/Chart.yaml": "apiVersion: v2\nname: second\nversion: 1.0.0\n",
      token: "tok\n",
    },
    "dep",
  );
  cleanups.push(tmp.cleanup);
  root = tmp.dir;
  cluster = await clusterStandIn(path.join(root, "cluster"));
  helm = cluster.helm;
  bundle = path.join(root, "out");
  server = await startFileServer({
    root: path.join(root, "served"),
    host: "127.0.0.1",
    port: 0,
    token: "tok",
    log: () => undefined,
  });
  emptyServer = await startFileServer({
    root: path.join(root, "none"),
    host: "127.0.0.1",
    port: 0,
    log: () => undefined,
  });
  const env = { BUNDLE_CACHE_DIR: path.join(root, "cache") };
  const p = await runCli(["prepare", "-o", bundle], { cwd: root, env });
  if (p.code !== 0) throw new Error(p.stderr);
  const u = await runCli(
    ["upload", bundle, "--registry", site.host, "--fileserver", server.url, "--token-file", "token"],
    { cwd: root },
  );
  if (u.code !== 0) throw new Error(u.stderr);
});

test.after.always(async () => {
  await Promise.all([source?.stop(), site?.stop(), empty?.stop(), server?.close(), emptyServer?.close()]);
  await repo?.cleanup();
  for (const c of cleanups) await c();
  cleanups = [];
});

/** Runs deploy; `recorded` is each `helm upgrade` it ran, as the cluster got it. */
async function deployWith(args: string[], env: Record<string, string> = {}) {
  const before = (await cluster.installs()).length;
  const r = await runCli(["deploy", bundle, ...args], { cwd: root, env });
  const installs = (await cluster.installs()).slice(before);
  return { ...r, installs, recorded: installs.map((i) => ["upgrade", "--install", ...i.args]) };
}

test.serial(
  "deploy runs helm upgrade --install once per release, each under its own name, against the mirrors",
  async (t) => {
    const r = await deployWith([
      "--registry",
      site.host,
      "--fileserver",
      server.url,
      "--helm",
      helm,
      "--kube-context",
      "edge",
    ]);
    t.is(r.code, 0, r.stderr);
    t.is(r.recorded.length, 2);
    const [demo, second] = r.recorded as [string[], string[]];
    const work = path.join(bundle, "deploy");
    t.deepEqual(demo, [
      "upgrade",
      "--install",
      "--namespace",
      "apps",
      "--create-namespace",
      "-f",
      path.join(work, "demo", "generated-values.yaml"),
      "-f",
      path.join(work, "demo", "values-1-override.yml"),
      "--wait",
      "--timeout",
      "10m",
      "--kube-context",
      "edge",
      "--",
      "demo",
      path.join(work, "demo", "chart"),
    ]);
    t.deepEqual(second.slice(0, 5), ["upgrade", "--install", "--namespace", "second", "--create-namespace"]);
    t.deepEqual(second.slice(-3), ["--", "second", path.join(work, "second", "chart")]);
    t.is(
      await readFile(path.join(work, "demo", "values-1-override.yml"), "utf8"),
      `docker:\n  registry:\n    name: "${site.host}/"\napiHost: 10.1.2.3\n` +
        `image:\n  repository: "${site.host}/teleinfra/multi-oci"\n  tag: v1\n`,
    );
    t.deepEqual(renderedImages(r.installs[0]?.rendered ?? ""), [`${site.host}/teleinfra/multi-oci:v1`]);
    t.is(
      await readFile(path.join(work, "demo", "chart", "init.sh"), "utf8"),
      `curl ${server.url}/dep/x.tar.gz\n`,
      "the chart overlay got the site's values",
    );
    t.regex(r.stderr, /proof: release demo runs 1 image, all on the site registry/);
  },
);

test.serial("a missing image digest or file stops the deploy before helm runs, naming each", async (t) => {
  const r = await deployWith(["--registry", empty.host, "--fileserver", emptyServer.url, "--helm", helm]);
  t.is(r.code, 1);
  t.deepEqual(r.recorded, [], "helm never ran");
  t.regex(r.stderr, /preflight failed; nothing was deployed/);
  t.regex(
    r.stderr,
    new RegExp(
      `${empty.host}/teleinfra/multi-oci:v1 is not on the registry \\(expected ${images.ociIndex.digest}\\)`,
    ),
  );
  t.regex(r.stderr, new RegExp(`${emptyServer.url}/dep/override\\.yml is missing`));
  t.regex(r.stderr, /\.tar\.gz is missing/);
});

test.serial("helm's failure is exit 1 with its output; later releases are not deployed", async (t) => {
  const r = await deployWith(["--registry", site.host, "--fileserver", server.url, "--helm", helm], {
    CLUSTER_FAIL: "Error: INSTALLATION FAILED: timed out waiting for the condition",
  });
  t.is(r.code, 1);
  t.is(r.recorded.length, 1, "the second release did not run");
  t.regex(r.stderr, /helm upgrade --install demo failed \(exit 3\); later releases were not deployed:/);
  t.regex(r.stderr, /INSTALLATION FAILED: timed out waiting for the condition/);
});

test.serial("--dry-run prints each command and writes the values files, without helm", async (t) => {
  const r = await deployWith(["--registry", site.host, "--fileserver", server.url, "--dry-run"], {
    PATH: "/usr/bin:/bin",
  });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.recorded, []);
  const lines = r.stdout.trim().split("\n");
  t.is(lines.length, 2);
  t.regex(
    lines[0] ?? "",
    /^helm upgrade --install --namespace apps --create-namespace -f .*generated-values\.yaml -f .*values-1-override\.yml --wait --timeout 10m -- demo \S+\/chart$/,
  );
  t.regex(
    await readFile(path.join(bundle, "deploy", "demo", "values-1-override.yml"), "utf8"),
    new RegExp(`name: "${site.host}/"`),
  );
});

test.serial("no helm anywhere is named in the preflight", async (t) => {
  const r = await deployWith(["--registry", site.host, "--fileserver", server.url], {
    PATH: "/usr/bin:/bin",
  });
  t.is(r.code, 1);
  t.regex(r.stderr, /helm was not found: install it, give --helm PATH, or carry it in the bundle/);
  await writeFile(path.join(root, "unused"), "");
});

test.serial(
  "bundle audit agrees with the proof: the override points the chart's one image at the mirror",
  async (t) => {
    const r = await runCli(["audit", bundle, "--registry", site.host, "--fileserver", server.url]);
    t.is(r.code, 0, r.stdout + r.stderr);
    t.regex(r.stdout, /nothing in the bundle reaches outside the site/);
  },
);

test.serial(
  "bundle verify and inspect through the command line: ok is exit 0, a corrupt file is exit 1 naming it",
  async (t) => {
    const ok = await runCli(["verify", bundle]);
    t.is(ok.code, 0, ok.stdout + ok.stderr);
    t.regex(ok.stdout, /^bundle ok: /m);
    const inspect = await runCli(["--json", "inspect", bundle]);
    t.is(inspect.code, 0, inspect.stderr);
    t.deepEqual(
      (JSON.parse(inspect.stdout) as { images: { ref: string }[] }).images.map((i) => i.ref),
      [images.ociIndex.ref],
    );
    const copy = path.join(root, "corrupt");
    await cp(bundle, copy, { recursive: true });
    const archive = (await readdir(path.join(copy, "files"))).find((f) => f.endsWith(".tar.gz")) ?? "";
    const bytes = await readFile(path.join(copy, "files", archive));
    bytes[100] = (bytes[100] ?? 0) ^ 0xff;
    await writeFile(path.join(copy, "files", archive), bytes);
    const bad = await runCli(["verify", copy]);
    t.is(bad.code, 1);
    t.regex(bad.stdout, new RegExp(`mismatch: files/${archive.replace(/[.]/g, "\\.")}`));
  },
);

test.serial("prepare --sign-key signs the lock; verify and upload --public-key check it", async (t) => {
  const mine = opensslKeyPair();
  const other = opensslKeyPair();
  await writeFile(path.join(root, "sign.pem"), mine.privateKeyPem);
  await writeFile(path.join(root, "sign.pub"), mine.publicKeyPem);
  await writeFile(path.join(root, "other.pub"), other.publicKeyPem);
  const signed = path.join(root, "signed");
  const env = { BUNDLE_CACHE_DIR: path.join(root, "cache") };
  const p = await runCli(["prepare", "-o", signed, "--sign-key", "sign.pem"], { cwd: root, env });
  t.is(p.code, 0, p.stderr);
  t.false(p.stdout.includes("PRIVATE KEY") || p.stderr.includes("PRIVATE KEY"));
  t.is((await runCli(["verify", signed, "--public-key", "sign.pub"], { cwd: root })).code, 0);
  const wrongKey = await runCli(["verify", signed, "--public-key", "other.pub"], { cwd: root });
  t.is(wrongKey.code, 1);
  t.regex(wrongKey.stderr, /another key/);
  const lockFile = path.join(signed, "bundle.lock.json");
  await writeFile(lockFile, (await readFile(lockFile, "utf8")).replace('"name": "dep"', '"name": "dep2"'));
  const tampered = await runCli(["upload", signed, "--registry", site.host, "--public-key", "sign.pub"], {
    cwd: root,
  });
  t.is(tampered.code, 1);
  t.regex(tampered.stderr, /invalid/);
});

test.serial(
  "one file: prepare --archive writes split parts; verify, upload and deploy --dry-run take the archive",
  async (t) => {
    const env = { BUNDLE_CACHE_DIR: path.join(root, "cache") };
    const archive = path.join(root, "dep.tar");
    const p = await runCli(
      ["prepare", "-o", path.join(root, "for-archive"), "--archive", archive, "--split", "20K"],
      { cwd: root, env },
    );
    t.is(p.code, 0, p.stderr);
    const parts = (await readdir(root)).filter((f) => f.startsWith("dep.tar.")).sort();
    t.true(parts.length >= 3, parts.join(", "));
    t.is((await runCli(["verify", archive], { cwd: root })).code, 0);
    const up = await runCli(
      [
        "--json",
        "upload",
        archive,
        "--registry",
        site.host,
        "--fileserver",
        server.url,
        "--token-file",
        "token",
      ],
      {
        cwd: root,
      },
    );
    t.is(up.code, 0, up.stderr);
    t.is(
      (JSON.parse(up.stdout) as { bytesMoved: number }).bytesMoved,
      0,
      "the site already holds everything",
    );
    const dry = await runCli(
      ["deploy", archive, "--registry", site.host, "--fileserver", server.url, "--dry-run"],
      { cwd: root },
    );
    t.is(dry.code, 0, dry.stderr);
    t.regex(dry.stdout, new RegExp(`helm upgrade --install .* -- demo ${path.join(root, "bundle-deploy")}`));
    const back = path.join(root, "unpacked");
    t.is((await runCli(["unpack", archive, back], { cwd: root })).code, 0);
    t.is(
      await readFile(path.join(back, "bundle.lock.json"), "utf8"),
      await readFile(path.join(root, "for-archive", "bundle.lock.json"), "utf8"),
    );
  },
);

test.serial(
  "an update bundle carries only what is new; upload onto the site that has the old one works, onto an empty one names what is missing",
  async (t) => {
    const env = { BUNDLE_CACHE_DIR: path.join(root, "cache") };
    const defFile = path.join(root, "bundle.yml");
    const original = await readFile(defFile, "utf8");
    t.teardown(() => writeFile(defFile, original));
    await writeFile(
      defFile,
      original.replace(
        `  - ${images.ociIndex.ref}`,
        `  - ${images.ociIndex.ref}\n  - ${images.dockerList.ref}`,
      ),
    );
    const update = path.join(root, "update");
    const p = await runCli(["--json", "prepare", "-o", update, "--since", bundle], { cwd: root, env });
    t.is(p.code, 0, p.stderr);
    t.regex(p.stderr, /update bundle against .*: .* carried, .* left to the site's earlier upload/);
    type Images = {
      digest: string;
      size: number;
      blobs: { digest: string; size: number; mediaType: string }[];
    }[];
    const lock = JSON.parse(await readFile(path.join(update, "bundle.lock.json"), "utf8")) as {
      update: { omittedBlobs: string[]; omittedFiles: string[] };
      images: Images;
    };
    // The site's layers were not even downloaded: only the new layers, the configs and manifests.
    const before = JSON.parse(await readFile(path.join(bundle, "bundle.lock.json"), "utf8")) as {
      images: Images;
    };
    const siteLayers = new Set(
      before.images.flatMap((i) => i.blobs.filter((b) => /layer/.test(b.mediaType)).map((b) => b.digest)),
    );
    const blobs = new Map(lock.images.flatMap((i) => i.blobs.map((b) => [b.digest, b.size] as const)));
    const sum = (sizes: number[]) => sizes.reduce((a, b) => a + b, 0);
    const full = sum([...blobs.values()]);
    const lacking = sum([...blobs].filter(([d]) => !siteLayers.has(d)).map(([, size]) => size));
    const moved = (JSON.parse(p.stdout) as { bytesMoved: number }).bytesMoved;
    t.true(siteLayers.size > 0);
    t.true(
      moved <= lacking,
      `${moved} bytes fetched; the site lacks ${lacking} (a full prepare fetches ${full})`,
    );
    const old = lock.images[0];
    t.true(lock.update.omittedBlobs.includes(old?.digest ?? ""), "the image the old bundle had is left out");
    const stored = await readdir(path.join(update, "images", "blobs", "sha256"));
    for (const d of lock.update.omittedBlobs)
      t.false(stored.includes(d.slice(7)), `left-out ${d} is not stored`);
    t.true(lock.update.omittedFiles.length > 0);
    t.is((await runCli(["verify", update])).code, 0, "verify knows what an update bundle leaves out");

    const args = ["--json", "upload", update, "--fileserver", server.url, "--token-file", "token"];
    const onto = await runCli([...args, "--registry", site.host], { cwd: root });
    t.is(onto.code, 0, onto.stderr);
    const pushed = await runCli(
      ["deploy", update, "--registry", site.host, "--fileserver", server.url, "--dry-run"],
      { cwd: root },
    );
    t.is(pushed.code, 0, pushed.stderr);

    const fresh = await runCli([...args, "--registry", empty.host], { cwd: root });
    t.is(fresh.code, 1);
    t.regex(fresh.stderr, /the site lacks:/);
    t.regex(
      fresh.stderr,
      new RegExp(
        `manifest ${old?.digest} of ${images.ociIndex.ref.replace(/[.]/g, "\\.")} is not on the registry in teleinfra/multi-oci`,
      ),
    );
  },
);
