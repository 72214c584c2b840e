/**
 * What `bundle` knows about the OpenWhisk chart (apache/openwhisk-deploy-kube, helm/openwhisk),
 * read from its templates: these facts drive image discovery, overrides and lint, so they live
 * in one place with the template that makes each one true.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "yaml";
import { readChartFile } from "./metadata.js";
import { getIn, isTree, type ValuesStack } from "./values.js";

/** values.yaml: `activationStoreBackend: "CouchDB"`; templates compare it to "ElasticSearch" exactly. */
export const DEFAULT_ACTIVATION_STORE = "CouchDB";
export const ELASTICSEARCH_BACKEND = "ElasticSearch";

/**
 * `elasticsearch.esMajorVersion` in _helpers.tpl: esMajorVersionValue if set, else the first
 * number of imageTag, but only when `elasticsearch.image` contains this string; otherwise 7.
 */
export const ELASTICSEARCH_IMAGE = "docker.elastic.co/elasticsearch/elasticsearch";
export const ES_FALLBACK_MAJOR = 7;

/** `whisk.runtimes` names the manifest file; `.Files.Get` reads it from the chart's root. */
export const DEFAULT_RUNTIMES_FILE = "runtimes.json";

/**
 * Components whose pods a template renders only under a condition other than their own
 * `enabled`/`external` keys: etcd-pod.yaml needs `scheduler.enabled`, elasticsearch-pod.yaml
 * needs `activationStoreBackend: ElasticSearch`, grafana-pod.yaml needs one of the metrics flags.
 */
const GATES: Record<string, (v: ValuesStack) => boolean> = {
  scheduler: (v) => v.get(["scheduler", "enabled"]) === true,
  etcd: (v) => v.get(["scheduler", "enabled"]) === true,
  elasticsearch: (v) => v.get(["activationStoreBackend"]) === ELASTICSEARCH_BACKEND,
  grafana: (v) =>
    v.get(["metrics", "prometheusEnabled"]) === true || v.get(["metrics", "userMetricsEnabled"]) === true,
};

/** False when the top-level component at `component` is gated off by the chart's templates. */
export function openWhiskGate(v: ValuesStack, component: string | number | undefined): boolean {
  const gate = typeof component === "string" ? GATES[component] : undefined;
  return gate ? gate(v) : true;
}

/** Values shaped like OpenWhisk's: `whisk`, `docker.registry` and imageName components. */
export function looksLikeOpenWhiskValues(values: unknown): boolean {
  return (
    isTree(getIn(values, ["whisk"])) &&
    isTree(getIn(values, ["docker", "registry"])) &&
    typeof getIn(values, ["controller", "imageName"]) === "string" &&
    typeof getIn(values, ["invoker", "imageName"]) === "string"
  );
}

/** By Chart.yaml's name, or by the shape of values.yaml for a renamed copy of the chart. */
export async function isOpenWhiskChart(chartDir: string): Promise<boolean> {
  const file = path.join(chartDir, "Chart.yaml");
  // Missing or broken: the caller's own checks name the file.
  const chart = await readChartFile("Chart.yaml", file, { where: file }).catch(() => undefined);
  if (chart?.name === "openwhisk") return true;
  return looksLikeOpenWhiskValues(await readYaml(path.join(chartDir, "values.yaml")));
}

async function readYaml(file: string): Promise<unknown> {
  try {
    return parse(await readFile(file, "utf8")) as unknown;
  } catch {
    return undefined; // missing or broken: the caller's own checks name the file
  }
}
