/** The audit's readers, line by line and as values: what counts as reaching outside the site. */
import test from "ava";
import { ImageJudge, parseValuesFile } from "../src/audit/references.js";
import { scanText, styleOf } from "../src/audit/scan.js";
import { makeSite } from "../src/audit/site.js";
import type { Lock } from "../src/bundle/lock.js";

const site = makeSite({ registryHost: "10.0.0.5:5000", fileserverUrl: "http://10.0.0.5:8003" });
const lock = {
  images: [
    {
      ref: "docker.io/library/redis:4.0",
      digest: `sha256:${"a".repeat(64)}`,
      mirrorDigest: `sha256:${"a".repeat(64)}`,
      platforms: [],
      mirror: "teleinfra/redis:4.0",
    },
  ],
} as unknown as Lock;
const judge = new ImageJudge(lock, site);

/** `line kind text` for each finding of `text` read as the bundle file `file`. */
function scan(file: string, text: string): string[] {
  return scanText(text, styleOf(file), { site, judge }).map((f) => `${f.line} ${f.kind} ${f.text}`);
}

test("comments do not run: whole-line and trailing # comments, Helm and block comments", (t) => {
  t.deepEqual(
    scan(
      "files/x.sh",
      [
        "# git clone https://github.com/a/b",
        "  # curl https://example.com/a",
        "curl https://example.com/b # see https://example.com/c",
        'echo "not a # comment https://example.com/d"',
      ].join("\n"),
    ),
    ["3 url https://example.com/b", "4 url https://example.com/d"],
  );
  t.deepEqual(
    scan("charts/c/templates/x.yaml", '{{/*\n  https://example.com/a\n*/}}\nurl: "https://example.com/b"'),
    ["4 url https://example.com/b"],
  );
  t.deepEqual(scan("charts/c/files/x.js", "// https://example.com/a\n/* https://example.com/b\n*/ x"), []);
  // JSON has no comments: a `#` there is data.
  t.deepEqual(scan("files/x.json", '{"u": "https://example.com/#/a"}'), ["1 url https://example.com/#/a"]);
});

test("inside the site: registry, file server, loopback, in-cluster names; templated hosts are skipped", (t) => {
  t.deepEqual(
    scan(
      "files/x.sh",
      [
        "curl http://10.0.0.5:8003/demo/a.tgz",
        "curl http://10.0.0.5/other",
        "curl http://localhost:8080/ http://127.0.0.1/ http://[::1]:80/",
        "curl http://db.ns.svc:5984 http://db.ns.svc.cluster.local http://controller:8080/ping",
        "curl http://{{ .Release.Name }}-controller:8080 http://$HOST/x",
        "curl https://github.com/{{ .Values.org }}/x http://example.com:{{ .Values.port }}/x",
        "curl http://192.168.1.10/x",
      ].join("\n"),
    ),
    [
      "2 url http://10.0.0.5/other",
      "6 url https://github.com/",
      "6 url http://example.com",
      "7 url http://192.168.1.10/x",
    ],
  );
});

test("the file server's host on another port is not the file server", (t) => {
  const findings = scanText("curl http://10.0.0.5:9000/demo/a.tgz\n", styleOf("files/x.sh"), { site, judge });
  t.is(findings.length, 1);
  t.is(
    findings[0]?.why,
    "the site serves 10.0.0.5 on port 5000 and 8003, not 9000: nothing of the bundle is there; use the file server's URL",
  );
});

test("identifiers are not downloads: XML namespaces, JSON schemas, licence URLs", (t) => {
  t.deepEqual(
    scan(
      "files/x.json",
      [
        '{"$schema": "http://json-schema.org/draft-07/schema#",',
        ' "$id": "https://schemas.example.com/demo.json",',
        ' "xml": "<a xmlns=\\"http://example.com/ns\\" xmlns:x=\\"urn:x\\"/>",',
        ' "license": "https://www.apache.org/licenses/LICENSE-2.0",',
        ' "w3": "http://www.w3.org/2001/XMLSchema-instance"}',
      ].join("\n"),
    ),
    [],
  );
});

test("git clones, package registries and plain downloads are told apart", (t) => {
  t.deepEqual(
    scan(
      "files/x.sh",
      [
        "until git clone https://github.com/apache/openwhisk /openwhisk",
        "git clone --depth 1 git@github.com:apache/openwhisk-catalog.git",
        "npm install https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
        "curl -O https://files.pythonhosted.org/packages/x.whl",
        "curl -fsSL https://raw.githubusercontent.com/a/b/main/dash.json",
        "curl --silent $DB_PROTOCOL://$DB_HOST:$DB_PORT/_utils",
      ].join("\n"),
    ),
    [
      "1 git-clone https://github.com/apache/openwhisk",
      "2 git-clone git@github.com:apache/openwhisk-catalog.git",
      "3 package-registry https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
      "4 package-registry https://files.pythonhosted.org/packages/x.whl",
      "5 url https://raw.githubusercontent.com/a/b/main/dash.json",
    ],
  );
});

test("package installs without a URL: which reach a public registry and which do not", (t) => {
  t.deepEqual(
    scan(
      "charts/c/templates/job.yaml",
      [
        'command: ["npm", "install"]',
        "- cd /x && npm ci && npm run build",
        "- pip3 --no-cache-dir install -r requirements.txt",
        "- apk add --no-cache git; yum -y install gcc",
        "- npm install --offline",
        "- pip install --no-index --find-links /wheels flask",
        "- apt-get install -y ./tool.deb /tmp/other.deb",
        "- pip install --index-url http://10.0.0.5:8003/pypi flask",
        "description: run the tests",
      ].join("\n"),
    ),
    [
      "1 package-registry npm install",
      "2 package-registry npm ci",
      "3 package-registry pip3 --no-cache-dir install -r requirements.txt",
      "4 package-registry apk add --no-cache git",
      "4 package-registry yum -y install gcc",
    ],
  );
});

test("image: lines: hard-coded references are judged, templated ones only where the text names them", (t) => {
  t.deepEqual(
    scan(
      "charts/c/templates/pod.yaml",
      [
        'image: "appropriate/curl:latest"',
        "  - image: redis:4.0 # carried",
        "image: 10.0.0.5:5000/teleinfra/redis:4.0",
        'image: "{{ .Values.docker.registry.name }}{{ .Values.x.imageName }}:{{ .Values.x.imageTag }}"',
        'image: "quay.io/org/{{ .Values.name }}:1"',
        'image: "busybox:{{ .Values.tag }}"',
        'image: "10.0.0.5:5000/teleinfra/{{ .Values.name }}"',
        "image: ${IMG_REPO}/teleinfra/x:1",
        "image:",
      ].join("\n"),
    ),
    [
      "1 image appropriate/curl:latest",
      "2 image redis:4.0",
      "5 image quay.io/org/{{ .Values.name }}:1",
      "6 image busybox:{{ .Values.tag }}",
    ],
  );
  t.regex(judge.judge("redis:4.0") ?? "", /point it at the mirror 10\.0\.0\.5:5000\/teleinfra\/redis:4\.0$/);
  t.regex(judge.judge(`redis@sha256:${"a".repeat(64)}`) ?? "", /^carried in the bundle/);
  t.regex(judge.judge("redis:5.0") ?? "", /^docker\.io\/library\/redis:5\.0 is neither on the site registry/);
  t.regex(judge.judge("quay.io/org/{{ .Values.name }}:1") ?? "", /^hard-coded registry quay\.io/);
  t.is(judge.judge("localhost:5000/x:1"), undefined);
});

test("values files: imageName + imageTag, image + imageTag, image maps, runtimes manifests", (t) => {
  const values = parseValuesFile(
    [
      "docker:",
      "  registry:",
      '    name: "mirror.example.com/"',
      "kafka:",
      "  imageName: wurstmeister/kafka",
      "  imageTag: 2.12-2.3.1",
      "redis:",
      "  imageName: redis",
      "  imageTag: 4.0",
      "elasticsearch:",
      "  image: docker.elastic.co/elasticsearch/elasticsearch",
      "  imageTag: 6.7.2",
      "etcd:",
      "  image:",
      "    registry: quay.io",
      "    repository: coreos/etcd",
      "    tag: v3.4.0",
      "runtimes:",
      "  java:",
      "    - image: { prefix: openwhisk, name: java8action, tag: 1.17.0 }",
      "blackboxes:",
      "  - prefix: openwhisk",
      "    name: dockerskeleton",
      "    tag: 1.14.0",
    ].join("\n"),
  );
  t.deepEqual(
    values?.images.map((c) => `${c.line} ${c.text} ${c.path?.join(".") ?? ""}`),
    [
      "5 mirror.example.com/wurstmeister/kafka:2.12-2.3.1 kafka.imageName",
      "8 mirror.example.com/redis:4.0 redis.imageName",
      "11 docker.elastic.co/elasticsearch/elasticsearch:6.7.2 elasticsearch.image",
      "16 quay.io/coreos/etcd:v3.4.0 etcd.image.repository",
      "20 openwhisk/java8action:1.17.0 runtimes.java.0.image.prefix",
      "22 openwhisk/dockerskeleton:1.14.0 blackboxes.0.prefix",
    ],
  );
  t.deepEqual(values?.linePaths.get(9), ["redis", "imageTag"]);
  // A Helm template is not a values file.
  t.is(parseValuesFile("a: {{ .Values.x }}\n  b: [\n"), undefined);
});
