/** `bundle lint`'s OpenWhisk rules: each one failing with its exact message and place, and passing. */
import test from "ava";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { isOpenWhiskChart, lintOpenWhiskValues } from "../src/charts/lint.js";
import { formatDiagnostic } from "../src/util/errors.js";
import { REPO, tempFiles } from "./helpers/cli.js";

const DIR = path.join(REPO, "test/fixtures/lint-openwhisk");

/** Lints the named fixture files in order (the chart's values.yaml first when given) → formatted lines. */
async function lint(...names: string[]): Promise<string[]> {
  const files = await Promise.all(
    names.map(async (file) => ({ file, text: await readFile(path.join(DIR, file), "utf8") })),
  );
  return lintOpenWhiskValues(files).map(formatDiagnostic);
}

test("the chart's defaults alone lint cleanly", async (t) => {
  t.deepEqual(await lint("values.yaml"), []);
});

test("scheduler with CouchDB: points at scheduler.enabled and names where CouchDB was set", async (t) => {
  t.deepEqual(await lint("values.yaml", "scheduler-on.yaml"), [
    'scheduler-on.yaml:2:3 scheduler.enabled: the scheduler needs activationStoreBackend: ElasticSearch, but it is "CouchDB" (values.yaml:14:1); the scheduler crash-loops. Set activationStoreBackend: ElasticSearch and the elasticsearch settings',
  ]);
});

test("scheduler with activationStoreBackend unset: the chart's default CouchDB counts", async (t) => {
  t.deepEqual(await lint("scheduler-on.yaml"), [
    "scheduler-on.yaml:2:3 scheduler.enabled: the scheduler needs activationStoreBackend: ElasticSearch, but it is CouchDB (the chart's default: activationStoreBackend is not set); the scheduler crash-loops. Set activationStoreBackend: ElasticSearch and the elasticsearch settings",
  ]);
});

test("scheduler with ElasticSearch passes", async (t) => {
  t.deepEqual(await lint("values.yaml", "scheduler-elasticsearch.yaml"), []);
});

test("half-set Kafka SASL names the keys still missing", async (t) => {
  t.deepEqual(await lint("values.yaml", "kafka-sasl-partial.yaml"), [
    "kafka-sasl-partial.yaml:3:5 kafka.sasl.mechanism: Kafka SASL needs kafka.sasl.mechanism, kafka.security.protocol and kafka.sasl.jaas.config set together; missing: kafka.security.protocol, kafka.sasl.jaas.config. Without all three the scheduler cannot reach Kafka",
  ]);
});

test("complete Kafka SASL passes, written as Kafka's flat property keys", async (t) => {
  t.deepEqual(await lint("values.yaml", "kafka-sasl-complete.yaml"), []);
});

test("complete Kafka SASL passes when spread over two files, nested", async (t) => {
  const nested = (file: string, text: string) => ({ file, text });
  t.deepEqual(
    lintOpenWhiskValues([
      nested("a.yaml", "kafka:\n  sasl:\n    mechanism: PLAIN\n    jaas:\n      config: x\n"),
      nested("b.yaml", "kafka:\n  security:\n    protocol: SASL_SSL\n"),
    ]),
    [],
  );
});

test("unquoted limits of 1e6 and more are errors, with what the pods would get and the fix", async (t) => {
  t.deepEqual(await lint("values.yaml", "limits-large.yaml"), [
    'limits-large.yaml:3:5 whisk.limits.actionsInvokesPerminute: 1000000 is a number, and Helm renders numbers from 1e6 up in scientific notation: the pods get 1e+06. Quote it: "1000000", and make the chart\'s values.schema.json accept strings there (it types whisk.limits as numbers)',
    'limits-large.yaml:5:5 whisk.limits.triggersFiresPerminute: 2500000 is a number, and Helm renders numbers from 1e6 up in scientific notation: the pods get 2.5e+06. Quote it: "2500000", and make the chart\'s values.schema.json accept strings there (it types whisk.limits as numbers)',
  ]);
});

test("a later file quoting the limits wins over the earlier numbers", async (t) => {
  t.deepEqual(await lint("values.yaml", "limits-large.yaml", "limits-quoted.yaml"), []);
});

test("a mirrored Elasticsearch image without esMajorVersionValue is an error naming the version", async (t) => {
  t.deepEqual(await lint("values.yaml", "es-mirrored.yaml"), [
    'es-mirrored.yaml:2:3 elasticsearch.image: "10.0.0.5:5000/teleinfra/elasticsearch" is not docker.elastic.co/elasticsearch/elasticsearch, so the chart no longer takes the Elasticsearch major version from imageTag and assumes 7; set elasticsearch.esMajorVersionValue: "6" (the major version of imageTag 6.7.2)',
  ]);
});

test("a mirrored Elasticsearch image with esMajorVersionValue passes", async (t) => {
  t.deepEqual(await lint("values.yaml", "es-mirrored.yaml", "es-major.yaml"), []);
});

test("docker.registry.name without its trailing slash is an error", async (t) => {
  t.deepEqual(await lint("values.yaml", "registry-no-slash.yaml"), [
    'registry-no-slash.yaml:3:5 docker.registry.name: "10.0.0.5:5000" must end with "/": the chart writes it straight before each imageName ("10.0.0.5:5000openwhisk/controller"); write "10.0.0.5:5000/"',
  ]);
  t.deepEqual(
    lintOpenWhiskValues([{ file: "ok.yaml", text: 'docker:\n  registry:\n    name: "10.0.0.5:5000/"\n' }]),
    [],
  );
});

test("several rules at once, each in the file that set its key", async (t) => {
  t.deepEqual(
    (await lint("values.yaml", "scheduler-on.yaml", "es-mirrored.yaml", "limits-large.yaml")).map(
      (l) => l.split(": ")[0],
    ),
    [
      "scheduler-on.yaml:2:3 scheduler.enabled",
      "limits-large.yaml:3:5 whisk.limits.actionsInvokesPerminute",
      "limits-large.yaml:5:5 whisk.limits.triggersFiresPerminute",
      "es-mirrored.yaml:2:3 elasticsearch.image",
    ],
  );
});

test("a YAML syntax error is reported at its line instead of the rules", (t) => {
  t.deepEqual(
    lintOpenWhiskValues([{ file: "bad.yaml", text: "scheduler:\n  enabled: [true\n" }]).map((d) => d.pos),
    [{ file: "bad.yaml", line: 3, col: 1 }],
  );
});

test("isOpenWhiskChart: by Chart.yaml's name, or by the shape of values.yaml", async (t) => {
  t.true(await isOpenWhiskChart(path.join(REPO, "test/fixtures/chart-openwhisk-like")));
  const named = await tempFiles({ "Chart.yaml": "name: openwhisk\nversion: 1.0.0\n" });
  const other = await tempFiles({
    "Chart.yaml": "name: redis\nversion: 1.0.0\n",
    "values.yaml": "image:\n  repository: redis\n  tag: '7.2'\n",
  });
  try {
    t.true(await isOpenWhiskChart(named.dir));
    t.false(await isOpenWhiskChart(other.dir));
  } finally {
    await named.cleanup();
    await other.cleanup();
  }
});
