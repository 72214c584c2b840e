/**
 * Charts to the site registry (issue 13): prepare packages a local and a git chart into Helm
 * archives, the same bytes on every run; upload pushes each as a Helm OCI artifact to a real
 * Distribution registry, and the real `helm pull oci://…` gets the bundle's archive byte for
 * byte, which the real `helm template` renders. A second upload sends no blob; a changed
 * archive stops the upload naming it, with nothing pushed.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { runCli, tempFiles } from "./helpers/cli.js";
import { flipByte, sha256File } from "./helpers/bundles.js";
import { makeGitRepo, type TestGitRepo } from "./helpers/git.js";
import { HELM } from "./helpers/helm.js";
import { startRegistry, type TestRegistry } from "./helpers/registry.js";
import { startFaultProxy, type FaultProxy } from "./helpers/faultProxy.js";
import type { Lock } from "../src/bundle/lock.js";
import { startFileServer, type FileServer } from "../src/fileserver/server.js";

const run = promisify(execFile);

const CHART_YAML = [
  "apiVersion: v2",
  "name: web",
  "version: 1.2.3+build.7",
  "description: A small web chart",
  'appVersion: "2.0"',
  "maintainers:",
  "  - name: Ann",
  "    email: ann@example.org",
  "",
].join("\n");

const TEMPLATE = [
  "apiVersion: v1",
  "kind: ConfigMap",
  "metadata:",
  "  name: {{ .Release.Name }}-web",
  "data:",
  '  greeting: "{{ .Values.greeting }}"',
  "",
].join("\n");

let repo: TestGitRepo;
let root: string;
let registry: TestRegistry;
let proxy: FaultProxy;
let files: FileServer;
const cleanups: (() => Promise<void>)[] = [];

test.before(async () => {
  repo = await makeGitRepo({ chart: "demo" });
  const tmp = await tempFiles({
    "bundle.yml": [
      "name: charts",
      "charts:",
      "  - name: web",
      "    path: web",
      "  - name: broken",
      "    path: broken",
      "git:",
      `  - url: ${repo.url}`,
      `    commit: ${repo.commits.at(-1)}`,
      "    chart: helm/demo",
    ].join("\n"),
    "web/Chart.yaml": CHART_YAML,
    "web/values.yaml": "greeting: hello\n",
    "web/templates/cm.yaml": TEMPLATE,
    "broken/Chart.yaml": "apiVersion: v2\nname: broken\nversion: not-a-version\n",
    "broken/values.yaml": "{}\n",
    "canary.txt": "outside every bundle\n",
    token: "tok\n",
  });
  cleanups.push(tmp.cleanup);
  root = path.dirname(tmp.dir);
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.url);
  // The git item's archive is a file of the bundle: upload sends it to a file server.
  files = await startFileServer({
    root: path.join(root, "served"),
    host: "127.0.0.1",
    port: 0,
    token: "tok",
    log: () => undefined,
  });
});

/** `bundle upload` of `where` to `reg`, the git archive to the test's file server. */
const upload = (where: string, reg: string, json = true) =>
  runCli([
    ...(json ? ["--json"] : []),
    "upload",
    where,
    "--registry",
    reg,
    "--fileserver",
    files.url,
    "--token-file",
    path.join(root, "def", "token"),
  ]);

test.after.always(async () => {
  await files?.close();
  await proxy?.stop();
  await registry?.stop();
  for (const c of cleanups) await c();
  await repo?.cleanup();
});

const defFile = () => path.join(root, "def", "bundle.yml");

async function prepare(out: string) {
  const r = await runCli(["--json", "prepare", "-f", defFile(), "-o", path.join(root, out)]);
  return { ...r, lock: JSON.parse(await readFile(path.join(root, out, "bundle.lock.json"), "utf8")) as Lock };
}

/** Helm with every folder it writes in the test's own. */
function helm(args: string[]) {
  const home = path.join(root, "helm-home");
  return run(HELM, args, {
    env: {
      ...process.env,
      HELM_CONFIG_HOME: path.join(home, "config"),
      HELM_CACHE_HOME: path.join(home, "cache"),
      HELM_DATA_HOME: path.join(home, "data"),
      HELM_REGISTRY_CONFIG: path.join(home, "registry.json"),
    },
  });
}

/** Requests that write a blob: upload starts (POST), chunks (PATCH) and ends (PUT) under /blobs/. */
const blobWrites = (p: FaultProxy) =>
  p.requests.filter((r) => r.method !== "GET" && r.method !== "HEAD" && /\/blobs\//.test(r.path)).length;

test.serial("prepare packages the charts the same way twice, and upload pushes them for helm", async (t) => {
  const first = await prepare("b1");
  t.is(first.code, 0, first.stderr);
  const second = await prepare("b2");
  t.is(second.code, 0, second.stderr);

  const web = first.lock.charts.find((c) => c.name === "web");
  const demo = first.lock.charts.find((c) => c.name === "demo");
  t.is(web?.version, "1.2.3+build.7");
  t.is(web?.archive?.path, "charts/web-1.2.3+build.7.tgz");
  t.is(web?.mirror, "teleinfra/charts/web:1.2.3_build.7");
  t.is(demo?.archive?.path, "charts/demo-0.1.0.tgz");
  t.is(demo?.mirror, "teleinfra/charts/demo:0.1.0");
  // Two prepares, the same bytes: the lock's digest, and the files themselves.
  t.deepEqual(
    second.lock.charts.map((c) => c.archive),
    first.lock.charts.map((c) => c.archive),
  );
  for (const c of [web, demo]) {
    const rel = c?.archive?.path ?? "";
    const a = await readFile(path.join(root, "b1", rel));
    t.deepEqual(await readFile(path.join(root, "b2", rel)), a);
    t.is(a.length as number | undefined, c?.archive?.size);
    t.is((await sha256File(path.join(root, "b1", rel))) as string | undefined, c?.archive?.sha256);
  }
  // helm package's layout: every entry under <name>/, owner 0, the fixed time, the lock's modes.
  const { stdout: listing } = await run("tar", ["-tvzf", path.join(root, "b1", web?.archive?.path ?? "")]);
  t.deepEqual(
    listing
      .trim()
      .split("\n")
      .map((l) => l.split(/\s+/).slice(1, 2).concat(l.split(/\s+/).slice(-1))),
    [
      ["0/0", "web/Chart.yaml"],
      ["0/0", "web/templates/cm.yaml"],
      ["0/0", "web/values.yaml"],
    ],
  );
  // The chart without a valid version: a warning naming it, no archive.
  t.regex(
    first.stderr,
    /chart broken: charts\/broken\/Chart\.yaml: its version "not-a-version" is not a SemVer/,
  );
  const broken = first.lock.charts.find((c) => c.name === "broken");
  t.is(broken?.archive, undefined);
  t.is(broken?.mirror, undefined);
  t.deepEqual((await readdir(path.join(root, "b1", "charts"))).sort(), [
    "broken",
    "demo",
    "demo-0.1.0.tgz",
    "web",
    "web-1.2.3+build.7.tgz",
  ]);

  const verify = await runCli(["verify", path.join(root, "b1")]);
  t.is(verify.code, 0, verify.stdout + verify.stderr);
  t.regex(verify.stdout, /bundle ok/);

  const inspect = await runCli(["inspect", path.join(root, "b1")]);
  t.is(inspect.code, 0, inspect.stderr);
  t.regex(
    inspect.stdout,
    /web\s+1\.2\.3\+build\.7\s+charts\/web-1\.2\.3\+build\.7\.tgz\s+teleinfra\/charts\/web:1\.2\.3_build\.7/,
  );

  const up = await upload(path.join(root, "b1"), proxy.host);
  t.is(up.code, 0, up.stderr);
  const result = JSON.parse(up.stdout) as { charts: { name: string; mirror: string; digest: string }[] };
  t.deepEqual(result.charts.map((c) => [c.name, c.mirror]).sort(), [
    ["demo", `${proxy.host}/teleinfra/charts/demo:0.1.0`],
    ["web", `${proxy.host}/teleinfra/charts/web:1.2.3_build.7`],
  ]);
  t.true(blobWrites(proxy) > 0);

  // The real helm pulls each chart: the bundle's archive, byte for byte; and renders it.
  for (const [name, version, file] of [
    ["web", "1.2.3+build.7", web?.archive?.path],
    ["demo", "0.1.0", demo?.archive?.path],
  ] as const) {
    const dest = path.join(root, "pulled", name);
    await mkdir(dest, { recursive: true });
    await helm([
      "pull",
      `oci://${registry.host}/teleinfra/charts/${name}`,
      "--version",
      version,
      "--plain-http",
      "-d",
      dest,
    ]);
    const [pulled] = await readdir(dest);
    t.is(pulled, `${name}-${version}.tgz`);
    t.deepEqual(
      await readFile(path.join(dest, pulled ?? "")),
      await readFile(path.join(root, "b1", file ?? "")),
    );
  }
  const rendered = await helm([
    "template",
    "site",
    path.join(root, "pulled", "web", "web-1.2.3+build.7.tgz"),
  ]);
  t.regex(rendered.stdout, /name: site-web\n[\s\S]*greeting: "hello"/);

  // Again, from a one-file archive of the same bundle: nothing to send, not one blob.
  const packed = path.join(root, "b1.tar");
  const pack = await runCli(["pack", path.join(root, "b1"), packed]);
  t.is(pack.code, 0, pack.stderr);
  const before = proxy.requests.length;
  const again = await upload(packed, proxy.host);
  t.is(again.code, 0, again.stderr);
  const secondResult = JSON.parse(again.stdout) as { charts: { digest: string }[]; bytesMoved: number };
  t.deepEqual(
    secondResult.charts.map((c) => c.digest),
    result.charts.map((c) => c.digest),
  );
  t.is(secondResult.bytesMoved, 0);
  const later = proxy.requests.slice(before);
  t.is(later.filter((r) => /\/blobs\//.test(r.path)).length, 0, JSON.stringify(later.map((r) => r.path)));

  // An update bundle carries the charts whole: its upload finds them there too.
  const since = await runCli([
    "prepare",
    "-f",
    defFile(),
    "-o",
    path.join(root, "upd"),
    "--since",
    path.join(root, "b1"),
  ]);
  t.is(since.code, 0, since.stderr);
  const start = proxy.requests.length;
  const upd = await upload(path.join(root, "upd"), proxy.host);
  t.is(upd.code, 0, upd.stderr);
  t.deepEqual(
    (JSON.parse(upd.stdout) as { charts: { digest: string }[] }).charts.map((c) => c.digest),
    result.charts.map((c) => c.digest),
  );
  t.is(proxy.requests.slice(start).filter((r) => /\/blobs\//.test(r.path)).length, 0);

  // diff names a chart whose version and archive changed, from the locks alone.
  const changed = JSON.parse(await readFile(path.join(root, "b1", "bundle.lock.json"), "utf8")) as Lock;
  const edited = changed.charts.find((c) => c.name === "web");
  Object.assign(edited ?? {}, { version: "1.2.4", archive: { ...edited?.archive, sha256: "a".repeat(64) } });
  await writeFile(path.join(root, "edited.lock.json"), JSON.stringify(changed));
  const diff = await runCli([
    "diff",
    path.join(root, "b1", "bundle.lock.json"),
    path.join(root, "edited.lock.json"),
  ]);
  t.is(diff.code, 1, diff.stderr);
  t.regex(
    diff.stdout,
    /changed {2}web {2}version 1\.2\.3\+build\.7 → 1\.2\.4 {2}archive [0-9a-f]{12} → aaaaaaaaaaaa/,
  );

  // A lock whose archive path points into a chart folder is refused, naming the field.
  Object.assign(edited ?? {}, { archive: { ...edited?.archive, path: "charts/web/values.yaml" } });
  await writeFile(path.join(root, "hostile.lock.json"), JSON.stringify(changed));
  const hostile = await runCli([
    "diff",
    path.join(root, "b1", "bundle.lock.json"),
    path.join(root, "hostile.lock.json"),
  ]);
  t.is(hostile.code, 2, hostile.stdout);
  t.regex(
    hostile.stderr,
    /hostile\.lock\.json: charts\[\d\]\.archive\.path: expected charts\/<file>\.tgz, got "charts\/web\/values\.yaml"/,
  );

  t.is(await readFile(path.join(root, "def", "canary.txt"), "utf8"), "outside every bundle\n");
});

test("a malformed Chart.yaml of a local chart stops prepare at its line, before anything is written", async (t) => {
  const canary = "outside the bundle\n";
  const { dir, cleanup } = await tempFiles(
    {
      "bundle.yml": "name: malformed\ncharts:\n  - name: web\n    path: web\n",
      "web/Chart.yaml":
        "apiVersion: v2\nname: web\nversion: 1.0.0\ndependencies:\n  - version: 1.0.0\n    repository: https://charts.example.org\n",
      "web/values.yaml": "{}\n",
      "canary.txt": canary,
    },
    "malformed",
  );
  t.teardown(cleanup);
  const r = await runCli(["prepare", "-o", "out"], { cwd: dir });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /^error: web\/Chart\.yaml:5:5 dependencies\[0\]: missing required key "name"$/m);
  t.notRegex(r.stderr, /\n\s+at /); // no stack trace
  await t.throwsAsync(stat(path.join(dir, "out")), { code: "ENOENT" });
  t.is(await readFile(path.join(dir, "canary.txt"), "utf8"), canary);
});

test("upload --help and inspect --help say where charts go", async (t) => {
  const up = await runCli(["upload", "--help"]);
  t.is(up.code, 0, up.stderr);
  t.regex(up.stdout, /charts\s+\(Helm\s+OCI\s+artifacts,\s+REG\/<prefix>\/charts\/<name>:<version>\)/);
  t.regex(up.stdout, /helm pull oci:\/\/10\.0\.0\.5:5000\/teleinfra\/charts\/openwhisk --version/);
  const inspect = await runCli(["inspect", "--help"]);
  t.regex(inspect.stdout, /charts\s+\(version,\s+archive,\s+where\s+upload\s+pushes\s+it\)/);
});

test.serial("a changed chart archive stops upload naming it, and nothing is pushed", async (t) => {
  const p = await prepare("bad");
  t.is(p.code, 0, p.stderr);
  const web = p.lock.charts.find((c) => c.name === "web");
  const file = path.join(root, "bad", web?.archive?.path ?? "");
  await flipByte(file, 40);

  const verify = await runCli(["verify", path.join(root, "bad")]);
  t.is(verify.code, 1);
  t.regex(verify.stdout, /mismatch: charts\/web-1\.2\.3\+build\.7\.tgz/);

  const fresh = await startRegistry();
  t.teardown(() => fresh.stop());
  const watch = await startFaultProxy(fresh.url);
  t.teardown(() => watch.stop());
  const up = await upload(path.join(root, "bad"), watch.host, false);
  t.is(up.code, 1, up.stderr);
  t.true(up.stderr.includes(`${file}:`), up.stderr);
  t.regex(up.stderr, /changed after prepare/);
  t.notRegex(up.stderr, /\n\s+at /); // no stack trace
  t.is(blobWrites(watch), 0);
  t.is(watch.requests.filter((r) => r.method === "PUT").length, 0);
});
