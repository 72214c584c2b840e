/**
 * `bundle audit`: what in a prepared bundle would still reach outside the site at install time.
 * The fixture (test/fixtures/audit/bundle) holds a chart that git-clones from GitHub, downloads
 * Grafana dashboards from raw.githubusercontent.com, hard-codes `appropriate/curl:latest` and runs
 * `npm install`; a values override and a chart overlay still to render; a script under files/;
 * and things the audit must leave alone (comments, docs, archives and what they unpacked to, a
 * binary, a chart file that a template replaces, in-cluster and loopback URLs).
 */
import test, { type ExecutionContext } from "ava";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { auditBundle, formatAuditFindings, type AuditFinding } from "../src/audit/index.js";
import type { Lock } from "../src/bundle/lock.js";
import { InputError } from "../src/util/errors.js";
import { REPO } from "./helpers/cli.js";
import { openBundle } from "../src/bundle/contents.js";

const FIXTURE = path.join(REPO, "test/fixtures/audit/bundle");
const SITE = { registryHost: "registry.site.lan:5000", fileserverUrl: "http://files.site.lan:8003" };

type Where = Pick<AuditFinding, "file" | "line" | "kind" | "text">;
const where = (f: AuditFinding): Where => ({ file: f.file, line: f.line, kind: f.kind, text: f.text });

/** Everything the fixture reaches outside the site, in the order the audit must give it. */
const EXPECTED: Where[] = [
  { file: "charts/demo/runtimes.json", line: 7, kind: "image", text: "demo/action-nodejs-v14:1.0.0" },
  { file: "charts/demo/runtimes.json", line: 11, kind: "image", text: "demo/dockerskeleton:1.0.0" },
  {
    file: "charts/demo/templates/grafana.yaml",
    line: 13,
    kind: "url",
    text: "https://raw.githubusercontent.com/demo/dashboards/v1/overview.json",
  },
  { file: "charts/demo/templates/grafana.yaml", line: 29, kind: "image", text: "appropriate/curl:latest" },
  {
    file: "charts/demo/templates/install-job.yaml",
    line: 16,
    kind: "git-clone",
    text: "https://github.com/demo/catalog.git",
  },
  {
    file: "charts/demo/templates/install-job.yaml",
    line: 17,
    kind: "package-registry",
    text: "npm install --production",
  },
  {
    file: "charts/demo/templates/install-job.yaml",
    line: 20,
    kind: "image",
    text: "docker.io/library/busybox:1.36",
  },
  { file: "charts/demo/values.yaml", line: 10, kind: "image", text: "redis:4.0" },
  { file: "files/setup.sh", line: 4, kind: "package-registry", text: "apt-get update" },
  { file: "files/setup.sh", line: 4, kind: "package-registry", text: "apt-get install -y jq" },
  { file: "files/setup.sh", line: 5, kind: "package-registry", text: "pip install requests==2.31.0" },
  { file: "files/setup.sh", line: 6, kind: "url", text: "https://downloads.example.com/tool-1.0.tgz" },
  { file: "templates/files/override-values.yml", line: 14, kind: "image", text: "busybox:latest" },
  {
    file: "templates/files/override-values.yml",
    line: 17,
    kind: "url",
    text: "https://downloads.example.com/plugins.tgz",
  },
];

async function copyFixture(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-audit-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await cp(FIXTURE, dir, { recursive: true });
  return dir;
}

/** Replaces `from` (which must be there: the fixture and the test must not drift apart) with `to`. */
async function edit(dir: string, file: string, from: string, to: string): Promise<void> {
  const p = path.join(dir, file);
  const text = await readFile(p, "utf8");
  if (!text.includes(from)) throw new Error(`${file} does not hold ${JSON.stringify(from)}`);
  await writeFile(p, text.split(from).join(to));
}

/** The fixture with every reach outside pointed at the file server and the registry of SITE. */
async function pointAtSite(dir: string): Promise<void> {
  const files = "http://files.site.lan:8003/demo";
  const reg = "registry.site.lan:5000/teleinfra";
  await edit(dir, "charts/demo/runtimes.json", '"prefix": "demo"', `"prefix": "${reg}"`);
  await edit(
    dir,
    "charts/demo/templates/grafana.yaml",
    "https://raw.githubusercontent.com/demo/dashboards/v1/overview.json",
    `${files}/dashboards/overview.json`,
  );
  await edit(dir, "charts/demo/templates/grafana.yaml", "appropriate/curl:latest", `${reg}/curl:latest`);
  await edit(
    dir,
    "charts/demo/templates/install-job.yaml",
    "git clone https://github.com/demo/catalog.git /catalog",
    `mkdir -p /catalog && curl -fsSL ${files}/catalog.tar.gz | tar -xz -C /catalog`,
  );
  await edit(
    dir,
    "charts/demo/templates/install-job.yaml",
    "npm install --production",
    `curl -fsSL ${files}/routemgmt-node_modules.tar.gz | tar -xz`,
  );
  await edit(
    dir,
    "charts/demo/templates/install-job.yaml",
    "docker.io/library/busybox:1.36",
    `${reg}/busybox:1.36`,
  );
  await edit(dir, "charts/demo/values.yaml", 'imageName: "redis"', `imageName: "${reg}/redis"`);
  await edit(
    dir,
    "files/setup.sh",
    "apt-get update && apt-get install -y jq",
    `curl -fsSL ${files}/jq -o /usr/local/bin/jq`,
  );
  await edit(
    dir,
    "files/setup.sh",
    "pip install requests==2.31.0",
    `pip install --no-index --find-links ${files}/wheels requests==2.31.0`,
  );
  await edit(dir, "files/setup.sh", "https://downloads.example.com/tool-1.0.tgz", `${files}/tool-1.0.tgz`);
  await edit(
    dir,
    "templates/files/override-values.yml",
    "imageName: busybox",
    "imageName: {{IMG_REPO}}/teleinfra/busybox",
  );
  await edit(dir, "templates/files/override-values.yml", "https://{{mirror_host}}", "{{FILESERVER_URL}}");
}

async function addToLock(dir: string, ref: string, mirror: string, digest: string): Promise<void> {
  const file = path.join(dir, "bundle.lock.json");
  const lock = JSON.parse(await readFile(file, "utf8")) as Lock;
  lock.images.push({
    ref,
    source: "registry",
    digest,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    size: 1,
    platforms: [],
    missingPlatforms: [],
    mirror,
    mirrorDigest: digest,
    blobs: [],
    bytes: 0,
  });
  await writeFile(file, JSON.stringify(lock, null, 2));
}

test("the fixture bundle: every reach outside the site, by file and line, and nothing else", async (t) => {
  const findings = await auditBundle(await openBundle(FIXTURE), {});
  t.deepEqual(findings.map(where), EXPECTED);
  for (const f of findings) t.true(f.why.length > 20, `${f.file}:${f.line} says why`);
  // Deterministic: the same bundle gives the same list, reasons included.
  t.deepEqual(await auditBundle(await openBundle(FIXTURE), {}), findings);
  // For a terminal: `file:line kind text`, the reason indented under it.
  t.is(
    formatAuditFindings(findings.slice(0, 1)),
    "charts/demo/runtimes.json:7 image demo/action-nodejs-v14:1.0.0\n" +
      "    docker.io/demo/action-nodejs-v14:1.0.0 is neither on the site registry (site-registry.invalid:5000) " +
      "nor carried in the bundle (add it to the bundle's images and point this reference at the mirror)\n",
  );
});

test("each finding says why, naming the registry, the mirror or the host", async (t) => {
  const findings = await auditBundle(await openBundle(FIXTURE), SITE);
  const at = (file: string, line: number) => findings.find((f) => f.file === file && f.line === line)?.why;
  t.is(
    at("charts/demo/templates/grafana.yaml", 29),
    "docker.io/appropriate/curl:latest is neither on the site registry (registry.site.lan:5000) nor carried " +
      "in the bundle (add it to the bundle's images and point this reference at the mirror)",
  );
  t.is(
    at("charts/demo/values.yaml", 10),
    "carried in the bundle but referenced by its upstream name; point it at the mirror " +
      "registry.site.lan:5000/teleinfra/redis:4.0",
  );
  t.regex(at("charts/demo/templates/install-job.yaml", 16) ?? "", /^clones from github\.com at install time/);
  t.regex(at("charts/demo/templates/grafana.yaml", 13) ?? "", /raw\.githubusercontent\.com \(GitHub\)/);
  t.regex(at("files/setup.sh", 5) ?? "", /^pip fetches packages from pypi\.org/);
  t.regex(
    at("templates/files/override-values.yml", 17) ?? "",
    /^downloads\.example\.com is outside the site/,
  );
  // The site's values render the templates: the override's {{IMG_REPO}} images are on the registry.
  t.deepEqual(
    findings.map(where),
    EXPECTED,
    "the same findings with the site's registry and file server as with the placeholders",
  );
});

test("pointed at the file server and the site registry, the bundle reaches nothing outside", async (t) => {
  const dir = await copyFixture(t);
  await pointAtSite(dir);
  t.deepEqual(await auditBundle(await openBundle(dir), SITE), []);

  // The same bundle against another site: what it hard-codes for SITE now reaches outside, while the
  // templates, rendered with this site's values, stay clean.
  const elsewhere = await auditBundle(await openBundle(dir), {});
  t.deepEqual(
    elsewhere.map((f) => `${f.file}:${f.line} ${f.kind}`),
    [
      "charts/demo/runtimes.json:7 image",
      "charts/demo/runtimes.json:11 image",
      "charts/demo/templates/grafana.yaml:13 url",
      "charts/demo/templates/grafana.yaml:29 image",
      "charts/demo/templates/install-job.yaml:16 url",
      "charts/demo/templates/install-job.yaml:17 url",
      "charts/demo/templates/install-job.yaml:20 image",
      "charts/demo/values.yaml:10 image",
      "files/setup.sh:4 url",
      "files/setup.sh:5 package-registry",
      "files/setup.sh:6 url",
    ],
  );
  t.is(elsewhere.find((f) => f.line === 29)?.text, "registry.site.lan:5000/teleinfra/curl:latest");
});

test("an image the bundle carries but names by its upstream reference still reaches outside", async (t) => {
  const dir = await copyFixture(t);
  const digest = `sha256:${"4".repeat(64)}`;
  await addToLock(dir, "docker.io/appropriate/curl:latest", "teleinfra/curl:latest", digest);
  const curl = async () =>
    (await auditBundle(await openBundle(dir), SITE)).filter(
      (f) => f.file === "charts/demo/templates/grafana.yaml" && f.line === 29,
    );

  t.deepEqual(await curl(), [
    {
      kind: "image",
      file: "charts/demo/templates/grafana.yaml",
      line: 29,
      text: "appropriate/curl:latest",
      why:
        "carried in the bundle but referenced by its upstream name; point it at the mirror " +
        "registry.site.lan:5000/teleinfra/curl:latest",
    },
  ]);
  // Pinned by the carried digest: the same image, the same finding.
  await edit(
    dir,
    "charts/demo/templates/grafana.yaml",
    "appropriate/curl:latest",
    `appropriate/curl@${digest}`,
  );
  t.regex((await curl())[0]?.why ?? "", /^carried in the bundle but referenced by its upstream name/);
  // Pointed at the mirror: nothing left on that line.
  await edit(
    dir,
    "charts/demo/templates/grafana.yaml",
    `appropriate/curl@${digest}`,
    "registry.site.lan:5000/teleinfra/curl:latest",
  );
  t.deepEqual(await curl(), []);
});

test("a chart default the override sets is not reported; one it leaves is", async (t) => {
  const dir = await copyFixture(t);
  const defaults = async () =>
    (await auditBundle(await openBundle(dir), SITE))
      .filter((f) => f.file === "charts/demo/values.yaml")
      .map(where);
  t.deepEqual(await defaults(), [
    { file: "charts/demo/values.yaml", line: 10, kind: "image", text: "redis:4.0" },
  ]);

  // Without the override's controller.imageName and grafana.dashboards, the chart's defaults apply.
  await edit(
    dir,
    "templates/files/override-values.yml",
    "  imageName: {{IMG_REPO}}/teleinfra/controller\n",
    "",
  );
  await edit(
    dir,
    "templates/files/override-values.yml",
    "  dashboards:\n    - {{FILESERVER_URL}}/dashboards/overview.json\n",
    "",
  );
  t.deepEqual(await defaults(), [
    { file: "charts/demo/values.yaml", line: 7, kind: "image", text: "demo/controller:1.0" },
    { file: "charts/demo/values.yaml", line: 10, kind: "image", text: "redis:4.0" },
    {
      file: "charts/demo/values.yaml",
      line: 16,
      kind: "url",
      text: "https://raw.githubusercontent.com/demo/dashboards/v1/overview.json",
    },
  ]);
});

test("a template still to render is audited as rendered, in place of the chart file it replaces", async (t) => {
  const dir = await copyFixture(t);
  const about = async (file: string) =>
    (await auditBundle(await openBundle(dir), SITE)).filter((f) => f.file === file).map(where);
  // The chart's own init.sh clones from GitHub, but deploy replaces it with the template's rendering.
  t.deepEqual(await about("charts/demo/files/init.sh"), []);
  t.deepEqual(await about("templates/charts/demo/files/init.sh"), []);

  await edit(
    dir,
    "templates/charts/demo/files/init.sh",
    "curl -fsSL {{FILESERVER_URL}}/app.tar.gz | tar -xz -C /app --strip-components=1",
    "git clone https://github.com/demo/app /app\ncurl -fsSL {{FILESERVER_URL}}/app.tar.gz | tar -xz -C /app",
  );
  t.deepEqual(await about("templates/charts/demo/files/init.sh"), [
    {
      file: "templates/charts/demo/files/init.sh",
      line: 5,
      kind: "git-clone",
      text: "https://github.com/demo/app",
    },
  ]);
  // Rendered with the bundle's values: {{mirror_host}} comes from templates/values.json.
  await edit(dir, "templates/values.json", "downloads.example.com", "mirror.example.net");
  t.true(
    (await auditBundle(await openBundle(dir), SITE)).some(
      (f) => f.text === "https://mirror.example.net/plugins.tgz" && f.line === 17,
    ),
  );
});

test("archives, what they unpacked to, binaries and docs are not read; text files under files/ are", async (t) => {
  const dir = await copyFixture(t);
  const files = async () =>
    (await auditBundle(await openBundle(dir), SITE))
      .filter((f) => f.file.startsWith("files/"))
      .map((f) => f.file);
  t.deepEqual([...new Set(await files())], ["files/setup.sh"]);
  // The same script, not unpacked from an archive, is read.
  await cp(path.join(dir, "files/tools/kit/install.sh"), path.join(dir, "files/tools/install.sh"));
  t.deepEqual([...new Set(await files())], ["files/setup.sh", "files/tools/install.sh"]);
});

test("a folder without bundle.lock.json is an input error", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-audit-empty-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const err = await t.throwsAsync(async () => auditBundle(await openBundle(dir), {}));
  t.true(err instanceof InputError);
  t.regex(err?.message ?? "", /bundle\.lock\.json is missing/);
});
