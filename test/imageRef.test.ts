import test from "ava";
import { formatImageRef, parseImageRef } from "../src/config/imageRef.js";
import { InputError } from "../src/util/errors.js";

const normalised: [string, string][] = [
  ["redis", "docker.io/library/redis:latest"],
  ["redis:4.0", "docker.io/library/redis:4.0"],
  ["wurstmeister/kafka:2.12-2.3.1", "docker.io/wurstmeister/kafka:2.12-2.3.1"],
  ["index.docker.io/library/busybox:latest", "docker.io/library/busybox:latest"],
  ["docker.io/busybox", "docker.io/library/busybox:latest"],
  ["localhost/app", "localhost/app:latest"],
  ["localhost:5000/team/app:1.0", "localhost:5000/team/app:1.0"],
  ["127.0.0.1:5000/app@sha256:" + "a".repeat(64), "127.0.0.1:5000/app@sha256:" + "a".repeat(64)],
  ["quay.io/coreos/etcd:v3.4.0", "quay.io/coreos/etcd:v3.4.0"],
  ["nginx:1.21.1@sha256:" + "b".repeat(64), "docker.io/library/nginx:1.21.1@sha256:" + "b".repeat(64)],
  [
    "docker.elastic.co/elasticsearch/elasticsearch:6.7.2",
    "docker.elastic.co/elasticsearch/elasticsearch:6.7.2",
  ],
  ["a__b/c-d.e:Tag_1.x", "docker.io/a__b/c-d.e:Tag_1.x"],
];

for (const [input, expected] of normalised) {
  test(`normalises ${input}`, (t) => {
    t.is(formatImageRef(parseImageRef(input)), expected);
  });
}

const invalid: [string, RegExp][] = [
  ["", /empty/],
  ["Redis", /repository part "Redis" must be lowercase/],
  ["redis:", /tag "" may hold only/],
  ["redis:-x", /tag "-x"/],
  ["redis@sha256:abc", /digest "sha256:abc"/],
  ["redis@md5:" + "a".repeat(32), /digest/],
  ["a//b", /repository part ""/],
  ["my_registry:5000/app", /repository part "my_registry:5000"|registry/],
  ["redis:" + "x".repeat(129), /at most 128/],
];

for (const [input, why] of invalid) {
  test(`refuses ${JSON.stringify(input.slice(0, 30))}`, (t) => {
    const err = t.throws(() => parseImageRef(input), { instanceOf: InputError });
    t.regex(err?.message ?? "", why);
  });
}
