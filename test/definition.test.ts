/** Loading both definition formats into the one model, values in layers, and the published schema. */
import test from "ava";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Ajv } from "ajv";
import { loadDefinition, missingValues } from "../src/config/load.js";
import { formatMirror } from "../src/config/mirror.js";
import { formatImageRef } from "../src/config/imageRef.js";
import { publishedSchemas, schemaFiles } from "../src/config/schema.js";
import { bundleFileSchemas } from "../src/bundle/schema.js";
import { ociSchemas } from "../src/oci/schema.js";
import { DATA_VALIDATOR_OPTIONS } from "../src/util/schema.js";
import { REPO, runCli, tempFiles } from "./helpers/cli.js";

const TELEGO = path.join(REPO, "test/fixtures/telego-openwhisk/deployment.yml");
const NATIVE = path.join(REPO, "test/fixtures/native/bundle.yml");

test("the Telego OpenWhisk configuration lints cleanly", async (t) => {
  const r = await runCli(["lint", "-f", TELEGO]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, "");
  t.regex(
    r.stdout,
    /bundle "telego-openwhisk": 19 images, 2 git archives, 0 downloads, 3 templates, 1 release\b/,
  );
  t.regex(r.stdout, /site values bound at upload and deploy: IMG_REPO, MAIN_NODE_IP/);
});

test("the Telego dialect loads into the model: images, git, overlays, release", async (t) => {
  const def = await loadDefinition(TELEGO);
  t.is(def.name, "telego-openwhisk");
  t.deepEqual(def.platforms, ["linux/amd64", "linux/arm64"]);
  t.is(def.images.length, 19);
  const kafka = def.images.find((i) => i.ref.repository === "wurstmeister/kafka");
  t.is(kafka && formatMirror(kafka.mirror), "teleinfra/kafka:2.12-2.3.1");
  t.is(kafka && formatImageRef(kafka.ref), "docker.io/wurstmeister/kafka:2.12-2.3.1");
  const es = def.images.at(-1);
  t.is(es && formatImageRef(es.ref), "docker.elastic.co/elasticsearch/elasticsearch:6.7.2");
  t.deepEqual(
    def.git.map((g) => [g.archive, g.revision]),
    [
      ["openwhisk.tar.gz", { kind: "commit", commit: "ef725a653ab112391f79c274d8e3dcfb915d59a3" }],
      [
        "openwhisk-deploy-kube.tar.gz",
        { kind: "commit", commit: "6a8ff8a4e1a3e2f4b4c8e1e3b7f1f9c4d2a0b6e1" },
      ],
    ],
  );
  t.deepEqual(
    def.templates.map((tp) => [tp.dest, tp.mode.toString(8)]),
    [
      [{ kind: "file", path: "override-values.yml" }, "755"],
      [{ kind: "chart", chart: "openwhisk", path: "runtimes.json" }, "644"],
      [{ kind: "chart", chart: "openwhisk", path: "configMapFiles/initCouchDB/initdb.sh" }, "755"],
    ],
  );
  t.deepEqual(
    def.charts.map((c) => [c.name, c.source]),
    [["openwhisk", { kind: "git", archive: "openwhisk-deploy-kube.tar.gz", path: "helm/openwhisk" }]],
  );
  t.deepEqual(
    def.releases.map((r) => [r.name, r.chart, r.namespace, r.valuesFiles]),
    [["openwhisk", "openwhisk", "openwhisk", ["files/override-values.yml"]]],
  );
});

test("the native format loads into the same model", async (t) => {
  const def = await loadDefinition(NATIVE);
  t.is(def.name, "demo");
  t.deepEqual(
    def.images.map((i) => [
      i.source,
      formatImageRef(i.ref),
      formatMirror(i.mirror),
      i.platforms.join(","),
      i.allowMissingPlatforms,
    ]),
    [
      ["registry", "docker.io/library/redis:4.0", "teleinfra/redis:4.0", "linux/amd64,linux/arm64", false],
      [
        "registry",
        "docker.elastic.co/elasticsearch/elasticsearch:6.7.2",
        "teleinfra/elasticsearch:6.7.2",
        "linux/amd64",
        false,
      ],
      [
        "registry",
        "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "teleinfra/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "linux/amd64,linux/arm64",
        true,
      ],
      ["docker", "docker.io/local/builder:1.0", "teleinfra/builder:1.0", "linux/amd64,linux/arm64", false],
    ],
  );
  t.deepEqual(def.git[1], {
    url: "https://github.com/apache/openwhisk-deploy-kube.git",
    revision: { kind: "ref", ref: "main" },
    archive: "openwhisk-deploy-kube.tar.gz",
    submodules: false,
    at: def.git[1]!.at,
  });
  t.deepEqual(
    def.files.map((f) => [f.path, f.sha256]),
    [["tool-1.2.tgz", "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"]],
  );
  t.deepEqual(
    def.charts.map((c) => c.name),
    ["openwhisk", "tools"],
  );
  t.deepEqual(def.templates[1]?.dest, { kind: "chart", chart: "openwhisk", path: "runtimes.json" });
  t.deepEqual(
    def.releases.map((r) => [r.name, r.namespace]),
    [
      ["openwhisk", "openwhisk"],
      ["tools", "tools"],
    ],
  );
});

test("--name overrides the definition's name and folder", async (t) => {
  const def = await loadDefinition(TELEGO, { name: "site-a" });
  t.is(def.name, "site-a");
});

test("values come in layers: definition, then --values files in order, then --set", async (t) => {
  const { dir, cleanup } = await tempFiles({
    "bundle.yml": "values:\n  a: def\n  b: def\n  c: def\n  nested: { x: def, y: def }\n",
    "one.yml": "b: one\nc: one\nnested: { x: one }\n",
    "two.yml": "c: two\n",
  });
  t.teardown(cleanup);
  const def = await loadDefinition(path.join(dir, "bundle.yml"), {
    valuesFiles: [path.join(dir, "one.yml"), path.join(dir, "two.yml")],
    set: ["nested.y=set", "d=set"],
  });
  t.deepEqual(def.values, { a: "def", b: "one", c: "two", d: "set", nested: { x: "one", y: "set" } });
});

test("a value given by --set satisfies a template that needs it", async (t) => {
  const { dir, cleanup } = await tempFiles({
    "bundle.yml": "templates:\n  - source: t.yml\n    dest: files/t.yml\n",
    "t.yml": "host: {{ingress.ip}}\n{{#each hosts}}- {{name}}\n{{/each}}{{#if debug}}{{json debug}}{{/if}}\n",
  });
  t.teardown(cleanup);
  const file = path.join(dir, "bundle.yml");
  const missing = missingValues(await loadDefinition(file));
  t.deepEqual(
    missing.map((d) => [d.pos.line, d.pos.col, /missing value "([^"]+)"/.exec(d.message)?.[1]]),
    [
      [1, 9, "ingress.ip"],
      [2, 9, "hosts"],
      [3, 16, "debug"],
    ],
    "inside #each the item's fields are not values; helpers (json) are not values",
  );
  const r = await runCli([
    "lint",
    "-f",
    file,
    "--set",
    "ingress.ip=10.0.0.5",
    "--set",
    "hosts=",
    "--set",
    "debug=1",
  ]);
  t.is(r.code, 0, r.stderr);
});

test("full-path mirror naming separates images that share a last segment", async (t) => {
  const { dir, cleanup } = await tempFiles({
    "bundle.yml":
      "mirror: { naming: full-path }\nimages:\n  - redis:4.0\n  - quay.io/opstree/redis:4.0\n  - localhost:5000/x/redis:4.0\n",
  });
  t.teardown(cleanup);
  const def = await loadDefinition(path.join(dir, "bundle.yml"));
  t.deepEqual(
    def.images.map((i) => formatMirror(i.mirror)),
    [
      "teleinfra/library/redis:4.0",
      "teleinfra/quay.io/opstree/redis:4.0",
      "teleinfra/localhost-5000/x/redis:4.0",
    ],
  );
});

test("the published JSON Schema is the one the loader uses, and accepts the native example", async (t) => {
  const files = {
    ...publishedSchemas(),
    ...schemaFiles({ ...bundleFileSchemas(), ...ociSchemas() }, DATA_VALIDATOR_OPTIONS),
  };
  for (const [name, text] of Object.entries(files)) {
    t.is(
      await readFile(path.join(REPO, "schema", name), "utf8"),
      text,
      `run \`npm run schema\` to update ${name}`,
    );
  }
  const published = await readFile(path.join(REPO, "schema/bundle.schema.json"), "utf8");
  const ajv = new Ajv({ strict: false });
  const validate = ajv.compile(JSON.parse(published));
  const { parse } = await import("yaml");
  t.true(validate(parse(await readFile(NATIVE, "utf8"))), JSON.stringify(validate.errors));
  t.false(validate({ images: "redis" }));
});
