/**
 * The repository's own OpenWhisk definition (bundle.yml, templates/): it lints, every template
 * renders with a site's values bound, and what the templates render is what the chart and
 * OpenWhisk need: quoted limits, every image on the site's registry under a mirror name the
 * bundle carries, runtime images that resolve to the site's registry, init scripts that fetch
 * from the file server (and check what they fetch), and Helm overlays that come out as Helm text.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import os from "node:os";
import path from "node:path";
import { Ajv } from "ajv";
import * as tar from "tar";
import { parse as parseYaml } from "yaml";
import { loadDefinition } from "../src/config/load.js";
import { formatMirror } from "../src/config/mirror.js";
import { destPath, type Definition, type TemplateItem, type Values } from "../src/config/model.js";
import { startFileServer } from "../src/fileserver/server.js";
import { renderTemplate } from "../src/templates/render.js";
import { REPO, runCli } from "./helpers/cli.js";

const SITE = {
  IMG_REPO: "10.0.0.5:5000",
  MAIN_NODE_IP: "10.0.0.5",
  FILESERVER_URL: "http://10.0.0.5:8003/openwhisk",
};
const DEFINITION = path.join(REPO, "bundle.yml");
const CHART = "charts/openwhisk";

type Json = Record<string, unknown>;

let cached: Promise<{ def: Definition; values: Values; mirrors: Set<string> }> | undefined;
function definition() {
  cached ??= loadDefinition(DEFINITION).then((def) => ({
    def,
    values: { ...def.values, ...SITE },
    mirrors: new Set(def.images.map((i) => formatMirror(i.mirror))),
  }));
  return cached;
}

function template(def: Definition, dest: string): TemplateItem {
  const t = def.templates.find((x) => destPath(x.dest) === dest);
  if (!t) throw new Error(`bundle.yml has no template for ${dest}`);
  return t;
}

async function rendered(dest: string): Promise<string> {
  const { def, values } = await definition();
  return renderTemplate(template(def, dest), values);
}

function get(obj: unknown, dotted: string): unknown {
  return dotted
    .split(".")
    .reduce<unknown>((o, k) => (o && typeof o === "object" ? (o as Json)[k] : undefined), obj);
}

function bash(script: string, args: string[] = []): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile("bash", ["-c", script, "bash", ...args], (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, out: stdout + stderr });
    });
  });
}

test("bundle lint accepts bundle.yml: every image parses, no two share a mirror name", async (t) => {
  const r = await runCli(["lint", "-f", "bundle.yml", "--json"]);
  t.is(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { images: { ref: string; mirror: string }[]; templates: string[] };
  const mirrors = summary.images.map((i) => i.mirror);
  t.is(new Set(mirrors).size, mirrors.length);
  t.true(summary.images.length >= 36, `only ${summary.images.length} images`);
  t.true(mirrors.every((m) => m.startsWith("teleinfra/")));
  t.true(summary.templates.includes(`${CHART}/configMapFiles/initCouchDB/initdb.sh`));
});

test("every template renders with the site values bound, and leaves no Handlebars behind", async (t) => {
  const { def, values } = await definition();
  t.true(def.templates.length >= 7);
  for (const tpl of def.templates) {
    const out = renderTemplate(tpl, values);
    const dest = destPath(tpl.dest);
    t.true(out.length > 0, dest);
    // Helm overlays keep Helm's braces; nothing else has any left.
    if (!dest.startsWith(`${CHART}/templates/`)) t.false(out.includes("{{"), dest);
    t.false(out.includes("\\{{"), dest);
  }
  // Without the site values, rendering fails: the templates really use them.
  t.throws(() => renderTemplate(template(def, "files/override-values.yml"), def.values), {
    message: /IMG_REPO/,
  });
});

test("override values: quoted limits, registry name, scheduler with Elasticsearch, dashboards on the file server", async (t) => {
  const { def } = await definition();
  const text = await rendered("files/override-values.yml");
  const v = parseYaml(text) as Json;
  t.regex(text, /^ {4}actionsInvokesPerminute: "100000"$/m);
  t.regex(text, /^ {4}actionsInvokesConcurrent: "100000"$/m);
  t.is(get(v, "whisk.limits.actionsInvokesPerminute"), "100000");
  t.is(get(v, "whisk.limits.actionsInvokesConcurrent"), "100000");
  t.regex(text, /^ {4}name: "10\.0\.0\.5:5000\/"$/m);
  t.is(get(v, "docker.registry.name"), "10.0.0.5:5000/");
  t.is(get(v, "whisk.ingress.apiHostName"), def.values.ingress_ip);
  t.is(get(v, "whisk.ingress.type"), "NodePort");
  t.is(get(v, "scheduler.enabled"), true);
  t.is(get(v, "activationStoreBackend"), "ElasticSearch");
  t.is(get(v, "elasticsearch.esMajorVersionValue"), "6");
  t.is(get(v, "invoker.containerFactory.impl"), "kubernetes");
  t.is(get(v, "metrics.prometheusEnabled"), true);
  t.is(get(v, "whisk.versions.openwhisk.gitTag"), def.values.openwhisk_commit);
  const openwhisk = def.git.find((g) => g.archive === "openwhisk.tar.gz");
  t.deepEqual(openwhisk?.revision, { kind: "commit", commit: def.values.openwhisk_commit });

  const served = new Set(def.files.map((f) => `${SITE.FILESERVER_URL}/${f.path}`));
  const dashboards = get(v, "grafana.dashboards") as string[];
  t.is(dashboards.length, 3);
  for (const url of dashboards) t.true(served.has(url), `${url} is not a file of the bundle`);
});

test("override values: every component's image is an image of the bundle, on the site's registry", async (t) => {
  const { mirrors } = await definition();
  const v = parseYaml(await rendered("files/override-values.yml")) as Json;
  const registry = get(v, "docker.registry.name") as string;
  const components = [
    "utility",
    "zookeeper",
    "kafka",
    "db",
    "nginx",
    "controller",
    "scheduler",
    "etcd",
    "invoker",
    "apigw",
    "redis",
    "user_events",
    "prometheus",
    "grafana",
    "providers.alarm",
    "providers.kafka",
    "busybox",
  ];
  const used = new Set<string>();
  for (const c of components) {
    const name = get(v, `${c}.imageName`);
    const tag = get(v, `${c}.imageTag`);
    t.is(typeof name, "string", `${c}.imageName`);
    t.is(typeof tag, "string", `${c}.imageTag must be a string (3.4 and 4.0 are floats in YAML)`);
    const image = `${registry}${String(name)}:${String(tag)}`;
    t.true(image.startsWith(`${SITE.IMG_REPO}/teleinfra/`), image);
    t.true(mirrors.has(image.slice(registry.length)), `${c}: ${image} is not carried by the bundle`);
    used.add(image.slice(registry.length));
  }
  // Elasticsearch's image goes without docker.registry.name; the Grafana downloader through it.
  const es = `${String(get(v, "elasticsearch.image"))}:${String(get(v, "elasticsearch.imageTag"))}`;
  t.true(es.startsWith(`${SITE.IMG_REPO}/teleinfra/`), es);
  t.true(mirrors.has(es.slice(SITE.IMG_REPO.length + 1)), es);
  used.add(es.slice(SITE.IMG_REPO.length + 1));
  const curl = `${String(get(v, "grafana.downloaderImageName"))}:${String(get(v, "grafana.downloaderImageTag"))}`;
  t.true(mirrors.has(curl), curl);
  used.add(curl);

  // And the runtimes: together they use every image the bundle carries, nothing more.
  const manifest = JSON.parse(await rendered(`${CHART}/runtimes.json`)) as Json;
  for (const image of runtimeImages(manifest))
    used.add(resolveImageName(image, registry).slice(registry.length));
  t.deepEqual(
    [...mirrors].filter((m) => !used.has(m)),
    [],
    "images carried but used by nothing",
  );
});

interface ImageName {
  registry?: string;
  prefix?: string;
  name: string;
  tag?: string;
}

function runtimeImages(manifest: Json): ImageName[] {
  const families = manifest.runtimes as Record<string, { image: ImageName }[]>;
  return [
    ...Object.values(families).flatMap((f) => f.map((r) => r.image)),
    ...(manifest.blackboxes as ImageName[]),
  ];
}

/** OpenWhisk's ExecManifest.ImageName.resolveImageName, with the chart's runtimesRegistry.url. */
function resolveImageName(i: ImageName, systemRegistry: string): string {
  const reg = i.registry ?? systemRegistry;
  const r = reg ? (reg.endsWith("/") ? reg : `${reg}/`) : "";
  const p = i.prefix ? `${i.prefix}/` : "";
  const t = i.tag ? `:${i.tag}` : "";
  return r + p + i.name + t;
}

test("runtimes.json: the chart's schema, every runtime image on the site's registry", async (t) => {
  const { mirrors } = await definition();
  const manifest = JSON.parse(await rendered(`${CHART}/runtimes.json`)) as Json;
  const families = manifest.runtimes as Record<string, Json[]>;
  t.true(Object.keys(families).length >= 10);
  for (const [family, kinds] of Object.entries(families)) {
    // OpenWhisk refuses a family with several kinds and no single default.
    t.is(kinds.filter((k) => k.default === true).length, 1, family);
    for (const k of kinds) {
      t.regex(String(k.kind), new RegExp(`^${family}:`));
      t.is(typeof (k.attached as Json | undefined)?.attachmentName, "string", String(k.kind));
    }
  }
  const images = runtimeImages(manifest);
  t.is(new Set(images.map((i) => `${i.name}:${i.tag ?? ""}`)).size, 17);
  // The invoker prepends docker.registry.name unless an image names its registry: each does,
  // so the kubelet pulls REG/teleinfra/<name>:<tag>, never REG/REG/… nor Docker Hub.
  for (const registry of [`${SITE.IMG_REPO}/`, ""]) {
    for (const image of images) {
      t.is(image.registry, SITE.IMG_REPO, image.name);
      t.is(image.prefix, "teleinfra", image.name);
      const resolved = resolveImageName(image, registry);
      t.is(resolved, `${SITE.IMG_REPO}/teleinfra/${image.name}:${image.tag ?? ""}`);
      t.true(
        mirrors.has(resolved.slice(SITE.IMG_REPO.length + 1)),
        `${resolved} is not carried by the bundle`,
      );
    }
  }
  const nodejs = families.nodejs?.find((k) => k.kind === "nodejs:14");
  t.is(get(nodejs, "stemCells.0.initialCount"), 2);
});

test("values.schema.json: quoted limits pass, the known-bad settings do not", async (t) => {
  const schema = JSON.parse(await rendered(`${CHART}/values.schema.json`)) as Json;
  const validate = new Ajv({ strict: false, allErrors: true }).compile(schema);
  const overrides = parseYaml(await rendered("files/override-values.yml")) as Json;
  const values = merge(chartDefaults(), overrides);
  t.true(validate(values), JSON.stringify(validate.errors));

  const bad = (patch: Json) => validate(merge(structuredClone(values), patch));
  t.false(bad({ whisk: { limits: { actionsInvokesPerminute: "1e+06" } } }), "a float printed by Helm");
  t.false(bad({ activationStoreBackend: "CouchDB" }), "the scheduler with CouchDB");
  t.false(bad({ docker: { registry: { name: "10.0.0.5:5000" } } }), "a registry name without /");
  t.false(
    bad({ elasticsearch: { esMajorVersionValue: "" } }),
    "a mirrored Elasticsearch without its version",
  );
  t.true(bad({ whisk: { limits: { actionsInvokesPerminute: 60 } } }), "a plain number");
});

/** What the chart's values.yaml gives the fields the schema requires (only those). */
function chartDefaults(): Json {
  const pod = { imagePullPolicy: "IfNotPresent", replicaCount: 1, restartPolicy: "Always" };
  return {
    whisk: {
      ingress: { apiHostName: "", apiHostPort: 31001, apiHostProto: "https", type: "NodePort" },
      auth: { system: "s", guest: "g" },
      systemNameSpace: "/whisk.system",
      limits: { triggersFiresPerminute: 60, actionsSequenceMaxlength: 50 },
      versions: { openwhisk: { gitTag: "a1639f0e4d7270c9a230190ac26acb61413b6bbb" } },
    },
    docker: { registry: { name: "", username: "", password: "" } },
    activationStoreBackend: "CouchDB",
    ...Object.fromEntries(
      ["zookeeper", "kafka", "db", "etcd", "redis"].map((c) => [c, { ...pod, external: false, port: 1 }]),
    ),
    db: { ...pod, external: false, wipeAndInit: true },
    ...Object.fromEntries(
      ["nginx", "controller", "apigw", "user_events", "prometheus", "grafana"].map((c) => [c, pod]),
    ),
    scheduler: { ...pod, enabled: false },
    invoker: { imagePullPolicy: "IfNotPresent", port: 8080 },
    providers: { alarm: pod, kafka: pod },
    elasticsearch: {
      external: false,
      image: "docker.elastic.co/elasticsearch/elasticsearch",
      imageTag: "6.7.2",
    },
  };
}

function merge(base: Json, patch: Json): Json {
  for (const [k, v] of Object.entries(patch)) {
    const b = base[k];
    base[k] =
      v && typeof v === "object" && !Array.isArray(v) && b && typeof b === "object" && !Array.isArray(b)
        ? merge(b as Json, v as Json)
        : v;
  }
  return base;
}

for (const [script, dest] of [
  ["initdb.sh", `${CHART}/configMapFiles/initCouchDB/initdb.sh`],
  ["install-packages myTask.sh", `${CHART}/configMapFiles/installPackages/myTask.sh`],
] as const) {
  test(`${script}: no GitHub, no git clone; fetches from the file server; valid bash`, async (t) => {
    const text = await rendered(dest);
    t.false(/github\.com/i.test(text), "names GitHub");
    t.false(/git (clone|checkout)/.test(text), "runs git");
    t.true(text.includes(`BUNDLE_FILESERVER_URL="${SITE.FILESERVER_URL}"`));
    t.regex(text, /^bundle_fetch openwhisk$/m);
    t.regex(text, /url="\$BUNDLE_FILESERVER_URL\/\$(name\.tar\.gz|file)"/);
    const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-ow-"));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    await writeFile(path.join(dir, "script.sh"), text);
    const syntax = await bash('bash -n "$1"', [path.join(dir, "script.sh")]);
    t.is(syntax.code, 0, syntax.out);
  });
}

test("install-packages: the catalog and provider packages come from the file server; npm_registry is a fallback, npm offline without it", async (t) => {
  const { def, values } = await definition();
  const text = await rendered(`${CHART}/configMapFiles/installPackages/myTask.sh`);
  for (const name of ["openwhisk-catalog", "openwhisk-package-alarms", "openwhisk-package-kafka"]) {
    t.regex(text, new RegExp(`^\\s*bundle_fetch ${name}$`, "m"));
    t.true(
      def.git.some((g) => g.archive === `${name}.tar.gz`),
      `${name}.tar.gz is not an archive of the bundle`,
    );
  }
  // No registry: npm stays offline, with everything it needs unpacked (next test).
  t.regex(text, /^export npm_config_offline=true$/m);
  t.false(text.includes("npm_config_registry="));
  const withRegistry = renderTemplate(template(def, `${CHART}/configMapFiles/installPackages/myTask.sh`), {
    ...values,
    npm_registry: "http://10.0.0.5:4873/",
  });
  t.regex(withRegistry, /^export npm_config_registry="http:\/\/10\.0\.0\.5:4873\/"$/m);
  t.false(withRegistry.includes("npm_config_offline"));
});

test("install-packages: every npm item of bundle.yml is unpacked into its tree after that tree is fetched, before the upstream scripts run", async (t) => {
  const { def } = await definition();
  const text = await rendered(`${CHART}/configMapFiles/installPackages/myTask.sh`);
  const lines = text.split("\n");
  const unpacks = lines
    .map((l, i) => ({ i, m: /^\s*bundle_unpack (\S+) (\S+)$/.exec(l) }))
    .filter((x) => x.m)
    .map(({ i, m }) => ({ line: i, file: m?.[1] ?? "", into: m?.[2] ?? "" }));
  t.deepEqual(
    unpacks.map((u) => u.file).sort(),
    def.npm.map((n) => n.path).sort(),
    "each npm item's archive is unpacked once, and nothing else",
  );
  t.true(
    def.npm.some(
      (n) =>
        n.path === "routemgmt-node_modules.tar.gz" &&
        n.dirs.map((d) => d.dir).includes("core/routemgmt/getApi"),
    ),
  );
  for (const u of unpacks) {
    const item = def.npm.find((n) => n.path === u.file);
    const tree = item?.git.replace(/\.tar\.gz$/, "") ?? "";
    t.is(u.into, `/${tree}`, `${u.file} goes into the tree of ${item?.git}`);
    const fetched = lines.findIndex((l) => new RegExp(`^\\s*bundle_fetch ${tree}$`).test(l));
    t.true(fetched >= 0 && fetched < u.line, `${u.file} is unpacked after ${tree} is fetched`);
    const runs = lines.findIndex(
      (l, i) => i > u.line && /installRouteMgmt|installCatalogUsingWskdeploy|installCatalog\.sh/.test(l),
    );
    t.true(runs > u.line, `${u.file} is unpacked before the upstream script runs`);
  }
  t.regex(text, /^export npm_config_update_notifier=false$/m);
});

// The rendered install-packages script's download functions, unpacking an npm archive into a tree.
test("install-packages' bundle_unpack: downloads an npm archive, checks its sha256 and unpacks it beside the tree's files", async (t) => {
  const text = await rendered(`${CHART}/configMapFiles/installPackages/myTask.sh`);
  const root = await mkdtemp(path.join(os.tmpdir(), "bundle-ow-unpack-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const src = path.join(root, "src");
  await mkdir(path.join(src, "core", "routemgmt", "getApi", "node_modules", "lodash"), { recursive: true });
  await writeFile(
    path.join(src, "core", "routemgmt", "getApi", "node_modules", "lodash", "index.js"),
    "lodash\n",
  );
  await writeFile(path.join(src, "core", "routemgmt", "getApi", "package-lock.json"), "{}\n");
  await mkdir(path.join(root, "served", "openwhisk"), { recursive: true });
  await tar.c(
    {
      gzip: true,
      cwd: src,
      file: path.join(root, "served", "openwhisk", "routemgmt-node_modules.tar.gz"),
      portable: true,
    },
    ["core"],
  );
  const tree = path.join(root, "openwhisk");
  await mkdir(path.join(tree, "core", "routemgmt", "getApi"), { recursive: true });
  await writeFile(path.join(tree, "core", "routemgmt", "getApi", "package.json"), "{}\n");
  const server = await serveFiles(t, path.join(root, "served"));

  const fns = ["bundle_download", "bundle_unpack"].map((name) => {
    const fn = new RegExp(`^${name}\\(\\) \\{\\n[\\s\\S]*?^\\}$`, "m").exec(text)?.[0];
    if (!fn) throw new Error(`no ${name} function in the script`);
    return fn;
  });
  const script = `set -e\nBUNDLE_FILESERVER_URL="${server.url}/openwhisk"\n${fns.join("\n")}\nbundle_unpack routemgmt-node_modules.tar.gz "$1"\n`;
  const r = await bash(script, [tree]);
  t.is(r.code, 0, r.out);
  t.regex(r.out, /routemgmt-node_modules\.tar\.gz: OK/, "the sha256 was checked");
  const getApi = path.join(tree, "core", "routemgmt", "getApi");
  t.is(await readFile(path.join(getApi, "node_modules", "lodash", "index.js"), "utf8"), "lodash\n");
  t.is(await readFile(path.join(getApi, "package-lock.json"), "utf8"), "{}\n");
  t.is(await readFile(path.join(getApi, "package.json"), "utf8"), "{}\n", "the tree's own files stay");
});

/** The rendered script's bundle_fetch function, run against a file server, unpacking into a temp folder. */
async function runFetch(scriptText: string, baseUrl: string, into: string) {
  const fn = /^bundle_fetch\(\) \{\n[\s\S]*?^\}$/m.exec(scriptText)?.[0];
  if (!fn) throw new Error("no bundle_fetch function in the script");
  const script = `set -e\nBUNDLE_FILESERVER_URL="${baseUrl}"\n${fn}\nbundle_fetch openwhisk "$1"\n`;
  return bash(script, [into]);
}

/** `bundle serve`'s file server on ROOT, closed when the test ends. */
async function serveFiles(t: { teardown: (fn: () => Promise<void>) => void }, root: string) {
  const server = await startFileServer({ root, host: "127.0.0.1", port: 0, log: () => {} });
  t.teardown(() => server.close());
  return server;
}

async function openwhiskArchive(root: string): Promise<Buffer> {
  const src = path.join(root, "src");
  await mkdir(path.join(src, "openwhisk", "ansible"), { recursive: true });
  await writeFile(path.join(src, "openwhisk", "ansible", "setup.yml"), "- hosts: localhost\n");
  const file = path.join(root, "openwhisk.tar.gz");
  await tar.c({ gzip: true, cwd: src, file, portable: true }, ["openwhisk"]);
  return readFile(file);
}

test("initdb.sh's download: unpacks the archive the file server serves, checked against its sha256", async (t) => {
  const text = await rendered(`${CHART}/configMapFiles/initCouchDB/initdb.sh`);
  const root = await mkdtemp(path.join(os.tmpdir(), "bundle-ow-fetch-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const archive = await openwhiskArchive(root);
  await mkdir(path.join(root, "served", "openwhisk"), { recursive: true });
  await writeFile(path.join(root, "served", "openwhisk", "openwhisk.tar.gz"), archive);
  const server = await serveFiles(t, path.join(root, "served"));

  const into = path.join(root, "unpacked");
  const r = await runFetch(text, `${server.url}/openwhisk`, into);
  t.is(r.code, 0, r.out);
  t.regex(r.out, /openwhisk\.tar\.gz: OK/, "the sha256 was checked");
  t.true((await stat(path.join(into, "openwhisk", "ansible", "setup.yml"))).isFile());
});

test("initdb.sh's download: an archive that does not match the declared sha256 is refused", async (t) => {
  const text = await rendered(`${CHART}/configMapFiles/initCouchDB/initdb.sh`);
  const root = await mkdtemp(path.join(os.tmpdir(), "bundle-ow-fetch-"));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const archive = await openwhiskArchive(root);
  const wrong = createHash("sha256").update("something else").digest("hex");
  const server = createServer((_req, res) => {
    res.writeHead(200, { "x-checksum-sha256": wrong, "content-length": archive.length });
    res.end(archive);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as { port: number };

  const into = path.join(root, "unpacked");
  const r = await runFetch(text, `http://127.0.0.1:${port}/openwhisk`, into);
  t.not(r.code, 0, r.out);
  t.regex(r.out, /does not match the sha256/);
  await t.throwsAsync(stat(path.join(into, "openwhisk")));
});

for (const name of ["grafana-pod.yaml", "grafana-cm-download.yaml"]) {
  test(`Helm overlay ${name}: renders back to Helm text with its {{ }} actions intact`, async (t) => {
    const { def } = await definition();
    const tpl = template(def, `${CHART}/templates/${name}`);
    const out = await rendered(`${CHART}/templates/${name}`);
    // Handlebars drops the backslash of each escaped \{{ and nothing else.
    t.is(out, tpl.text.replaceAll("\\{{", "{{"));
    t.false(out.includes("\\{{"));
    // Every {{ … }} is one whole Go template action, and the blocks balance.
    const actions = out.match(/\{\{-? [^{}]+? -?\}\}/g) ?? [];
    t.true(actions.length > 3);
    t.false(/\{\{|\}\}/.test(out.replace(/\{\{-? [^{}]+? -?\}\}/g, "")), "a brace pair outside an action");
    const opens = actions.filter((a) => /^\{\{-? (if|range|with|define) /.test(a)).length;
    const ends = actions.filter((a) => /^\{\{-? end -?\}\}$/.test(a)).length;
    t.is(opens, ends);
    t.true(actions.some((a) => a.includes(".Values.")));
  });
}

test("Helm overlay grafana-pod.yaml: the downloader comes from the registry, through values", async (t) => {
  const out = await rendered(`${CHART}/templates/grafana-pod.yaml`);
  t.false(/image: "appropriate\/curl/.test(out), "the hard-coded Docker Hub image is gone");
  t.true(
    out.includes(
      'image: "{{- .Values.docker.registry.name -}}{{- .Values.grafana.downloaderImageName | default "appropriate/curl" -}}:{{- .Values.grafana.downloaderImageTag | default "latest" -}}"',
    ),
  );
  const download = await rendered(`${CHART}/templates/grafana-cm-download.yaml`);
  t.true(download.includes("{{- range $index, $url := .Values.grafana.dashboards }}"));
  t.true(download.includes("fetch {{ $url | quote }} /var/lib/grafana/dashboards/{{ $index }}.json"));
});
