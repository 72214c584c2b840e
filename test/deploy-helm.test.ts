/**
 * bundle deploy proven with the real helm: an OpenWhisk-shaped chart (test/fixtures/openwhisk-chart)
 * and a definition with no image override at all go through prepare → upload → deploy; the
 * cluster is the one stand-in (helm upgrade --install renders with the real helm template).
 * Every image the rendered pods run, the runtimes of RUNTIMES_MANIFEST and the hard-coded curl
 * included, must be on the site registry, checked there with skopeo.
 */
import test from "ava";
import { opensslKeyPair } from "./helpers/keys.js";
import { cp, mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { pushImage } from "./helpers/images.js";
import { REPO, runCli, tempFiles } from "./helpers/cli.js";
import {
  HELM,
  clusterStandIn,
  renderedImages,
  renderedRuntimeImages,
  type ClusterStandIn,
} from "./helpers/helm.js";
import { skopeoInspectRaw } from "./helpers/skopeo.js";
import { startFileServer, type FileServer } from "../src/fileserver/server.js";

/** Source repositories as the chart names them; pushed to the test's upstream registry. */
const IMAGES = [
  ["docker.io", "openwhisk/controller", "ef725a6"],
  ["docker.io", "openwhisk/invoker", "ef725a6"],
  ["docker.io", "openwhisk/scheduler", "ef725a6"],
  ["docker.io", "openwhisk/ow-utils", "ef725a6"],
  ["docker.io", "library/zookeeper", "3.4"],
  ["docker.io", "library/redis", "4.0"],
  ["docker.io", "library/busybox", "latest"],
  ["docker.io", "grafana/grafana", "6.3.0"],
  ["docker.io", "appropriate/curl", "latest"],
  ["quay.io", "coreos/etcd", "v3.4.0"],
  ["docker.elastic.co", "elasticsearch/elasticsearch", "6.7.2"],
  ["docker.io", "openwhisk/action-nodejs-v14", "1.20.0"],
  ["docker.io", "openwhisk/action-python-v3.7", "1.17.0"],
  ["docker.io", "openwhisk/dockerskeleton", "1.14.0"],
] as const;

const VALUES = `# The release's values: no image override at all. A site value (IMG_REPO) keeps it a template until deploy.
whisk:
  ingress:
    apiHostName: "10.9.8.7"
siteRegistry: "{{IMG_REPO}}"
scheduler:
  enabled: true
activationStoreBackend: "{{store}}"
metrics:
  prometheusEnabled: true
`;

function definition(name: string, skip: string[] = []): string {
  return [
    `name: ${name}`,
    "values: { store: ElasticSearch }",
    "images:",
    ...IMAGES.filter(([, repo]) => !skip.includes(repo)).map(
      ([host, repo, tag]) => `  - ${host}/${repo}:${tag}`,
    ),
    "charts:",
    "  - name: openwhisk",
    "    path: chart",
    "templates:",
    "  - source: values.yml",
    "    dest: charts/openwhisk/site-values.yml",
    "releases:",
    "  - name: owdev",
    "    chart: openwhisk",
    "    namespace: openwhisk",
    "    values: [charts/openwhisk/site-values.yml]",
  ].join("\n");
}

let upstream: TestRegistry;
let site: TestRegistry;
let server: FileServer;
let root: string;
let cleanup: () => Promise<void>;

test.before(async () => {
  [upstream, site] = await Promise.all([startRegistry(), startRegistry()]);
  for (const [, repo, tag] of IMAGES)
    await pushImage(upstream, repo, tag, {
      kind: "oci-index",
      layers: ["ow-base", `${repo}-app`],
      label: repo,
    });
  const tmp = await tempFiles(
    {
      "full/bundle.yml": definition("ow"),
      "full/values.yml": VALUES,
      "nocurl/bundle.yml": definition("ow-nocurl", ["appropriate/curl"]),
      "nocurl/values.yml": VALUES,
      token: "tok\n",
    },
    "helm",
  );
  root = tmp.dir;
  cleanup = tmp.cleanup;
  for (const d of ["full", "nocurl"])
    await cp(path.join(REPO, "test/fixtures/openwhisk-chart"), path.join(root, d, "chart"), {
      recursive: true,
    });
  server = await startFileServer({
    root: path.join(root, "served"),
    host: "127.0.0.1",
    port: 0,
    token: "tok",
    log: () => undefined,
  });
  for (const d of ["full", "nocurl"]) {
    const p = await prepare(`${d}/bundle.yml`, `${d}/out`);
    if (p.code !== 0) throw new Error(p.stderr);
    const u = await runCli(
      ["upload", `${d}/out`, "--registry", site.host, "--fileserver", server.url, "--token-file", "token"],
      { cwd: root },
    );
    if (u.code !== 0) throw new Error(u.stderr);
  }
});

/** prepare with the upstream registry standing in for every source registry the chart names. */
function prepare(def: string, out: string, args: string[] = []) {
  const mirrors = ["docker.io", "quay.io", "docker.elastic.co"].flatMap((h) => [
    "--mirror",
    `${h}=${upstream.url}`,
  ]);
  return runCli(["prepare", "-f", def, "-o", out, ...mirrors, ...args], {
    cwd: root,
    env: { BUNDLE_CACHE_DIR: path.join(root, "cache") },
  });
}

test.after.always(async () => {
  await Promise.all([upstream?.stop(), site?.stop(), server?.close()]);
  await cleanup?.();
});

async function deploy(
  bundle: string,
  args: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string; cluster: ClusterStandIn }> {
  const cluster = await clusterStandIn(path.join(root, `cluster-${Math.random().toString(36).slice(2)}`));
  const site_ = ["--registry", site.host, "--fileserver", server.url];
  const r = await runCli(["deploy", bundle, ...site_, "--helm", cluster.helm, ...args], { cwd: root });
  return { ...r, cluster };
}

test.serial(
  "every image the real helm renders, runtimes and the hard-coded curl included, is on the site registry",
  async (t) => {
    const r = await deploy("full/out");
    t.is(r.code, 0, r.stderr);
    const installs = await r.cluster.installs();
    t.is(installs.length, 1);
    const install = installs[0]!;
    t.deepEqual(install.args.slice(-3), ["--", "owdev", path.join(root, "full/out/deploy/owdev/chart")]);

    const pods = [...new Set(renderedImages(install.rendered))].sort();
    const runtimes = renderedRuntimeImages(install.rendered).sort();
    t.is(pods.length, 11, pods.join("\n"));
    t.is(runtimes.length, 3, runtimes.join("\n"));
    const expected = IMAGES.map(([, repo, tag]) => `${site.host}/teleinfra/${repo.split("/").at(-1)}:${tag}`);
    t.deepEqual([...pods, ...runtimes].sort(), expected.sort());
    for (const image of [...pods, ...runtimes]) {
      const manifest = JSON.parse((await skopeoInspectRaw(image)).toString()) as { manifests?: unknown[] };
      t.is(manifest.manifests?.length, 2, `${image} on the site registry with both platforms`);
    }
    // Elasticsearch's major version cannot be read from a mirrored image name: the override says it.
    t.regex(install.rendered, /name: ES_MAJOR_VERSION\n\s+value: "6"/);

    t.regex(r.stderr, /proof: release owdev runs 14 images, all on the site registry/);
    t.regex(
      r.stderr,
      /warning: .*ConfigMap\/owdev-grafana-dashboards data download_dashboards\.sh: https:\/\/raw\.githubusercontent\.com\//,
    );
    t.regex(
      r.stderr,
      /warning: .*Job\/owdev-install-packages container install-packages command: .*github\.com\/apache\/openwhisk-catalog/,
    );
    const proof = JSON.parse(await readFile(path.join(root, "full/out/deploy/owdev/proof.json"), "utf8")) as {
      images: { image: string; mirrorOf?: string }[];
      problems: string[];
    };
    t.deepEqual(proof.problems, []);
    t.true(proof.images.every((i) => i.mirrorOf !== undefined));
    t.regex(
      r.stdout,
      /release owdev deployed in namespace openwhisk \(14 images proved on the site registry\)/,
    );
  },
);

test.serial(
  "an image the chart runs and the bundle lacks stops deploy before helm upgrade runs",
  async (t) => {
    const r = await deploy("nocurl/out");
    t.is(r.code, 1, r.stderr);
    t.regex(
      r.stderr,
      /Deployment\/owdev-grafana container download-dashboards: image appropriate\/curl:latest is pulled from docker\.io, outside the site: add docker\.io\/appropriate\/curl:latest to the definition's images/,
    );
    t.regex(r.stderr, /helm upgrade did not run/);
    t.deepEqual(await r.cluster.installs(), []);
  },
);

test.serial(
  "the scheduler with the CouchDB activation store is refused, naming the key and the file",
  async (t) => {
    const r = await deploy("full/out", ["--set", "store=CouchDB"]);
    t.is(r.code, 2, r.stderr);
    t.regex(
      r.stderr,
      /release owdev: charts\/openwhisk\/site-values\.yml:\d+:\d+ scheduler\.enabled: the scheduler needs activationStoreBackend: ElasticSearch/,
    );
    t.regex(r.stderr, /--skip-lint scheduler-elasticsearch/);
    t.deepEqual(await r.cluster.installs(), []);

    // prepare says so already, as a warning, and goes on.
    const p = await prepare("full/bundle.yml", "couch", ["--set", "store=CouchDB"]);
    t.is(p.code, 0, p.stderr);
    t.regex(
      p.stderr,
      /warning: .*values\.yml:\d+:\d+ scheduler\.enabled: the scheduler needs activationStoreBackend: ElasticSearch.*--skip-lint scheduler-elasticsearch/,
    );

    const skipped = await deploy("full/out", [
      "--set",
      "store=CouchDB",
      "--skip-lint",
      "scheduler-elasticsearch",
    ]);
    t.is(skipped.code, 0, skipped.stderr);
    t.is((await skipped.cluster.installs()).length, 1);
  },
);

test.serial(
  "--strict turns the chart's fetches from outside into errors; --dry-run proves without installing",
  async (t) => {
    const strict = await deploy("full/out", ["--strict"]);
    t.is(strict.code, 1, strict.stderr);
    t.regex(strict.stderr, /raw\.githubusercontent\.com/);
    t.deepEqual(await strict.cluster.installs(), []);

    const dry = await deploy("full/out", ["--dry-run"]);
    t.is(dry.code, 0, dry.stderr);
    t.regex(dry.stdout, /upgrade --install --namespace openwhisk .* -- owdev .*deploy\/owdev\/chart$/m);
    t.regex(dry.stderr, /proof: release owdev runs 14 images/);
    t.deepEqual(await dry.cluster.installs(), []);
  },
);

test.serial(
  "an images-only bundle deploys without --fileserver; a bundle without releases says so",
  async (t) => {
    const cluster = await clusterStandIn(path.join(root, "cluster-nofs"));
    const r = await runCli(["deploy", "full/out", "--registry", site.host, "--helm", cluster.helm, "-v"], {
      cwd: root,
    });
    t.is(r.code, 0, r.stderr);
    t.regex(r.stderr, new RegExp(`preflight: 14 images on ${site.host} with the lock's digests`));
    t.is((await cluster.installs()).length, 1);

    const none = await crafted("none", (lock) => (lock.releases = []));
    const n = await runCli(["deploy", none, "--registry", site.host, "--helm", cluster.helm], { cwd: root });
    t.is(n.code, 0, n.stderr);
    t.regex(n.stderr, /has no releases: nothing to deploy/);
    t.regex(n.stdout, /ow: no releases to deploy/);
    t.is((await cluster.installs()).length, 1, "helm did not run again");
  },
);

interface LockShape {
  releases: { name: string; chart: string; namespace: string; valuesFiles: string[] }[];
  templates: { dest: string; mode: number }[];
}

/** A copy of the prepared bundle with its lock changed by `edit`. */
async function crafted(name: string, edit: (lock: LockShape) => void): Promise<string> {
  const dir = path.join(root, "crafted", name);
  await cp(path.join(root, "full/out"), dir, { recursive: true });
  const file = path.join(dir, "bundle.lock.json");
  const lock = JSON.parse(await readFile(file, "utf8")) as LockShape;
  edit(lock);
  await writeFile(file, JSON.stringify(lock, null, 2));
  return dir;
}

test.serial("a crafted lock cannot make deploy delete or write outside its work folder", async (t) => {
  const canary = path.join(root, "canary");
  await mkdir(canary, { recursive: true });
  await writeFile(path.join(canary, "keep.txt"), "keep\n");
  await writeFile(path.join(root, "secret.txt"), "secret\n", { mode: 0o600 });
  const cases: [string, (l: LockShape) => void, RegExp][] = [
    [
      "name",
      (l) => (l.releases[0]!.name = "../../../canary"),
      /releases\[0\]\.name: expected a Helm release name .*, got "\.\.\/\.\.\/\.\.\/canary"/,
    ],
    [
      "option",
      (l) => (l.releases[0]!.name = "--post-renderer=/bin/sh"),
      /releases\[0\]\.name: expected a Helm release name .*, got "--post-renderer=\/bin\/sh"/,
    ],
    [
      "values",
      (l) => (l.releases[0]!.valuesFiles = ["charts/openwhisk/../../../../secret.txt"]),
      /valuesFiles\[0\]: expected a relative path .*, got "charts\/openwhisk\/\.\.\/\.\.\//,
    ],
    [
      "dest",
      (l) => (l.templates[0]!.dest = "charts/openwhisk/../../../../canary/keep.txt"),
      /templates\[0\]\.dest: expected a relative path .*, got "charts\/openwhisk\/\.\.\/\.\.\//,
    ],
  ];
  const cluster = await clusterStandIn(path.join(root, "cluster-hostile"));
  for (const [name, edit, message] of cases) {
    const dir = await crafted(name, edit);
    const r = await runCli(["deploy", dir, "--registry", site.host, "--helm", cluster.helm], { cwd: root });
    t.is(r.code, 2, `${name}: ${r.stderr}`);
    t.regex(r.stderr, message);
    t.notRegex(r.stderr, /\n\s+at /, "no stack trace");
  }
  t.is(await readFile(path.join(canary, "keep.txt"), "utf8"), "keep\n");
  t.deepEqual(await readdir(canary), ["keep.txt"]);
  t.deepEqual(await cluster.installs(), []);

  // A setuid mode in the lock is written as permission bits only.
  const setuid = await crafted("setuid", (l) => (l.templates[0]!.mode = 0o4755));
  const r = await runCli(["deploy", setuid, "--registry", site.host, "--helm", cluster.helm], { cwd: root });
  t.is(r.code, 0, r.stderr);
  const mode = (await stat(path.join(setuid, "deploy/owdev/chart/site-values.yml"))).mode & 0o7777;
  t.is(mode, 0o755);
});

test.serial(
  "audit with helm judges what the releases render: no image of the chart's files, only the real fetches",
  async (t) => {
    const site_ = ["--registry", site.host, "--fileserver", server.url];
    const r = await runCli(["--json", "audit", "full/out", ...site_, "--helm", HELM], { cwd: root });
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, /audit: each release rendered with .*helm as deploy renders it/);
    const data = JSON.parse(r.stdout) as {
      mode: string;
      findings: { kind: string; file: string; text: string }[];
    };
    t.is(data.mode, "rendered");
    t.deepEqual(data.findings.map((f) => `${f.file} ${f.kind} ${f.text}`).sort(), [
      "release owdev: ConfigMap/owdev-grafana-dashboards data download_dashboards.sh url https://raw.githubusercontent.com/apache/openwhisk/master/tools/dashboards/top.json",
      "release owdev: Job/owdev-install-packages container install-packages command git-clone https://github.com/apache/openwhisk-catalog",
    ]);

    // Without helm the chart files are read as they are: the chart's default image names are reported.
    const files = await runCli(["--json", "audit", "full/out", ...site_], {
      cwd: root,
      env: { PATH: "/usr/bin:/bin" },
    });
    t.is(files.code, 1);
    const fromFiles = JSON.parse(files.stdout) as { mode: string; findings: { text: string }[] };
    t.is(fromFiles.mode, "files");
    t.true(fromFiles.findings.some((f) => f.text.includes("openwhisk/controller")));
  },
);

test.serial(
  "a chart file changed, added or removed after signing stops verify, deploy and upload, naming it",
  async (t) => {
    const keys = opensslKeyPair();
    await writeFile(path.join(root, "sign.pem"), keys.privateKeyPem);
    await writeFile(path.join(root, "sign.pub"), keys.publicKeyPem);
    const p = await prepare("full/bundle.yml", "signed", ["--sign-key", "sign.pem"]);
    t.is(p.code, 0, p.stderr);
    const lock = JSON.parse(await readFile(path.join(root, "signed/bundle.lock.json"), "utf8")) as {
      charts: { name: string; files: { path: string; size: number; sha256: string; mode: number }[] }[];
    };
    const listed = lock.charts[0]?.files.map((f) => f.path) ?? [];
    t.true(listed.includes("templates/grafana.yaml") && listed.includes("values.yaml"), listed.join(", "));
    const ok = await runCli(["verify", "signed", "--public-key", "sign.pub"], { cwd: root });
    t.is(ok.code, 0, ok.stdout + ok.stderr);

    const tamperings: [string, (chart: string) => Promise<void>, RegExp][] = [
      [
        "changed",
        (c) => writeFile(path.join(c, "values.yaml"), "busybox: {imageName: evil/busybox}\n", { flag: "a" }),
        /charts\/openwhisk\/values\.yaml: .*expected \d+ bytes with sha256/,
      ],
      [
        "added",
        (c) =>
          writeFile(
            path.join(c, "templates/evil.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: evil}\nspec: {containers: [{name: x, image: evil/x:1}]}\n",
          ),
        /charts\/openwhisk\/templates\/evil\.yaml: in the chart but not in the lock/,
      ],
      [
        "removed",
        (c) => rm(path.join(c, "templates/grafana.yaml")),
        /charts\/openwhisk\/templates\/grafana\.yaml: listed in the lock but not in the bundle/,
      ],
    ];
    for (const [what, tamper, message] of tamperings) {
      const dir = path.join(root, "tampered", what);
      await cp(path.join(root, "signed"), dir, { recursive: true });
      await tamper(path.join(dir, "charts/openwhisk"));
      const verify = await runCli(["verify", dir, "--public-key", "sign.pub"], { cwd: root });
      t.is(verify.code, 1, `${what}: ${verify.stdout}${verify.stderr}`);
      t.regex(verify.stdout + verify.stderr, message);
      const d = await deploy(dir);
      t.is(d.code, 1, `${what}: ${d.stderr}`);
      t.regex(d.stderr, message);
      t.deepEqual(await d.cluster.installs(), [], `${what}: nothing installed`);
      const up = await runCli(
        [
          "upload",
          dir,
          "--registry",
          site.host,
          "--fileserver",
          server.url,
          "--token-file",
          "token",
          "--public-key",
          "sign.pub",
        ],
        { cwd: root },
      );
      t.is(up.code, 1, `${what}: ${up.stderr}`);
      t.regex(up.stderr, message);
    }

    // A chart overlay rendered at deploy is checked through its template's digest in the lock.
    const dir = path.join(root, "tampered", "template");
    await cp(path.join(root, "signed"), dir, { recursive: true });
    const source = path.join(dir, "templates/charts/openwhisk/site-values.yml");
    await writeFile(source, "busybox: {imageName: evil/busybox}\n", { flag: "a" });
    const verify = await runCli(["verify", dir, "--public-key", "sign.pub"], { cwd: root });
    t.is(verify.code, 1);
    t.regex(verify.stdout, /mismatch: templates\/charts\/openwhisk\/site-values\.yml/);
    const d = await deploy(dir);
    t.is(d.code, 1, d.stderr);
    t.regex(
      d.stderr,
      /templates\/charts\/openwhisk\/site-values\.yml: sha256 [0-9a-f]{64}, the lock says [0-9a-f]{64}; the template was changed after prepare/,
    );
    t.deepEqual(await d.cluster.installs(), []);
  },
);
