/**
 * Settings known to break OpenWhisk (CONTEXT.md), checked on the values Helm would use: the
 * files merged in order, later ones winning. Each finding points at the key that decides it,
 * in the file that set it, so the fix goes where the problem was written.
 */
import type { KeyPath } from "../config/yamlSource.js";
import { formatPos, type Diagnostic } from "../util/errors.js";
import {
  DEFAULT_ACTIVATION_STORE,
  ELASTICSEARCH_BACKEND,
  ELASTICSEARCH_IMAGE,
  ES_FALLBACK_MAJOR,
} from "./openwhisk.js";
import { isTree, ValuesStack } from "./values.js";

export { isOpenWhiskChart } from "./openwhisk.js";

type Rule = (v: ValuesStack) => Diagnostic[];

/** `files`: the chart's values.yaml first (for its defaults), then the override files in order. */
export function lintOpenWhiskValues(
  files: { file: string; text: string }[],
  skip: readonly string[] = [],
): Diagnostic[] {
  const stack = ValuesStack.tryParse(files);
  if (Array.isArray(stack)) return stack;
  return Object.entries(RULES)
    .filter(([name]) => !skip.includes(name))
    .flatMap(([name, rule]) => rule(stack).map((d) => ({ ...d, rule: name })));
}

/** The scheduler keeps activations in Elasticsearch; with CouchDB it crash-loops. */
const schedulerNeedsElasticSearch: Rule = (v) => {
  if (v.get(["scheduler", "enabled"]) !== true) return [];
  const backend = v.get(["activationStoreBackend"]);
  if (backend === ELASTICSEARCH_BACKEND) return [];
  const actual =
    backend === undefined
      ? `${DEFAULT_ACTIVATION_STORE} (the chart's default: activationStoreBackend is not set)`
      : `${JSON.stringify(backend)} (${formatPos(v.keyPos(["activationStoreBackend"]))})`;
  return [
    v.diag(
      ["scheduler", "enabled"],
      `the scheduler needs activationStoreBackend: ${ELASTICSEARCH_BACKEND}, but it is ${actual}; ` +
        `the scheduler crash-loops. Set activationStoreBackend: ${ELASTICSEARCH_BACKEND} and the elasticsearch settings`,
    ),
  ];
};

const SASL_KEYS = ["kafka.sasl.mechanism", "kafka.security.protocol", "kafka.sasl.jaas.config"];

/** Kafka clients need all three SASL settings or none; half of them and the scheduler cannot connect. */
const kafkaSaslComplete: Rule = (v) => {
  const found = SASL_KEYS.map((key) => ({ key, at: lookupDotted(v.data, key) }));
  const set = found.filter((f) => f.at !== undefined && isSet(f.at.value));
  const first = set[0]?.at;
  if (!first || set.length === SASL_KEYS.length) return [];
  const missing = found.filter((f) => !set.includes(f)).map((f) => f.key);
  return [
    v.diag(
      first.path,
      `Kafka SASL needs ${SASL_KEYS.slice(0, -1).join(", ")} and ${SASL_KEYS.at(-1)} set together; ` +
        `missing: ${missing.join(", ")}. ` +
        `Without all three the scheduler cannot reach Kafka`,
    ),
  ];
};

/**
 * Helm reads every number of a values file as a float and prints it with Go's %v, which turns
 * 1000000 into 1e+06: the pods' environment then holds a limit OpenWhisk cannot read.
 */
const limitsNotScientific: Rule = (v) =>
  numbersUnder(v.get(["whisk", "limits"]), ["whisk", "limits"])
    .filter(({ value }) => Math.abs(value) >= 1e6)
    .map(({ path, value }) =>
      v.diag(
        path,
        `${value} is a number, and Helm renders numbers from 1e6 up in scientific notation: the pods get ` +
          `${goFloat(value)}. Quote it: "${value}", and make the chart's values.schema.json accept strings ` +
          `there (it types whisk.limits as numbers)`,
      ),
    );

/** The chart reads the Elasticsearch major version from imageTag only for Elastic's own image name. */
const elasticsearchMajorVersion: Rule = (v) => {
  const image = v.get(["elasticsearch", "image"]);
  if (typeof image !== "string" || image.includes(ELASTICSEARCH_IMAGE)) return [];
  if (isSet(v.get(["elasticsearch", "esMajorVersionValue"]))) return [];
  const tag = v.get(["elasticsearch", "imageTag"]);
  const major = /^(\d+)\./.exec(String(tag ?? ""))?.[1];
  const fix = major
    ? `set elasticsearch.esMajorVersionValue: "${major}" (the major version of imageTag ${String(tag)})`
    : "set elasticsearch.esMajorVersionValue to the image's major version";
  return [
    v.diag(
      ["elasticsearch", "image"],
      `${JSON.stringify(image)} is not ${ELASTICSEARCH_IMAGE}, so the chart no longer takes the Elasticsearch ` +
        `major version from imageTag and assumes ${ES_FALLBACK_MAJOR}; ${fix}`,
    ),
  ];
};

/** The chart writes docker.registry.name straight before each imageName, with nothing between. */
const registryNameEndsWithSlash: Rule = (v) => {
  const name = v.get(["docker", "registry", "name"]);
  if (typeof name !== "string" || name === "" || name.endsWith("/")) return [];
  return [
    v.diag(
      ["docker", "registry", "name"],
      `${JSON.stringify(name)} must end with "/": the chart writes it straight before each imageName ` +
        `(${JSON.stringify(`${name}openwhisk/controller`)}); write ${JSON.stringify(`${name}/`)}`,
    ),
  ];
};

/** By the names `--skip-lint` takes. */
export const RULES: Record<string, Rule> = {
  "scheduler-elasticsearch": schedulerNeedsElasticSearch,
  "kafka-sasl": kafkaSaslComplete,
  "limits-notation": limitsNotScientific,
  "elasticsearch-major": elasticsearchMajorVersion,
  "registry-name-slash": registryNameEndsWithSlash,
};

/** Unset, null, "", 0 and false are all false to a Helm `if`. */
function isSet(v: unknown): boolean {
  return v !== undefined && v !== null && v !== "" && v !== 0 && v !== false;
}

/**
 * `kafka.sasl.jaas.config` however it is written: nested maps, or keys that hold dots the way
 * Kafka property names do (`kafka: {"sasl.jaas.config": …}`). Longer keys are tried first.
 */
function lookupDotted(node: unknown, dotted: string): { value: unknown; path: KeyPath } | undefined {
  const walk = (
    cur: unknown,
    segs: string[],
    at: string[],
  ): { value: unknown; path: KeyPath } | undefined => {
    if (segs.length === 0) return { value: cur, path: at };
    if (!isTree(cur)) return undefined;
    for (let n = segs.length; n >= 1; n--) {
      const key = segs.slice(0, n).join(".");
      const hit = Object.hasOwn(cur, key) ? walk(cur[key], segs.slice(n), [...at, key]) : undefined;
      if (hit) return hit;
    }
    return undefined;
  };
  return walk(node, dotted.split("."), []);
}

function numbersUnder(node: unknown, at: KeyPath): { path: KeyPath; value: number }[] {
  if (typeof node === "number") return [{ path: at, value: node }];
  if (!isTree(node)) return [];
  return Object.entries(node).flatMap(([key, child]) => numbersUnder(child, [...at, key]));
}

/** Go's %v of a float64 from 1e6 up: the shortest digits, an exponent of at least two digits. */
function goFloat(n: number): string {
  return n.toExponential().replace(/e([+-])(\d)$/, "e$10$2");
}
