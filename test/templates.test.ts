/** Templates rendered at prepare (no site values), kept for upload (site values), and their helpers. */
import test from "ava";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { renderTemplate } from "../src/templates/render.js";
import { InputError } from "../src/util/errors.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import type { Lock } from "../src/bundle/lock.js";

const origin = { file: "t.tpl", line: 1, col: 1 };
const dest = { kind: "file" as const, path: "x.yml" };

test("helpers: json, yaml, default, quote, indent; no HTML escaping", (t) => {
  const text = [
    "a: {{json list}}",
    "b: {{quote limit}}",
    "c: {{default empty 'fallback'}}",
    "d: |\n  {{indent 2 (yaml nested)}}",
    "e: {{url}}",
  ].join("\n");
  const out = renderTemplate(
    { syntax: "handlebars", text, origin, dest },
    { list: [1, "x"], limit: 100000, empty: "", nested: { k: "v", n: [1, 2] }, url: "http://a/?b=c&d=<e>" },
  );
  t.is(
    out,
    'a: [1,"x"]\nb: "100000"\nc: fallback\nd: |\n  k: v\n  n:\n    - 1\n    - 2\ne: http://a/?b=c&d=<e>',
  );
});

test("strict mode: a missing value is an error naming the template and the line, never an empty string", (t) => {
  const err = t.throws(
    () =>
      renderTemplate(
        { syntax: "handlebars", text: "a: 1\nb: {{nope}}\n", origin: { ...origin, line: 10 }, dest },
        {},
      ),
    { instanceOf: InputError },
  );
  t.regex(err?.message ?? "", /^t\.tpl:11 rendering the template for files\/x\.yml: "nope" not defined/);
});

test("Telego ${name} expands values recursively, and reports a missing one", (t) => {
  const values = { outer: "x=${inner}", inner: "${IMG_REPO}/teleinfra", IMG_REPO: "10.0.0.5:5000" };
  t.is(
    renderTemplate({ syntax: "dollar", text: "${outer}!", origin, dest }, values),
    "x=10.0.0.5:5000/teleinfra!",
  );
  t.throws(() => renderTemplate({ syntax: "dollar", text: "${gone}", origin, dest }, {}), {
    message: /missing value "gone"/,
  });
  t.throws(() => renderTemplate({ syntax: "dollar", text: "${a}", origin, dest }, { a: "${b}", b: "${a}" }), {
    message: /refers to itself/,
  });
});

test("prepare renders a template without site values, in value order: definition, --values, --set", async (t) => {
  const { dir, cleanup } = await tempFiles({
    "bundle.yml": [
      "values: { a: def, b: def, c: def }",
      "templates:",
      "  - source: t.yml",
      "    dest: files/conf/t.yml",
      "  - source: site.yml",
      "    dest: files/site.yml",
      "  - source: run.sh",
      "    dest: charts/tools/bin/run.sh",
      '    mode: "0755"',
      "charts:",
      "  - name: tools",
      "    path: chart",
    ].join("\n"),
    "t.yml": "a={{a}} b={{b}} c={{c}}\n",
    "site.yml": "registry: {{IMG_REPO}}\n",
    "run.sh": "#!/bin/sh\necho {{a}}\n",
    "more.yml": "b: values\nc: values\n",
    "chart/Chart.yaml": "apiVersion: v2\nname: tools\nversion: 0.1.0\n",
  });
  t.teardown(cleanup);
  const out = path.join(dir, "out");
  const r = await runCli(["prepare", "-o", out, "--values", "more.yml", "--set", "c=set"], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  t.is(await readFile(path.join(out, "files", "conf", "t.yml"), "utf8"), "a=def b=values c=set\n");
  t.is(await readFile(path.join(out, "charts", "tools", "bin", "run.sh"), "utf8"), "#!/bin/sh\necho def\n");
  t.is(
    (await stat(path.join(out, "charts", "tools", "bin", "run.sh"))).mode & 0o777,
    0o755,
    "the overlay keeps its mode",
  );
  t.is(
    await readFile(path.join(out, "charts", "tools", "Chart.yaml"), "utf8"),
    "apiVersion: v2\nname: tools\nversion: 0.1.0\n",
  );
  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  t.deepEqual(
    lock.files.map((f) => f.path),
    ["conf/t.yml"],
  );
  t.deepEqual(
    lock.templates.map((x) => [x.dest, x.source, x.siteValues]),
    [["files/site.yml", "templates/files/site.yml", ["IMG_REPO"]]],
    "a template that needs a site value waits for upload",
  );
  t.is(await readFile(path.join(out, "templates", "files", "site.yml"), "utf8"), "registry: {{IMG_REPO}}\n");
  t.deepEqual(JSON.parse(await readFile(path.join(out, "templates", "values.json"), "utf8")), {
    a: "def",
    b: "values",
    c: "set",
  });
});

test("prepare stops on a missing value, naming template, line and value, and writes no lock", async (t) => {
  const { dir, cleanup } = await tempFiles({
    "bundle.yml": "templates:\n  - source: t.yml\n    dest: files/t.yml\n",
    "t.yml": "ok: 1\nhost: {{ingress_ip}}\n",
  });
  t.teardown(cleanup);
  const r = await runCli(["prepare", "-o", path.join(dir, "out")], { cwd: dir });
  t.is(r.code, 2);
  t.regex(r.stderr, /t\.yml:2:9 missing value "ingress_ip" \(used by the template for files\/t\.yml\)/);
  await t.throwsAsync(stat(path.join(dir, "out", "bundle.lock.json")));
});
