/**
 * Charts from a Helm repository and an OCI registry, through the CLI: the repository's
 * index.yaml and archives are made by the real `helm package` / `helm repo index` and served
 * over loopback HTTP, the OCI chart is pushed by the real `helm push` to a Distribution
 * registry. prepare carries them with their digests, fetches a subchart the archive lacks
 * (its version from Chart.lock) and packages the completed chart for upload, so the site's helm
 * pulls a chart it renders; deploy renders the repository's chart through its proof, and
 * other bytes under a pinned version stop prepare, naming the chart, version, URL and digests.
 */
import test from "ava";
import { createHash } from "node:crypto";
import { cp, mkdir, readFile, readdir, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import * as tar from "tar";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { pushImage, type PushedImage } from "./helpers/images.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { clusterStandIn, renderedImages } from "./helpers/helm.js";
import { helm, serveHelmRepo, writeChart, type HelmRepo } from "./helpers/helmRepo.js";
import { startFileServer, type FileServer } from "../src/fileserver/server.js";
import type { Lock } from "../src/bundle/lock.js";

let upstream: TestRegistry;
let site: TestRegistry;
let repo: HelmRepo;
let server: FileServer;
let image: PushedImage;
let root: string;
let cleanup: () => Promise<void>;
/** What `helm push` said the OCI chart's manifest digest is. */
let pushedDigest: string;

const CANARY = "not the bundle's\n";

const sha256 = async (file: string) =>
  createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
const readLockOf = async (out: string) =>
  JSON.parse(await readFile(path.join(root, out, "bundle.lock.json"), "utf8")) as Lock;

function definition(repoUrl: string, extra: string[] = []): string {
  return [
    "name: charts",
    "images:",
    `  - ${image.ref}`,
    "charts:",
    `  - repo: ${repoUrl}`,
    "    name: web",
    "    version: 1.2.3",
    `  - repo: ${repoUrl}`,
    "    name: app",
    "    version: 2.0.0",
    `  - oci: oci://${upstream.host}/charts/tool`,
    "    version: 0.3.0",
    ...extra,
    "templates:",
    "  - source: web-values.yml",
    "    dest: charts/web/site-values.yml",
    "releases:",
    "  - name: web",
    "    chart: web",
    "    values: [charts/web/site-values.yml]",
  ].join("\n");
}

test.before(async () => {
  [upstream, site] = await Promise.all([startRegistry(), startRegistry()]);
  image = await pushImage(upstream, "library/web", "v1", { kind: "oci-index", layers: ["web"] });
  const tmp = await tempFiles(
    {
      "bundle.yml": "",
      "web-values.yml": 'image:\n  repository: "{{IMG_REPO}}/teleinfra/web"\n  tag: v1\n',
      "canary.txt": CANARY,
      token: "tok\n",
    },
    "charts",
  );
  root = tmp.dir;
  cleanup = tmp.cleanup;
  repo = await serveHelmRepo(path.join(root, "repo"));
  await makeCharts();
  await writeFile(path.join(root, "bundle.yml"), definition(repo.url));
  server = await startFileServer({
    root: path.join(root, "served"),
    host: "127.0.0.1",
    port: 0,
    token: "tok",
    log: () => undefined,
  });
});

/**
 * lib 0.1.0 (a helper and a ConfigMap of its own); web 1.2.3 needing lib, packaged by helm with --dependency-update (helm fetches lib
 * from the repository, so the archive holds it); app 2.0.0 needing lib `^0.1.0` pinned by its
 * Chart.lock, archived without it (as a chart made by another tool is); tool 0.3.0 pushed to OCI.
 */
async function makeCharts(): Promise<void> {
  const src = path.join(root, "src");
  const home = path.join(root, "helm");
  await writeChart(path.join(src, "lib"), {
    "Chart.yaml": "apiVersion: v2\nname: lib\nversion: 0.1.0\n",
    "templates/_helpers.tpl": '{{- define "lib.name" -}}lib{{- end -}}\n',
    "templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-lib\n",
  });
  await writeChart(path.join(src, "web"), webChart("replicas: 1\n"));
  await writeChart(path.join(src, "app"), {
    "Chart.yaml": `apiVersion: v2\nname: app\nversion: 2.0.0\ndependencies:\n  - name: lib\n    version: ^0.1.0\n    repository: ${repo.url}\n`,
    "Chart.lock": `dependencies:\n  - name: lib\n    repository: ${repo.url}\n    version: 0.1.0\ndigest: sha256:0\ngenerated: "2024-01-01T00:00:00Z"\n`,
    "values.yaml": "{}\n",
  });
  await writeChart(path.join(src, "tool"), {
    "Chart.yaml": "apiVersion: v2\nname: tool\nversion: 0.3.0\n",
    "templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tool\n",
  });
  await helm(home, ["package", path.join(src, "lib"), "-d", repo.dir]);
  await helm(home, ["repo", "index", repo.dir]);
  await helm(home, ["package", path.join(src, "web"), "--dependency-update", "-d", repo.dir]);
  await tar.c({ gzip: true, file: path.join(repo.dir, "app-2.0.0.tgz"), cwd: src, portable: true }, ["app"]);
  await helm(home, ["repo", "index", repo.dir]);
  await helm(home, ["package", path.join(src, "tool"), "-d", path.join(root, "oci")]);
  const pushed = await helm(home, [
    "push",
    path.join(root, "oci", "tool-0.3.0.tgz"),
    `oci://${upstream.host}/charts`,
    "--plain-http",
  ]);
  pushedDigest = /Digest: (sha256:[a-f0-9]{64})/.exec(pushed)?.[1] ?? "";
  if (!pushedDigest) throw new Error(`helm push said no digest: ${pushed}`);
}

function webChart(values: string): Record<string, string> {
  return {
    "Chart.yaml": `apiVersion: v2\nname: web\nversion: 1.2.3\ndependencies:\n  - name: lib\n    version: 0.1.0\n    repository: ${repo.url}\n`,
    "values.yaml": `image:\n  repository: docker.io/library/web\n  tag: v1\n${values}`,
    "templates/deployment.yaml": [
      "apiVersion: apps/v1",
      "kind: Deployment",
      "metadata:",
      "  name: web",
      "spec:",
      "  replicas: {{ .Values.replicas }}",
      "  selector: { matchLabels: { app: web } }",
      "  template:",
      "    metadata: { labels: { app: web } }",
      "    spec:",
      "      containers:",
      "        - name: web",
      '          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"',
      "",
    ].join("\n"),
  };
}

test.after.always(async () => {
  await Promise.all([upstream?.stop(), site?.stop(), repo?.close(), server?.close()]);
  await cleanup?.();
});

/**
 * A chart `name` with one ConfigMap, packaged by the real helm into `dir`, pushed to each of
 * `registries` under `charts/`; returns the archive and the manifest digest of each push.
 */
async function onePushedChart(
  name: string,
  version: string,
  dir: string,
  registries: TestRegistry[],
): Promise<{ archive: string; digests: string[] }> {
  const home = path.join(root, "helm");
  await writeChart(path.join(root, "src", name), {
    "Chart.yaml": `apiVersion: v2\nname: ${name}\nversion: ${version}\n`,
    "templates/cm.yaml": `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n`,
  });
  await helm(home, ["package", path.join(root, "src", name), "-d", dir]);
  const archive = path.join(dir, `${name}-${version}.tgz`);
  const digests: string[] = [];
  for (const at of registries) {
    const pushed = await helm(home, ["push", archive, `oci://${at.host}/charts`, "--plain-http"]);
    digests.push(/Digest: (sha256:[a-f0-9]{64})/.exec(pushed)?.[1] ?? "none");
  }
  return { archive, digests };
}

function prepare(out: string, file = "bundle.yml") {
  return runCli(["prepare", "-f", file, "-o", out], {
    cwd: root,
    env: { BUNDLE_CACHE_DIR: path.join(root, "cache") },
  });
}

test.serial("prepare carries charts from a Helm repository and an OCI registry, pinned", async (t) => {
  const asked = repo.requests.length;
  const r = await prepare("out");
  t.is(r.code, 0, r.stderr);
  const lock = await readLockOf("out");
  const chart = (name: string) => lock.charts.find((c) => c.name === name);
  const out = path.join(root, "out");

  const webSha = await sha256(path.join(repo.dir, "web-1.2.3.tgz"));
  t.deepEqual(chart("web")?.archive, {
    path: "charts/web-1.2.3.tgz",
    size: (await stat(path.join(repo.dir, "web-1.2.3.tgz"))).size,
    sha256: webSha,
  });
  t.deepEqual(chart("web")?.origin, {
    kind: "repo",
    url: repo.url,
    name: "web",
    version: "1.2.3",
    sha256: webSha,
  });
  t.is(chart("web")?.version, "1.2.3");
  t.is(await sha256(path.join(out, "charts/web-1.2.3.tgz")), webSha);
  t.regex(await readFile(path.join(out, "charts/web/templates/deployment.yaml"), "utf8"), /kind: Deployment/);
  // helm vendored lib into web's archive (as a folder): carried as it is, not fetched again.
  const libSha = await sha256(path.join(repo.dir, "lib-0.1.0.tgz"));
  t.regex(await readFile(path.join(out, "charts/web/charts/lib/Chart.yaml"), "utf8"), /name: lib/);
  t.is(chart("web")?.origin?.dependencies, undefined);
  // Three charts of one repository (web, app and app's lib): its index read once, each archive once.
  t.deepEqual(repo.requests.slice(asked).sort(), [
    "/app-2.0.0.tgz",
    "/index.yaml",
    "/lib-0.1.0.tgz",
    "/web-1.2.3.tgz",
  ]);

  // app's archive lacks lib: fetched at the version its Chart.lock pins, and pinned in the lock.
  t.deepEqual(chart("app")?.origin?.dependencies, [
    { name: "lib", version: "0.1.0", repository: repo.url, sha256: libSha },
  ]);
  t.is(await sha256(path.join(out, "charts/app/charts/lib-0.1.0.tgz")), libSha);
  // So app's folder is not the archive it came as: what upload pushes is the folder packaged
  // (lib inside), and origin keeps the served archive's sha256.
  const appSha = await sha256(path.join(repo.dir, "app-2.0.0.tgz"));
  const app = chart("app");
  t.is(app?.origin?.sha256, appSha);
  t.is(app?.archive?.path, "charts/app-2.0.0.tgz");
  t.not(app?.archive?.sha256, appSha);
  t.is(app?.archive?.sha256, (await sha256(path.join(out, "charts/app-2.0.0.tgz"))) as string | undefined);
  t.is(app?.archive?.size, (await stat(path.join(out, "charts/app-2.0.0.tgz"))).size as number | undefined);
  const packed: string[] = [];
  await tar.t({ file: path.join(out, "charts/app-2.0.0.tgz"), onReadEntry: (e) => packed.push(e.path) });
  t.deepEqual(packed, ["app/Chart.lock", "app/Chart.yaml", "app/charts/lib-0.1.0.tgz", "app/values.yaml"]);
  t.regex(
    r.stderr,
    /chart app 2\.0\.0: charts\/app\/ is not the archive it came as \(charts\/lib-0\.1\.0\.tgz added\); packaged → charts\/app-2\.0\.0\.tgz/,
  );
  t.notRegex(r.stderr, /chart (web|tool) [\d.]+: charts\/\w+\/ is not the archive/);

  const toolSha = await sha256(path.join(root, "oci", "tool-0.3.0.tgz"));
  t.deepEqual(chart("tool")?.origin, {
    kind: "oci",
    ref: `oci://${upstream.host}/charts/tool`,
    version: "0.3.0",
    digest: pushedDigest,
    sha256: toolSha,
  });
  t.is(await sha256(path.join(out, "charts/tool-0.3.0.tgz")), toolSha);
  t.truthy(chart("tool")?.files?.find((f) => f.path === "templates/cm.yaml"));

  const inspect = await runCli(["inspect", "out"], { cwd: root });
  t.is(inspect.code, 0, inspect.stderr);
  t.regex(inspect.stdout, new RegExp(`web +1\\.2\\.3 +${repo.url}.*\\(web\\) +sha256:${webSha}`));
  t.regex(inspect.stdout, new RegExp(`tool +0\\.3\\.0 +oci://${upstream.host}/charts/tool +${pushedDigest}`));
  t.regex(inspect.stdout, /app +2\.0\.0 .* lib 0\.1\.0/);
  const verify = await runCli(["verify", "out"], { cwd: root });
  t.is(verify.code, 0, verify.stdout + verify.stderr);
  t.is(await readFile(path.join(root, "canary.txt"), "utf8"), CANARY);
});

test.serial("deploy renders the repository's chart through its proof", async (t) => {
  const u = await runCli(
    ["upload", "out", "--registry", site.host, "--fileserver", server.url, "--token-file", "token"],
    { cwd: root },
  );
  t.is(u.code, 0, u.stderr);
  // The site's real helm pulls each chart from the site registry: the original archive, byte for byte.
  for (const [name, version, original] of [
    ["web", "1.2.3", path.join(repo.dir, "web-1.2.3.tgz")],
    ["tool", "0.3.0", path.join(root, "oci", "tool-0.3.0.tgz")],
  ] as const) {
    const dest = path.join(root, "pulled", name);
    const ref = `oci://${site.host}/teleinfra/charts/${name}`;
    await mkdir(dest, { recursive: true });
    await helm(path.join(root, "helm-site"), ["pull", ref, "--version", version, "--plain-http", "-d", dest]);
    t.deepEqual(await readdir(dest), [`${name}-${version}.tgz`]);
    t.is(await sha256(path.join(dest, `${name}-${version}.tgz`)), await sha256(original), ref);
  }
  // app as deploy installs it: the pulled archive holds the lib prepare fetched, so the real helm
  // renders lib's ConfigMap with no `helm dependency build`; the served archive alone fails.
  const home = path.join(root, "helm-site");
  const appDir = path.join(root, "pulled", "app");
  await mkdir(appDir, { recursive: true });
  const appRef = `oci://${site.host}/teleinfra/charts/app`;
  await helm(home, ["pull", appRef, "--version", "2.0.0", "--plain-http", "-d", appDir]);
  const appArchive = (await readLockOf("out")).charts.find((c) => c.name === "app")?.archive;
  t.is(appArchive?.sha256, (await sha256(path.join(appDir, "app-2.0.0.tgz"))) as string | undefined);
  const rendered = await helm(home, ["template", "site", path.join(appDir, "app-2.0.0.tgz")]);
  t.regex(rendered, /kind: ConfigMap\nmetadata:\n {2}name: site-lib\n/);
  await t.throwsAsync(helm(home, ["template", "site", path.join(repo.dir, "app-2.0.0.tgz")]), {
    message: /missing in charts\/ directory: lib/,
  });
  const cluster = await clusterStandIn(path.join(root, "cluster"));
  const r = await runCli(
    ["deploy", "out", "--registry", site.host, "--fileserver", server.url, "--helm", cluster.helm],
    { cwd: root },
  );
  t.is(r.code, 0, r.stderr);
  const installs = await cluster.installs();
  t.is(installs.length, 1);
  t.deepEqual(renderedImages(installs[0]?.rendered ?? ""), [`${site.host}/teleinfra/web:v1`]);
  t.regex(r.stderr, /proof: release web runs 1 image, all on the site registry/);
});

test.serial("an index whose digest is not the archive's is exit 1, and nothing is kept", async (t) => {
  const bad = await serveHelmRepo(path.join(root, "bad-repo"));
  t.teardown(() => bad.close());
  await cp(repo.dir, bad.dir, { recursive: true });
  const index = await readFile(path.join(repo.dir, "index.yaml"), "utf8");
  const webSha = await sha256(path.join(repo.dir, "web-1.2.3.tgz"));
  const wrong = "f".repeat(64);
  await writeFile(path.join(bad.dir, "index.yaml"), index.replaceAll(webSha, wrong));
  await writeFile(path.join(root, "bad.yml"), definition(bad.url));
  const r = await prepare("bad-out", "bad.yml");
  t.is(r.code, 1, r.stderr);
  t.regex(
    r.stderr,
    new RegExp(
      `chart web 1\\.2\\.3 from ${bad.url}web-1\\.2\\.3\\.tgz: sha256 ${webSha} differs from ${wrong} \\(the digest ${bad.url}index\\.yaml gives it\\)`,
    ),
  );
  t.notRegex(r.stderr, /\n\s+at /, "no stack trace");
  const left: string[] = await readdir(path.join(root, "bad-out", "charts")).catch(() => []);
  t.false(left.includes("web-1.2.3.tgz"));
  t.false(left.includes("web"));
  await t.throwsAsync(stat(path.join(root, "bad-out", "bundle.lock.json")));
});

test.serial(
  "the same version with other bytes is exit 1 naming chart, version, URL and digests",
  async (t) => {
    const home = path.join(root, "helm");
    const first = await readLockOf("out");
    const again = await prepare("out");
    t.is(again.code, 0, `the same bytes again pass their pins: ${again.stderr}`);
    t.deepEqual((await readLockOf("out")).charts, first.charts);
    const before = await readFile(path.join(root, "out", "bundle.lock.json"), "utf8");
    const oldSha = await sha256(path.join(repo.dir, "web-1.2.3.tgz"));
    await writeChart(path.join(root, "src", "web"), webChart("replicas: 2\n"));
    await helm(home, ["package", path.join(root, "src", "web"), "--dependency-update", "-d", repo.dir]);
    await helm(home, ["repo", "index", repo.dir]);
    const newSha = await sha256(path.join(repo.dir, "web-1.2.3.tgz"));
    t.not(newSha, oldSha);

    const r = await prepare("out");
    t.is(r.code, 1, r.stderr);
    t.regex(
      r.stderr,
      new RegExp(
        `chart web 1\\.2\\.3 from ${repo.url}web-1\\.2\\.3\\.tgz: sha256 ${newSha} differs from ${oldSha} \\(bundle\\.lock\\.json of an earlier prepare`,
      ),
    );
    t.is(await readFile(path.join(root, "out", "bundle.lock.json"), "utf8"), before, "the lock is untouched");
    const archive = await sha256(path.join(root, "out", "charts/web-1.2.3.tgz")).catch(() => "absent");
    t.not(archive, newSha, "the other bytes are not under the final name");
    t.is(await readFile(path.join(root, "canary.txt"), "utf8"), CANARY);
  },
);

test.serial("a version range is a lint error naming the file and line", async (t) => {
  await writeFile(
    path.join(root, "range.yml"),
    definition(repo.url, [`  - repo: ${repo.url}`, "    name: lib", '    version: "^0.1.0"']),
  );
  const r = await runCli(["lint", "-f", "range.yml"], { cwd: root });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /range\.yml:15:\d+ charts\[3\]\.version: version "\^0\.1\.0" is not an exact version/);
});

test.serial(
  "a pin in the definition that the archive does not match is exit 1 naming the line",
  async (t) => {
    const pin = "a".repeat(64);
    const lines = ["name: pinned", "charts:", `  - repo: ${repo.url}`, "    name: web", "    version: 1.2.3"];
    await writeFile(path.join(root, "pin.yml"), [...lines, `    sha256: ${pin}`].join("\n"));
    const r = await prepare("pin-out", "pin.yml");
    t.is(r.code, 1, r.stderr);
    t.regex(
      r.stderr,
      new RegExp(
        `chart web 1\\.2\\.3 from ${repo.url}web-1\\.2\\.3\\.tgz: sha256 [a-f0-9]{64} differs from ${pin} \\(the pin at pin\\.yml:3:`,
      ),
    );
    await t.throwsAsync(stat(path.join(root, "pin-out", "charts", "web-1.2.3.tgz")));
  },
);

test.serial("a chart archive holding a link is refused whole, naming its URL", async (t) => {
  const evil = await serveHelmRepo(path.join(root, "evil-repo"));
  t.teardown(() => evil.close());
  const src = path.join(root, "evil-src");
  await writeChart(path.join(src, "evil"), { "Chart.yaml": "apiVersion: v2\nname: evil\nversion: 1.0.0\n" });
  await mkdir(path.join(src, "evil", "templates"), { recursive: true });
  await symlink(path.join(root, "canary.txt"), path.join(src, "evil", "templates", "cm.yaml"));
  await tar.c({ gzip: true, file: path.join(evil.dir, "evil-1.0.0.tgz"), cwd: src, portable: true }, [
    "evil",
  ]);
  await helm(path.join(root, "helm"), ["repo", "index", evil.dir]);
  const lines = ["name: evil", "charts:", `  - repo: ${evil.url}`, "    name: evil", "    version: 1.0.0"];
  await writeFile(path.join(root, "evil.yml"), lines.join("\n"));
  const r = await prepare("evil-out", "evil.yml");
  t.is(r.code, 1, r.stderr);
  t.regex(
    r.stderr,
    new RegExp(
      `${evil.url}evil-1\\.0\\.0\\.tgz: refusing the chart archive: evil/templates/cm\\.yaml \\(SymbolicLink\\)`,
    ),
  );
  const left: string[] = await readdir(path.join(root, "evil-out", "charts")).catch(() => []);
  t.deepEqual(left, []);
  t.is(await readFile(path.join(root, "canary.txt"), "utf8"), CANARY);
});

test.serial(
  "an OCI chart whose tag moved to other bytes is exit 1 naming both manifest digests",
  async (t) => {
    const home = path.join(root, "helm");
    const lines = [
      "name: oci-only",
      "charts:",
      `  - oci: oci://${upstream.host}/charts/tool`,
      "    version: 0.3.0",
    ];
    await writeFile(path.join(root, "oci.yml"), lines.join("\n"));
    const first = await prepare("oci-out", "oci.yml");
    t.is(first.code, 0, first.stderr);
    await writeChart(path.join(root, "src", "tool"), { "values.yaml": "changed: true\n" });
    await helm(home, ["package", path.join(root, "src", "tool"), "-d", path.join(root, "oci2")]);
    const pushed = await helm(home, [
      "push",
      path.join(root, "oci2", "tool-0.3.0.tgz"),
      `oci://${upstream.host}/charts`,
      "--plain-http",
    ]);
    const moved = /Digest: (sha256:[a-f0-9]{64})/.exec(pushed)?.[1] ?? "none";
    t.not(moved, pushedDigest);
    const r = await prepare("oci-out", "oci.yml");
    t.is(r.code, 1, r.stderr);
    t.regex(
      r.stderr,
      new RegExp(
        `chart oci://${upstream.host}/charts/tool 0\\.3\\.0 from http://${upstream.host}/v2/charts/tool/manifests/0\\.3\\.0: manifest digest ${moved} differs from ${pushedDigest} \\(bundle\\.lock\\.json of an earlier prepare`,
      ),
    );
    t.is(
      await sha256(path.join(root, "oci-out", "charts", "tool-0.3.0.tgz")).catch(() => "absent"),
      "absent",
    );
  },
);

/** Every file under `dir`, recursively, with its bytes. */
async function allFiles(dir: string): Promise<{ file: string; bytes: Buffer }[]> {
  const out: { file: string; bytes: Buffer }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    out.push({ file, bytes: await readFile(file) });
  }
  return out;
}

test.serial(
  "a Helm repository behind a password: credentials as for images, to its own origin only",
  async (t) => {
    const auth = { username: "charts", password: "Pa55-for-the-charts-only" };
    // lib is redirected to the open repository, web's index entry names it: both another origin.
    const secure = await serveHelmRepo(path.join(root, "secure-repo"), {
      auth,
      redirects: { "/lib-0.1.0.tgz": `${repo.url}lib-0.1.0.tgz` },
    });
    t.teardown(() => secure.close());
    await cp(repo.dir, secure.dir, { recursive: true });
    const index = await readFile(path.join(secure.dir, "index.yaml"), "utf8");
    t.true(index.includes("- web-1.2.3.tgz"));
    await writeFile(
      path.join(secure.dir, "index.yaml"),
      index.replace("- web-1.2.3.tgz", `- ${repo.url}web-1.2.3.tgz`),
    );
    const host = new URL(secure.url).host;
    const charts = (name: string, version: string) => [
      `  - repo: ${secure.url}`,
      `    name: ${name}`,
      `    version: ${version}`,
    ];
    await writeFile(
      path.join(root, "secure.yml"),
      [
        "name: secure",
        "charts:",
        ...charts("web", "1.2.3"),
        ...charts("app", "2.0.0"),
        ...charts("lib", "0.1.0"),
      ].join("\n"),
    );
    const run = (env: Record<string, string>, args: string[] = [], input?: string) =>
      runCli(["prepare", "-f", "secure.yml", "-o", "secure-out", ...args], {
        cwd: root,
        env: { BUNDLE_CACHE_DIR: path.join(root, "cache"), ...env },
        ...(input !== undefined ? { input } : {}),
      });

    const none = await run({ DOCKER_CONFIG: path.join(root, "no-docker-config") });
    t.is(none.code, 1, none.stderr);
    t.regex(
      none.stderr,
      new RegExp(
        `${secure.url}index\\.yaml: the server answered 401; no credentials for ${host}; give them as for images: docker login ${host}`,
      ),
    );
    t.notRegex(none.stderr, /\n\s+at /, "no stack trace");

    const wrong = await run(
      { DOCKER_CONFIG: path.join(root, "no-docker-config") },
      ["--username", auth.username, "--password-stdin"],
      "not-the-password\n",
    );
    t.is(wrong.code, 1, wrong.stderr);
    t.regex(
      wrong.stderr,
      new RegExp(`${secure.url}index\\.yaml: the server answered 401; it refused user "charts"`),
    );
    t.false((wrong.stdout + wrong.stderr).includes("not-the-password"));
    await t.throwsAsync(stat(path.join(root, "secure-out", "bundle.lock.json")));

    const dockerConfig = path.join(root, "docker-config");
    await mkdir(dockerConfig, { recursive: true });
    const basic = Buffer.from(`${auth.username}:${auth.password}`).toString("base64");
    await writeFile(
      path.join(dockerConfig, "config.json"),
      JSON.stringify({ auths: { [host]: { auth: basic } } }),
    );
    const [securePast, openPast] = [secure.requests.length, repo.requests.length];
    const ok = await run({ DOCKER_CONFIG: dockerConfig });
    t.is(ok.code, 0, ok.stderr);

    const lock = await readLockOf("secure-out");
    for (const [name, file] of [
      ["web", "web-1.2.3.tgz"],
      ["app", "app-2.0.0.tgz"],
      ["lib", "lib-0.1.0.tgz"],
    ] as const)
      t.is(
        lock.charts.find((c) => c.name === name)?.origin?.sha256,
        await sha256(path.join(secure.dir, file)),
        name,
      );
    // Every request to the repository carried its credentials; none to the other origin did.
    t.deepEqual(secure.requests.slice(securePast).sort(), [
      "/app-2.0.0.tgz",
      "/index.yaml",
      "/lib-0.1.0.tgz",
    ]);
    t.deepEqual(
      secure.authorizations.slice(securePast),
      secure.requests.slice(securePast).map(() => `Basic ${basic}`),
    );
    // lib twice: the chart redirected here, and app's dependency, which names this repository.
    t.deepEqual(repo.requests.slice(openPast).sort(), [
      "/index.yaml",
      "/lib-0.1.0.tgz",
      "/lib-0.1.0.tgz",
      "/web-1.2.3.tgz",
    ]);
    t.deepEqual(
      repo.authorizations.slice(openPast),
      repo.requests.slice(openPast).map(() => undefined),
    );
    // The password is nowhere: not in the bundle's files (lock, archives, work folders), not in the output.
    const files = await allFiles(path.join(root, "secure-out"));
    t.true(files.some((f) => f.file.endsWith("bundle.lock.json")));
    for (const secret of [auth.password, basic])
      for (const { file, bytes } of files) t.false(bytes.includes(secret), `${secret} in ${file}`);
    for (const r of [none, wrong, ok]) t.false((r.stdout + r.stderr).includes(auth.password));
    t.is(await readFile(path.join(root, "canary.txt"), "utf8"), CANARY);
  },
);

test.serial("a password in a repository's URL is a lint error, not written anywhere", async (t) => {
  const lines = [
    "name: userinfo",
    "charts:",
    `  - repo: http://me:Secret-In-Url@127.0.0.1:9/`,
    "    name: web",
    "    version: 1.2.3",
  ];
  await writeFile(path.join(root, "userinfo.yml"), lines.join("\n"));
  const r = await runCli(["lint", "-f", "userinfo.yml"], { cwd: root });
  t.is(r.code, 2, r.stderr);
  t.regex(
    r.stderr,
    /userinfo\.yml:3:\d+ charts\[0\]\.repo: a user or password in a Helm repository's URL would be written to the lock/,
  );
  t.false((r.stdout + r.stderr).includes("Secret-In-Url"));
});

test.serial(
  "an oci:// reference to an image, not a chart, is exit 1 naming it; nothing is kept",
  async (t) => {
    await pushImage(upstream, "charts/notachart", "0.1.0", { kind: "single", layers: ["notachart"] });
    const ref = `oci://${upstream.host}/charts/notachart`;
    await writeFile(
      path.join(root, "image.yml"),
      ["name: image", "charts:", `  - oci: ${ref}`, "    version: 0.1.0"].join("\n"),
    );
    const r = await prepare("image-out", "image.yml");
    t.is(r.code, 1, r.stderr);
    t.regex(
      r.stderr,
      new RegExp(
        `${ref}:0\\.1\\.0 is not a Helm chart: its manifest has no application/vnd\\.cncf\\.helm\\.chart\\.content\\.v1\\.tar\\+gzip layer`,
      ),
    );
    t.false(/\n\s+at /.test(r.stderr), "no stack trace");
    t.is(await stat(path.join(root, "image-out", "bundle.lock.json")).catch(() => "absent"), "absent");
    t.is(await readFile(path.join(root, "canary.txt"), "utf8"), CANARY);
  },
);

test.serial(
  "--mirror applies to an oci:// chart's registry: the mirror first, the registry where it lacks the chart or its archive",
  async (t) => {
    const mirror = await startRegistry();
    t.teardown(() => mirror.stop());
    const dir = path.join(root, "mirror-oci");
    const onlyChart = await onePushedChart("only", "0.5.0", dir, [mirror]);
    const [packaged, digest] = [onlyChart.archive, onlyChart.digests[0]];
    // `half` is in both, but the mirror has lost its archive: the registry gives the whole chart.
    const half = (await onePushedChart("half", "0.1.0", dir, [upstream, mirror])).archive;
    const halfLayer = `sha256:${await sha256(half)}`;
    const deleted = await fetch(`${mirror.url}/v2/charts/half/blobs/${halfLayer}`, { method: "DELETE" });
    t.is(deleted.status, 202, "the mirror dropped half's archive");
    const lines = ["name: mirrored", "charts:"];
    for (const [name, version] of [
      ["only", "0.5.0"],
      ["tool", "0.3.0"],
      ["half", "0.1.0"],
    ])
      lines.push(`  - oci: oci://${upstream.host}/charts/${name}`, `    version: ${version}`);
    await writeFile(path.join(root, "mirror.yml"), lines.join("\n"));
    const run = (args: string[]) =>
      runCli(["prepare", "-f", "mirror.yml", "-o", "mirror-out", ...args], {
        cwd: root,
        env: { BUNDLE_CACHE_DIR: path.join(root, "cache") },
      });

    // Only the mirror has `only`: without --mirror the chart is not found at its registry.
    const without = await run([]);
    t.is(without.code, 1, without.stderr);
    t.regex(without.stderr, new RegExp(`oci://${upstream.host}/charts/only:0\\.5\\.0 not found`));

    const r = await run(["--mirror", `${upstream.host}=http://${mirror.host}`]);
    t.is(r.code, 0, r.stderr);
    t.regex(
      r.stderr,
      new RegExp(`✔ chart only 0\\.5\\.0 from http://${mirror.host}/v2/charts/only/blobs/sha256:`),
    );
    t.regex(
      r.stderr,
      new RegExp(`✔ chart tool 0\\.3\\.0 from http://${upstream.host}/v2/charts/tool/blobs/sha256:`),
    );
    t.regex(
      r.stderr,
      new RegExp(`✔ chart half 0\\.1\\.0 from http://${upstream.host}/v2/charts/half/blobs/${halfLayer}`),
    );
    t.is(await sha256(path.join(root, "mirror-out", "charts", "half-0.1.0.tgz")), await sha256(half));
    const lock = await readLockOf("mirror-out");
    const only = lock.charts.find((c) => c.name === "only");
    // The lock names the chart as the definition does: the mirror is where it was read, not what it is.
    t.deepEqual(only?.origin, {
      kind: "oci",
      ref: `oci://${upstream.host}/charts/only`,
      version: "0.5.0",
      digest,
      sha256: await sha256(packaged),
    });
    t.is(await sha256(path.join(root, "mirror-out", "charts", "only-0.5.0.tgz")), await sha256(packaged));
    t.is(await readFile(path.join(root, "canary.txt"), "utf8"), CANARY);
  },
);

test.serial(
  "subcharts of subcharts are fetched where helm looks for them, pinned; a cycle is exit 1 naming it",
  async (t) => {
    const nested = await serveHelmRepo(path.join(root, "nested-repo"));
    t.teardown(() => nested.close());
    const src = path.join(root, "nested-src");
    const dep = (name: string) => `  - name: ${name}\n    version: 1.0.0\n    repository: ${nested.url}\n`;
    // top needs mid, mid needs base; each archived without its subcharts. loop-a and loop-b need each other.
    const charts: Record<string, string> = {
      top: `dependencies:\n${dep("mid")}`,
      mid: `dependencies:\n${dep("base")}`,
      base: "",
      "loop-a": `dependencies:\n${dep("loop-b")}`,
      "loop-b": `dependencies:\n${dep("loop-a")}`,
    };
    // c0 → c1 → … → c9: nine levels of subcharts, one more than MAX_SUBCHART_DEPTH.
    for (let i = 0; i <= 9; i++) charts[`c${i}`] = i < 9 ? `dependencies:\n${dep(`c${i + 1}`)}` : "";
    for (const [name, deps] of Object.entries(charts)) {
      await writeChart(path.join(src, name), {
        "Chart.yaml": `apiVersion: v2\nname: ${name}\nversion: 1.0.0\n${deps}`,
      });
      await tar.c(
        { gzip: true, file: path.join(nested.dir, `${name}-1.0.0.tgz`), cwd: src, portable: true },
        [name],
      );
    }
    await helm(path.join(root, "helm"), ["repo", "index", nested.dir]);
    const def = (name: string) =>
      ["name: nested", "charts:", `  - repo: ${nested.url}`, `    name: ${name}`, "    version: 1.0.0"].join(
        "\n",
      );
    await writeFile(path.join(root, "nested.yml"), def("top"));
    const r = await prepare("nested-out", "nested.yml");
    t.is(r.code, 0, r.stderr);
    const sha = (name: string) => sha256(path.join(nested.dir, `${name}-1.0.0.tgz`));
    const lock = await readLockOf("nested-out");
    t.deepEqual(lock.charts[0]?.origin?.dependencies, [
      { name: "mid", version: "1.0.0", repository: nested.url, sha256: await sha("mid") },
      { name: "base", version: "1.0.0", repository: nested.url, sha256: await sha("base"), parent: "mid" },
    ]);
    // mid is unpacked to hold base, as helm loads a subchart's own charts/; base stays as fetched.
    const top = path.join(root, "nested-out", "charts", "top", "charts");
    t.deepEqual((await readdir(top)).sort(), ["mid"]);
    t.regex(await readFile(path.join(top, "mid", "Chart.yaml"), "utf8"), /name: mid/);
    t.is(await sha256(path.join(top, "mid", "charts", "base-1.0.0.tgz")), await sha("base"));
    // The real helm renders the chart with the whole tree in place.
    await helm(path.join(root, "helm"), ["template", "x", path.join(root, "nested-out", "charts", "top")]);
    const inspect = await runCli(["inspect", "nested-out"], { cwd: root });
    t.regex(inspect.stdout, /top +1\.0\.0 .* mid 1\.0\.0, mid\/base 1\.0\.0/);
    const again = await prepare("nested-out", "nested.yml");
    t.is(again.code, 0, again.stderr);
    t.deepEqual((await readLockOf("nested-out")).charts, lock.charts);

    await writeFile(path.join(root, "loop.yml"), def("loop-a"));
    const loop = await prepare("loop-out", "loop.yml");
    t.is(loop.code, 1, loop.stderr);
    t.regex(
      loop.stderr,
      /chart loop-a 1\.0\.0 → loop-b 1\.0\.0 → loop-a 1\.0\.0: the subcharts form a cycle/,
    );
    t.notRegex(loop.stderr, /\n\s+at /, "no stack trace");
    await t.throwsAsync(stat(path.join(root, "loop-out", "bundle.lock.json")));

    await writeFile(path.join(root, "deep.yml"), def("c0"));
    const deep = await prepare("deep-out", "deep.yml");
    t.is(deep.code, 1, deep.stderr);
    const chain = Array.from({ length: 10 }, (_, i) => `c${i} 1\\.0\\.0`).join(" → ");
    t.regex(deep.stderr, new RegExp(`chart ${chain}: subcharts nested more than 8 deep`));
  },
);

test.serial(
  "an overlay in an OCI chart's folder is pushed too: the folder is packaged, the same way twice",
  async (t) => {
    const served = (await onePushedChart("deco", "0.1.0", path.join(root, "deco-oci"), [upstream])).archive;
    const lines = [
      "name: overlaid",
      "charts:",
      `  - oci: oci://${upstream.host}/charts/deco`,
      "    version: 0.1.0",
      "templates:",
      "  - source: extra.yml",
      "    dest: charts/deco/templates/extra.yaml",
    ];
    await writeFile(path.join(root, "overlay.yml"), lines.join("\n"));
    await writeFile(
      path.join(root, "extra.yml"),
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n",
    );
    const r = await prepare("overlay-out", "overlay.yml");
    t.is(r.code, 0, r.stderr);
    t.regex(
      r.stderr,
      /chart deco 0\.1\.0: charts\/deco\/ is not the archive it came as \(templates\/extra\.yaml added\)/,
    );
    const deco = (await readLockOf("overlay-out")).charts[0];
    t.is(deco?.origin?.sha256, await sha256(served));
    t.not(deco?.archive?.sha256, await sha256(served));
    const packed: string[] = [];
    const file = path.join(root, "overlay-out", "charts", "deco-0.1.0.tgz");
    await tar.t({ file, onReadEntry: (e) => packed.push(e.path) });
    t.deepEqual(packed, ["deco/Chart.yaml", "deco/templates/cm.yaml", "deco/templates/extra.yaml"]);
    const again = await prepare("overlay-out", "overlay.yml");
    t.is(again.code, 0, again.stderr);
    t.deepEqual((await readLockOf("overlay-out")).charts, [deco]);
  },
);
