/** Finding a chart's images from its files, comparing them with a definition, and the values override. */
import test from "ava";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { compareImages, findChartImages, literalImage, type ChartImage } from "../src/charts/discover.js";
import { lintOpenWhiskValues } from "../src/charts/lint.js";
import {
  chartOverrides,
  generateOverrides,
  loadRuntimesManifest,
  templateOverlays,
} from "../src/charts/overrides.js";
import { formatImageRef } from "../src/config/imageRef.js";
import { loadDefinition } from "../src/config/load.js";
import type { Definition } from "../src/config/model.js";
import { REPO, tempFiles } from "./helpers/cli.js";

const CHART = path.join(REPO, "test/fixtures/chart-openwhisk-like");
const REG = "10.0.0.5:5000";

/** Every image of the fixture chart, as findChartImages must report it: sorted by reference. */
const FIXTURE_IMAGES: ChartImage[] = [
  {
    ref: "docker.elastic.co/elasticsearch/elasticsearch:6.7.2",
    valuesPath: "elasticsearch.image",
    file: "values.yaml",
    line: 61,
    kind: "image+imageTag",
    enabled: false, // activationStoreBackend is CouchDB
  },
  {
    ref: "docker.io/appropriate/curl:latest",
    file: "templates/grafana-pod.yaml",
    line: 10,
    kind: "template-literal",
  },
  {
    ref: "docker.io/grafana/grafana:6.3.0",
    valuesPath: "grafana.imageName",
    registryPath: "docker.registry.name",
    file: "values.yaml",
    line: 50,
    kind: "imageName+imageTag",
    enabled: false, // no metrics flag on
  },
  {
    ref: "docker.io/library/busybox:1.36",
    file: "templates/_readiness.tpl",
    line: 3,
    kind: "template-literal",
  },
  {
    ref: "docker.io/library/nginx:1.21.1",
    valuesPath: "debug.image",
    file: "values.yaml",
    line: 77,
    kind: "image",
  },
  {
    ref: "docker.io/library/redis:4.0",
    valuesPath: "redis.imageName",
    registryPath: "docker.registry.name",
    file: "values.yaml",
    line: 40,
    kind: "imageName+imageTag",
  },
  {
    ref: "docker.io/library/zookeeper:3.4",
    valuesPath: "zookeeper.imageName",
    registryPath: "docker.registry.name",
    file: "values.yaml",
    line: 19,
    kind: "imageName+imageTag",
  },
  {
    ref: "docker.io/openwhisk/action-nodejs-v10:1.16.0",
    valuesPath: "runtimes-minimal.json:runtimes.nodejs[0].image",
    file: "runtimes-minimal.json",
    line: 7,
    kind: "runtimes",
    enabled: false, // whisk.runtimes names runtimes.json
  },
  {
    ref: "docker.io/openwhisk/action-nodejs-v14:1.20.0",
    valuesPath: "runtimes.json:runtimes.nodejs[0].image",
    file: "runtimes.json",
    line: 7,
    kind: "runtimes",
  },
  {
    ref: "docker.io/openwhisk/action-python-v3.7:1.17.0",
    valuesPath: "runtimes.json:runtimes.python[0].image",
    file: "runtimes.json",
    line: 25,
    kind: "runtimes",
  },
  {
    ref: "docker.io/openwhisk/controller:ef725a6",
    valuesPath: "controller.imageName",
    registryPath: "docker.registry.name",
    file: "values.yaml",
    line: 23,
    kind: "imageName+imageTag",
  },
  {
    ref: "docker.io/openwhisk/dockerskeleton:1.14.0",
    valuesPath: "runtimes.json:blackboxes[0]",
    file: "runtimes.json",
    line: 48,
    kind: "runtimes",
  },
  {
    ref: "docker.io/openwhisk/invoker:ef725a6",
    valuesPath: "invoker.imageName",
    registryPath: "docker.registry.name",
    file: "values.yaml",
    line: 36,
    kind: "imageName+imageTag",
  },
  {
    ref: "docker.io/openwhisk/java8action:1.17.0",
    valuesPath: "runtimes.json:runtimes.java[0].image",
    file: "runtimes.json",
    line: 37,
    kind: "runtimes",
  },
  {
    ref: "docker.io/openwhisk/kafkaprovider:2.1.0",
    valuesPath: "providers.kafka.imageName",
    registryPath: "docker.registry.name",
    file: "values.yaml",
    line: 46,
    kind: "imageName+imageTag",
    enabled: false, // providers.kafka.enabled: false
  },
  {
    ref: "docker.io/openwhisk/ow-utils:ef725a6",
    valuesPath: "utility.imageName",
    registryPath: "docker.registry.name",
    file: "values.yaml",
    line: 15,
    kind: "imageName+imageTag",
  },
  {
    ref: "docker.io/openwhisk/scheduler:ef725a6",
    valuesPath: "scheduler.imageName",
    registryPath: "docker.registry.name",
    file: "values.yaml",
    line: 28,
    kind: "imageName+imageTag",
    enabled: false, // scheduler.enabled: false
  },
  {
    ref: "docker.io/prom/statsd-exporter:v0.22.4",
    valuesPath: "statsd.image.repository",
    file: "values.yaml",
    line: 67,
    kind: "image.repository+image.tag",
  },
  {
    ref: "ghcr.io/example/log-shipper:1.2.0",
    valuesPath: "shipper.image.repository",
    registryPath: "shipper.image.registry",
    file: "values.yaml",
    line: 72,
    kind: "image.repository+image.tag",
  },
  {
    ref: "quay.io/coreos/etcd:v3.4.0",
    valuesPath: "etcd.imageName",
    registryPath: "docker.registry.name",
    file: "values.yaml",
    line: 32,
    kind: "imageName+imageTag",
    enabled: false, // etcd runs only with the scheduler
  },
];

/** A definition carrying most of the chart's images, plus one no chart uses (Telego's etcd). */
const DEFINITION = `name: ow
images:
  - openwhisk/ow-utils:ef725a6
  - zookeeper:3.4
  - openwhisk/controller:ef725a6
  - openwhisk/invoker:ef725a6
  - redis:4.0@sha256:${"a".repeat(64)}
  - docker.elastic.co/elasticsearch/elasticsearch:6.7.2
  - prom/statsd-exporter:v0.22.4
  - ghcr.io/example/log-shipper:1.2.0
  - nginx:1.21.1
  - openwhisk/action-nodejs-v14:1.20.0
  - openwhisk/java8action:1.17.0
  - openwhisk/dockerskeleton:1.14.0
  - appropriate/curl:latest
  - bitnami/etcd:3.4.0
`;

async function definition(text: string): Promise<Definition> {
  const tmp = await tempFiles({ "bundle.yml": text });
  try {
    return await loadDefinition(path.join(tmp.dir, "bundle.yml"));
  } finally {
    await tmp.cleanup();
  }
}

test("every image of an OpenWhisk-shaped chart is found with its key, file and line", async (t) => {
  t.deepEqual(await findChartImages(CHART), FIXTURE_IMAGES);
});

test("template image lines that are template expressions, and commented ones, are not reported", async (t) => {
  const literals = (await findChartImages(CHART)).filter((i) => i.kind === "template-literal");
  t.deepEqual(
    literals.map((i) => `${i.file}:${i.line}`),
    ["templates/grafana-pod.yaml:10", "templates/_readiness.tpl:3"],
  );
  t.is(
    literalImage(`        image: "{{ .Values.elasticsearch.image }}:{{ .Values.elasticsearch.imageTag }}"`),
    undefined,
  );
  t.is(literalImage("  # image: commented/out:1.0"), undefined);
  t.is(literalImage(`  - image: 'busybox:1.36'  # why`), "busybox:1.36");
  t.is(literalImage("    image: busybox:1.36  # a fixed helper image"), "busybox:1.36");
});

test("override files given after values.yaml win, and name the file and line that set the image", async (t) => {
  const tmp = await tempFiles({
    "site.yaml": [
      "docker:",
      "  registry:",
      '    name: "mirror.example:5000/"',
      "controller:",
      '  imageTag: "abc1234"',
      "scheduler:",
      "  enabled: true",
      "whisk:",
      "  runtimes: runtimes-minimal.json",
      "",
    ].join("\n"),
  });
  try {
    const site = path.join(tmp.dir, "site.yaml");
    const found = await findChartImages(CHART, [site]);
    const pick = (vp: string): ChartImage | undefined => found.find((i) => i.valuesPath === vp);
    // The tag comes from site.yaml, imageName (the key reported) still from values.yaml.
    t.deepEqual(pick("controller.imageName"), {
      ref: "mirror.example:5000/openwhisk/controller:abc1234",
      valuesPath: "controller.imageName",
      registryPath: "docker.registry.name",
      file: "values.yaml",
      line: 23,
      kind: "imageName+imageTag",
    });
    t.is(pick("scheduler.imageName")?.enabled, undefined, "scheduler.enabled: true in site.yaml");
    t.is(pick("etcd.imageName")?.enabled, undefined, "etcd follows the scheduler");
    t.is(pick("elasticsearch.image")?.ref, "docker.elastic.co/elasticsearch/elasticsearch:6.7.2");
    t.is(pick("runtimes-minimal.json:runtimes.nodejs[0].image")?.enabled, undefined);
    t.is(pick("runtimes.json:runtimes.java[0].image")?.enabled, false);
  } finally {
    await tmp.cleanup();
  }
});

test("a runtime manifest written into the values is read where it is written", async (t) => {
  const tmp = await tempFiles({
    "Chart.yaml": "name: tiny\nversion: 0.1.0\n",
    "values.yaml": [
      "whisk:",
      "  runtimes:",
      "    runtimes:",
      "      go:",
      "        - kind: go:1.15",
      "          image: { prefix: openwhisk, name: action-golang-v1.15, tag: nightly }",
      "    blackboxes:",
      "      - { prefix: openwhisk, name: dockerskeleton }",
      "",
    ].join("\n"),
  });
  try {
    t.deepEqual(await findChartImages(tmp.dir), [
      {
        ref: "docker.io/openwhisk/action-golang-v1.15:nightly",
        valuesPath: "whisk.runtimes.runtimes.go[0].image",
        file: "values.yaml",
        line: 6,
        kind: "runtimes",
      },
      {
        ref: "docker.io/openwhisk/dockerskeleton:latest",
        valuesPath: "whisk.runtimes.blackboxes[0]",
        file: "values.yaml",
        line: 8,
        kind: "runtimes",
      },
    ]);
  } finally {
    await tmp.cleanup();
  }
});

test("compareImages: what the chart uses and the definition lacks, and what no chart uses", async (t) => {
  const def = await definition(DEFINITION);
  const { missing, unused } = compareImages(await findChartImages(CHART), def);
  t.deepEqual(
    missing.map((m) => [m.ref, m.valuesPath ?? m.file, m.enabled ?? true]),
    [
      ["docker.io/grafana/grafana:6.3.0", "grafana.imageName", false],
      ["docker.io/library/busybox:1.36", "templates/_readiness.tpl", true],
      [
        "docker.io/openwhisk/action-nodejs-v10:1.16.0",
        "runtimes-minimal.json:runtimes.nodejs[0].image",
        false,
      ],
      ["docker.io/openwhisk/action-python-v3.7:1.17.0", "runtimes.json:runtimes.python[0].image", true],
      ["docker.io/openwhisk/kafkaprovider:2.1.0", "providers.kafka.imageName", false],
      ["docker.io/openwhisk/scheduler:ef725a6", "scheduler.imageName", false],
      ["quay.io/coreos/etcd:v3.4.0", "etcd.imageName", false],
    ],
  );
  // redis is carried pinned to a digest: still the image the chart asks for by tag.
  t.deepEqual(
    unused.map((i) => formatImageRef(i.ref)),
    ["docker.io/bitnami/etcd:3.4.0"],
  );
});

test("generateOverrides points every carried image at the registry under its mirror name", async (t) => {
  const def = await definition(DEFINITION);
  const found = await findChartImages(CHART);
  const runtimesManifest = await loadRuntimesManifest(CHART, found);
  const o = generateOverrides(found, def, REG, runtimesManifest ? { runtimesManifest } : {});
  t.is(
    o.yaml,
    `controller:
  imageName: "teleinfra/controller"
  imageTag: "ef725a6"
debug:
  image: "10.0.0.5:5000/teleinfra/nginx:1.21.1"
docker:
  registry:
    name: "10.0.0.5:5000/"
elasticsearch:
  esMajorVersionValue: "6"
  image: "10.0.0.5:5000/teleinfra/elasticsearch"
  imageTag: "6.7.2"
invoker:
  imageName: "teleinfra/invoker"
  imageTag: "ef725a6"
redis:
  imageName: "teleinfra/redis"
  imageTag: "4.0@sha256:${"a".repeat(64)}"
shipper:
  image:
    registry: "10.0.0.5:5000"
    repository: "teleinfra/log-shipper"
    tag: "1.2.0"
statsd:
  image:
    repository: "10.0.0.5:5000/teleinfra/statsd-exporter"
    tag: "v0.22.4"
utility:
  imageName: "teleinfra/ow-utils"
  imageTag: "ef725a6"
zookeeper:
  imageName: "teleinfra/zookeeper"
  imageTag: "3.4"
`,
  );
  t.deepEqual(o.values.docker, { registry: { name: "10.0.0.5:5000/" } });
  t.deepEqual(
    o.unmapped.map((i) => i.ref),
    [
      "docker.io/grafana/grafana:6.3.0",
      "docker.io/library/busybox:1.36",
      "docker.io/openwhisk/action-nodejs-v10:1.16.0",
      "docker.io/openwhisk/action-python-v3.7:1.17.0",
      "docker.io/openwhisk/kafkaprovider:2.1.0",
      "docker.io/openwhisk/scheduler:ef725a6",
      "quay.io/coreos/etcd:v3.4.0",
    ],
  );
  t.deepEqual(
    o.fixed.map((i) => i.ref),
    ["docker.io/appropriate/curl:latest", "docker.io/library/busybox:1.36"],
  );
  // The invoker puts docker.registry.name before each runtime image itself, so the prefix is
  // only the path on the registry; the python runtime is not carried and stays as it is.
  t.is(o.runtimes?.file, "runtimes.json");
  t.is(
    o.runtimes?.json,
    await expectedManifest({ nodejs: "teleinfra", java: "teleinfra", blackbox: "teleinfra" }),
  );
});

test("the image-name style leaves docker.registry.name empty and writes the host into each name", async (t) => {
  const def = await definition(DEFINITION);
  const found = await findChartImages(CHART);
  const runtimesManifest = await loadRuntimesManifest(CHART, found);
  const o = generateOverrides(found, def, REG, {
    style: "image-name",
    ...(runtimesManifest ? { runtimesManifest } : {}),
  });
  t.deepEqual(o.values.docker, { registry: { name: "" } });
  t.deepEqual(o.values.controller, { imageName: "10.0.0.5:5000/teleinfra/controller", imageTag: "ef725a6" });
  t.deepEqual(o.values.zookeeper, { imageName: "10.0.0.5:5000/teleinfra/zookeeper", imageTag: "3.4" });
  t.deepEqual(o.values.debug, { image: "10.0.0.5:5000/teleinfra/nginx:1.21.1" });
  const prefix = "10.0.0.5:5000/teleinfra";
  t.is(o.runtimes?.json, await expectedManifest({ nodejs: prefix, java: prefix, blackbox: prefix }));
});

test("full-path mirror naming keeps the source path in imageName and in the runtime prefixes", async (t) => {
  const def = await definition(
    `${DEFINITION.replace("name: ow\n", "name: ow\nmirror:\n  naming: full-path\n")}`,
  );
  const found = await findChartImages(CHART);
  const runtimesManifest = await loadRuntimesManifest(CHART, found);
  const o = generateOverrides(found, def, REG, runtimesManifest ? { runtimesManifest } : {});
  t.deepEqual(o.values.controller, { imageName: "teleinfra/openwhisk/controller", imageTag: "ef725a6" });
  t.deepEqual(o.values.zookeeper, { imageName: "teleinfra/library/zookeeper", imageTag: "3.4" });
  t.deepEqual(o.values.elasticsearch, {
    esMajorVersionValue: "6",
    image: "10.0.0.5:5000/teleinfra/docker.elastic.co/elasticsearch/elasticsearch",
    imageTag: "6.7.2",
  });
  t.deepEqual(o.values.shipper, {
    image: { registry: "10.0.0.5:5000", repository: "teleinfra/ghcr.io/example/log-shipper", tag: "1.2.0" },
  });
  const p = "teleinfra/openwhisk";
  t.is(o.runtimes?.json, await expectedManifest({ nodejs: p, java: p, blackbox: p }));
});

test("no runtime manifest given: runtime images are listed as fixed, not silently left", async (t) => {
  const def = await definition(DEFINITION);
  const o = generateOverrides(await findChartImages(CHART), def, REG);
  t.is(o.runtimes, undefined);
  t.deepEqual(
    o.fixed.map((i) => i.valuesPath ?? i.file),
    [
      "templates/grafana-pod.yaml",
      "templates/_readiness.tpl",
      "runtimes.json:runtimes.nodejs[0].image",
      "runtimes.json:runtimes.python[0].image",
      "runtimes.json:blackboxes[0]",
      "runtimes.json:runtimes.java[0].image",
    ],
  );
});

test("templateOverlays rewrites the literal image lines the definition carries, nothing else", async (t) => {
  const def = await definition(DEFINITION);
  const overlays = await templateOverlays(CHART, def, REG);
  t.deepEqual(
    overlays.map((o) => o.file),
    ["templates/grafana-pod.yaml"],
  );
  const original = await readFile(path.join(CHART, "templates/grafana-pod.yaml"), "utf8");
  t.is(
    overlays[0]?.text,
    original.replace(`image: "appropriate/curl:latest"`, `image: "10.0.0.5:5000/teleinfra/curl:latest"`),
  );
  t.not(overlays[0]?.text, original);
});

test("chartOverrides puts the pieces together, and its values pass the OpenWhisk lint", async (t) => {
  const def = await definition(DEFINITION);
  const all = await chartOverrides(CHART, def, REG);
  t.is(all.runtimes?.file, "runtimes.json");
  t.deepEqual(
    all.templates.map((o) => o.file),
    ["templates/grafana-pod.yaml"],
  );
  const chartValues = await readFile(path.join(CHART, "values.yaml"), "utf8");
  t.deepEqual(
    lintOpenWhiskValues([
      { file: "values.yaml", text: chartValues },
      { file: "override.yaml", text: all.yaml },
    ]),
    [],
  );
});

test("the same inputs give the same override bytes", async (t) => {
  const def = await definition(DEFINITION);
  const a = await chartOverrides(CHART, def, REG);
  const found = (await findChartImages(CHART)).reverse();
  const b = generateOverrides(found, def, REG);
  t.is(a.yaml, b.yaml);
});

/** The fixture's runtimes.json with the carried images' prefixes changed, as the overlay must be. */
async function expectedManifest(prefixes: {
  nodejs: string;
  java: string;
  blackbox: string;
}): Promise<string> {
  const m = JSON.parse(await readFile(path.join(CHART, "runtimes.json"), "utf8")) as {
    runtimes: Record<string, { image: { prefix: string } }[]>;
    blackboxes: { prefix: string }[];
  };
  const set = (o: { prefix: string } | undefined, prefix: string): void => {
    if (o) o.prefix = prefix;
  };
  set(m.runtimes.nodejs?.[0]?.image, prefixes.nodejs);
  set(m.runtimes.java?.[0]?.image, prefixes.java);
  set(m.blackboxes[0], prefixes.blackbox);
  return `${JSON.stringify(m, null, 4)}\n`;
}
