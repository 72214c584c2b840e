/**
 * Broken definitions, each with its own precise error: `bundle lint` must name the file, line,
 * column and key, say what is wrong, and exit 2 (SPEC.md: the input is wrong).
 */
import test from "ava";
import { runCli, tempFiles } from "./helpers/cli.js";

const COMMIT = "ef725a653ab112391f79c274d8e3dcfb915d59a3";

interface Case {
  files: Record<string, string>;
  args?: string[];
  /** Lines stderr must contain, each exactly. */
  errors: string[];
}

const cases: Record<string, Case> = {
  "YAML syntax error": {
    files: { "bundle.yml": "images: [redis:4.0, nginx:1.21.1\nname: x\n" },
    errors: [
      "error: bundle.yml:2:1 YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ],
  },
  "duplicate key in YAML": {
    files: { "bundle.yml": "name: a\nname: b\n" },
    errors: ["error: bundle.yml:2:1 YAML syntax error: Map keys must be unique"],
  },
  "wrong type: images is a string": {
    files: { "bundle.yml": "name: demo\nimages: redis:4.0\n" },
    errors: ['error: bundle.yml:2:9 images: expected a list, got "redis:4.0"'],
  },
  "wrong type: platforms items": {
    files: { "bundle.yml": "platforms: [linux/amd64, amd64]\n" },
    errors: [
      'error: bundle.yml:1:26 platforms[1]: expected os/arch or os/arch/variant, e.g. linux/arm64, got "amd64"',
    ],
  },
  "unknown top-level key with did-you-mean": {
    files: { "bundle.yml": "name: demo\nimgaes:\n  - redis:4.0\n" },
    errors: [
      'error: bundle.yml:2:1 imgaes: unknown key "imgaes" (did you mean "images"?); allowed: $schema, name, description, platforms, mirror, values, images, git, files, npm, charts, templates, releases',
    ],
  },
  "unknown key in a Telego prepare item": {
    files: { "deployment.yml": "prepare:\n  - imagee: redis:4.0\n" },
    args: ["-f", "deployment.yml"],
    errors: [
      'error: deployment.yml:2:5 prepare[0].imagee: unknown key "imagee" (did you mean "image"?); allowed: image, git, url, as, filemap',
    ],
  },
  "Telego prepare item with two kinds": {
    files: { "deployment.yml": `prepare:\n  - image: redis:4.0\n    git: https://example.org/a:${COMMIT}\n` },
    args: ["-f", "deployment.yml"],
    errors: [
      "error: deployment.yml:2:5 prepare[0]: expected exactly one of image, git, url, filemap, got image and git",
    ],
  },
  "bad image reference: uppercase repository": {
    files: { "bundle.yml": "images:\n  - redis:4.0\n  - Apache/CouchDB:2.3\n" },
    errors: [
      "error: bundle.yml:3:5 images[1]: invalid image reference \"Apache/CouchDB:2.3\": repository part \"Apache\" must be lowercase letters and digits, separated by '.', '_', '__' or '-'",
    ],
  },
  "bad image reference: tag": {
    files: { "deployment.yml": "prepare:\n  - image: redis:4.0!\n" },
    args: ["-f", "deployment.yml"],
    errors: [
      "error: deployment.yml:2:12 prepare[0].image: invalid image reference \"redis:4.0!\": tag \"4.0!\" may hold only letters, digits, '_', '.', '-' (at most 128)",
    ],
  },
  "bad image reference: digest": {
    files: { "bundle.yml": "images:\n  - ref: redis@sha256:1234\n" },
    errors: [
      'error: bundle.yml:2:10 images[0].ref: invalid image reference "redis@sha256:1234": digest "sha256:1234" is not sha256: followed by 64 lowercase hex digits',
    ],
  },
  "Telego git without a commit": {
    files: {
      "deployment.yml":
        "prepare:\n  - image: redis:4.0\n  - image: nginx:1.21.1\n  - image: zookeeper:3.4\n  - git: https://github.com/apache/openwhisk\n",
    },
    args: ["-f", "deployment.yml"],
    errors: [
      'error: deployment.yml:5:10 prepare[3].git: expected URL:COMMIT with a 40-hex commit, got "https://github.com/apache/openwhisk"',
    ],
  },
  "native git with a short commit": {
    files: { "bundle.yml": "git:\n  - url: https://github.com/apache/openwhisk\n    commit: ef725a6\n" },
    errors: ['error: bundle.yml:3:13 git[0].commit: expected a full 40-hex git commit, got "ef725a6"'],
  },
  "native git with both commit and ref": {
    files: {
      "bundle.yml": `git:\n  - url: https://github.com/apache/openwhisk\n    commit: ${COMMIT}\n    ref: master\n`,
    },
    errors: [
      "error: bundle.yml:2:5 git[0]: give exactly one of commit (40 hex digits) or ref (a tag or branch)",
    ],
  },
  "missing value in a native template": {
    files: {
      "bundle.yml": "templates:\n  - source: values.tpl.yml\n    dest: files/values.yml\n",
      "values.tpl.yml": "whisk:\n  ingress:\n    apiHostName: {{ingress_ip}}\n",
    },
    errors: [
      'error: values.tpl.yml:3:20 missing value "ingress_ip" (used by the template for files/values.yml); give it in the definition\'s values, --values FILE or --set ingress_ip=VALUE',
    ],
  },
  "missing value inside a Telego read_from_file": {
    files: {
      "deployment.yml":
        "local_values:\n  overrides:\n    read_from_file: template/override.yml\nprepare:\n  - filemap:\n      content: ${overrides}\n      path: teledeploy/override.yml\n",
      "template/override.yml": "registry: ${IMG_REPO}\nhost: ${ingress_ip}\n",
    },
    args: ["-f", "deployment.yml"],
    errors: [
      'error: template/override.yml:2:7 missing value "ingress_ip" (used by the template for files/override.yml); give it in the definition\'s values, --values FILE or --set ingress_ip=VALUE',
    ],
  },
  "two images on one mirror name": {
    files: { "bundle.yml": "images:\n  - redis:4.0\n  - quay.io/opstree/redis:4.0\n" },
    errors: [
      "error: bundle.yml:3:5 images (bundle.yml:2:5) and quay.io/opstree/redis:4.0 would both be mirrored as teleinfra/redis:4.0; set mirror.naming: full-path or rename one".replace(
        "images (",
        "images docker.io/library/redis:4.0 (",
      ),
    ],
  },
  "one image listed twice": {
    files: { "deployment.yml": "prepare:\n  - image: redis:4.0\n  - image: docker.io/library/redis:4.0\n" },
    args: ["-f", "deployment.yml"],
    errors: [
      "error: deployment.yml:3:12 image docker.io/library/redis:4.0 is listed twice (first at deployment.yml:2:12)",
    ],
  },
  "template source that does not exist": {
    files: { "bundle.yml": "templates:\n  - source: missing.yml\n    dest: files/x.yml\n" },
    errors: ["error: bundle.yml:2:13 templates[0].source: file missing.yml does not exist"],
  },
  "read_from_file that does not exist": {
    files: { "deployment.yml": "local_values:\n  v:\n    read_from_file: nowhere/values.yml\n" },
    args: ["-f", "deployment.yml"],
    errors: [
      "error: deployment.yml:3:21 local_values.v.read_from_file: file nowhere/values.yml does not exist",
    ],
  },
  "helm-dir that does not exist": {
    files: { "deployment.yml": "helms:\n  app:\n    helm-dir: charts/app\n" },
    args: ["-f", "deployment.yml"],
    errors: ["error: deployment.yml:3:15 helms.app.helm-dir: folder"],
  },
  "release of an unknown chart": {
    files: { "bundle.yml": "releases:\n  - name: web\n    chart: nginx\n" },
    errors: ['error: bundle.yml:2:5 release web: no chart named "nginx"'],
  },
  "site value set in the definition": {
    files: { "bundle.yml": "values:\n  IMG_REPO: 10.0.0.5:5000\n" },
    errors: [
      "error: bundle.yml:2:13 values.IMG_REPO: IMG_REPO is a site value, bound from the command line at upload and deploy; remove it here",
    ],
  },
  "file mode that is not octal": {
    files: {
      "deployment.yml":
        "prepare:\n  - filemap:\n      content: x\n      path: teledeploy/x\n      mode: 799\n",
    },
    args: ["-f", "deployment.yml"],
    errors: [
      'error: deployment.yml:5:13 prepare[0].filemap.mode: expected file mode in octal digits, e.g. "0644" or "755", got 799',
    ],
  },
  "definition file that does not exist": {
    files: {},
    args: ["-f", "nope.yml"],
    errors: ["error: nope.yml: no such file"],
  },
  "top level is a list": {
    files: { "bundle.yml": "- redis:4.0\n" },
    errors: ["error: bundle.yml:1:1 expected a map at the top of the definition"],
  },
  "OpenWhisk: scheduler with the CouchDB activation store": {
    files: {
      "bundle.yml":
        "charts:\n  - name: openwhisk\n    path: chart\ntemplates:\n  - source: values.yml\n    dest: files/values.yml\nreleases:\n  - name: ow\n    chart: openwhisk\n    values: [files/values.yml]\n",
      "chart/Chart.yaml": "apiVersion: v2\nname: openwhisk\nversion: 1.0.0\n",
      "chart/values.yaml": "activationStoreBackend: CouchDB\nscheduler:\n  enabled: false\n",
      "values.yml": "scheduler:\n  enabled: true\n",
    },
    errors: ["error: values.yml:2:3 scheduler.enabled:"],
  },
  "a local chart's Chart.yaml that is not YAML": {
    files: {
      "bundle.yml": "charts:\n  - name: bad\n    path: bad\n",
      "bad/Chart.yaml": "apiVersion: v2\nname: bad\nversion: [1\ndescription: a chart\n",
    },
    errors: [
      "error: bad/Chart.yaml:4:1 YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ],
  },
  "a local chart's dependency without a name, and a Chart.lock entry without a version": {
    files: {
      "bundle.yml": "charts:\n  - name: bad\n    path: bad\n",
      "bad/Chart.yaml":
        "apiVersion: v2\nname: bad\nversion: 1.0.0\ndependencies:\n  - version: 1.0.0\n    repository: https://charts.example.org\n",
      "bad/Chart.lock": "dependencies:\n  - name: lib\n    repository: https://charts.example.org\n",
    },
    errors: [
      'error: bad/Chart.yaml:5:5 dependencies[0]: missing required key "name"',
      'error: bad/Chart.lock:2:5 dependencies[0]: missing required key "version"',
    ],
  },
  "bad --set": {
    files: { "bundle.yml": "name: demo\n" },
    args: ["--set", "novalue"],
    errors: ["error: --set novalue: expected KEY=VALUE, e.g. --set ingress_ip=10.0.0.5"],
  },
};

for (const [title, c] of Object.entries(cases)) {
  test(title, async (t) => {
    const { dir, cleanup } = await tempFiles(c.files);
    t.teardown(cleanup);
    const r = await runCli(["lint", ...(c.args ?? [])], { cwd: dir });
    for (const e of c.errors)
      t.true(
        r.stderr.split("\n").some((l) => l.startsWith(e)),
        `expected line starting\n  ${e}\ngot\n${r.stderr}`,
      );
    t.is(r.code, 2, r.stderr);
    t.is(r.stdout, "");
  });
}

test("all errors of a definition are reported together, in file order", async (t) => {
  const { dir, cleanup } = await tempFiles({
    "bundle.yml": "images:\n  - Bad:1\n  - ok:1\nplatform: [linux/amd64]\n",
  });
  t.teardown(cleanup);
  const r = await runCli(["lint"], { cwd: dir });
  t.is(r.code, 2);
  const lines = r.stderr.trim().split("\n");
  t.is(lines.length, 2, "the unknown key and the bad image in one run");
  t.regex(lines[0] ?? "", /^error: bundle\.yml:2:5 images\[0\]: .*"Bad:1"/);
  t.regex(
    lines[1] ?? "",
    /^error: bundle\.yml:4:1 platform: unknown key "platform" \(did you mean "platforms"\?\)/,
  );
});

test("an unknown key, a missing file and a missing template value come in one run", async (t) => {
  const { dir, cleanup } = await tempFiles({
    "bundle.yml": [
      "imgaes: [redis:4.0]",
      "templates:",
      "  - source: values.yml",
      "    dest: files/values.yml",
      "  - source: absent.yml",
      "    dest: files/absent.yml",
    ].join("\n"),
    "values.yml": "ip: {{ingress_ip}}\n",
  });
  t.teardown(cleanup);
  const r = await runCli(["lint"], { cwd: dir });
  t.is(r.code, 2);
  const lines = r.stderr.trim().split("\n");
  t.is(lines.length, 3, r.stderr);
  t.regex(lines[0] ?? "", /^error: bundle\.yml:1:1 imgaes: unknown key "imgaes" \(did you mean "images"\?\)/);
  t.regex(lines[1] ?? "", /^error: bundle\.yml:5:13 templates\[1\]\.source: file absent\.yml does not exist/);
  t.regex(lines[2] ?? "", /^error: values\.yml:1:\d+ missing value "ingress_ip"/);
});

test("--json reports errors on stdout as data, with exit 2", async (t) => {
  const { dir, cleanup } = await tempFiles({ "bundle.yml": "images: 3\n" });
  t.teardown(cleanup);
  const r = await runCli(["--json", "lint"], { cwd: dir });
  t.is(r.code, 2);
  t.deepEqual(JSON.parse(r.stdout), {
    ok: false,
    exitCode: 2,
    errors: ["bundle.yml:1:9 images: expected a list, got 3"],
  });
});
