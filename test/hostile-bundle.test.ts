/**
 * Hostile bundles and definitions (issue 11): the lock covers every byte (the template values
 * and the templates too, so a signature does), a link in a bundle that leads outside it is never
 * read through, and a definition's template sources and local charts stay inside its folder
 * unless the user says `--allow-outside`. Each case runs the CLI as a user would and checks the
 * exit code, the message, and that a canary folder beside the bundle is untouched.
 */
import test, { type ExecutionContext } from "ava";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { runCli, tempFiles } from "./helpers/cli.js";
import { opensslKeyPair } from "./helpers/keys.js";
import { snapshot } from "./helpers/gitBundle.js";
import { startFileServer } from "../src/fileserver/server.js";
import type { Lock } from "../src/bundle/lock.js";

const sha = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");
const CANARY = "canary-secret-4711\n";
const TOKEN = "hostile-t0ken";

interface Bed {
  root: string;
  bundle: string;
  canary: string;
  /** Where the test's file server keeps what it receives. */
  served: string;
  serverUrl: string;
}

/** Every file's bytes under `dir` (none when it does not exist). */
async function contents(dir: string): Promise<string[]> {
  const files = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return Promise.all(
    files.filter((e) => e.isFile()).map((e) => readFile(path.join(e.parentPath, e.name), "utf8")),
  );
}

/**
 * A signed bundle prepared through the CLI: `files/conf.txt` rendered at prepare, the template
 * `templates/files/site.txt` kept for upload (it needs FILESERVER_URL), and `templates/values.json`.
 * A file server runs on 127.0.0.1 for uploads; a canary folder sits beside the bundle.
 */
async function signedBed(t: ExecutionContext): Promise<Bed> {
  const keys = opensslKeyPair();
  const { dir: root, cleanup } = await tempFiles(
    {
      "def/bundle.yml": [
        "name: demo",
        "values: { greeting: hello }",
        "templates:",
        "  - source: conf.txt",
        "    dest: files/conf.txt",
        "  - source: site.txt",
        "    dest: files/site.txt",
      ].join("\n"),
      "def/conf.txt": "greeting={{greeting}}\n",
      "def/site.txt": "url={{FILESERVER_URL}} {{greeting}}\n",
      "canary/secret.txt": CANARY,
      "sign.pem": keys.privateKeyPem,
      "sign.pub": keys.publicKeyPem,
      token: `${TOKEN}\n`,
    },
    "site",
  );
  t.teardown(cleanup);
  const bundle = path.join(root, "bundle");
  const r = await runCli(["prepare", "-f", "def/bundle.yml", "-o", bundle, "--sign-key", "sign.pem"], {
    cwd: root,
  });
  t.is(r.code, 0, r.stderr);
  const served = path.join(root, "served");
  const server = await startFileServer({
    root: served,
    host: "127.0.0.1",
    port: 0,
    token: TOKEN,
    log: () => {},
  });
  t.teardown(() => server.close());
  return { root, bundle, canary: path.join(root, "canary"), served, serverUrl: server.url };
}

const upload = (b: Bed, where = b.bundle, ...more: string[]) =>
  runCli(["upload", where, "--fileserver", b.serverUrl, "--token-file", "token", ...more], { cwd: b.root });

/** Replaces `from` (which must be there) with `to` of the same length in a bundle file. */
async function change(file: string, from: string, to: string): Promise<void> {
  const text = await readFile(file, "utf8");
  if (!text.includes(from)) throw new Error(`${file} does not hold ${from}`);
  await writeFile(file, text.replace(from, to));
}

const noStack = (t: ExecutionContext, stderr: string) =>
  t.false(/TypeError|\n\s+at /.test(stderr), `no stack trace: ${stderr}`);

test("the signed test bed verifies and uploads: the hostile cases fail for their one change", async (t) => {
  const b = await signedBed(t);
  const lock = JSON.parse(await readFile(path.join(b.bundle, "bundle.lock.json"), "utf8")) as Lock;
  const values = await readFile(path.join(b.bundle, "templates", "values.json"));
  t.is(lock.values, "templates/values.json");
  t.is(lock.valuesSha256, sha(values), "the lock holds the values file's sha256");
  t.is(lock.valuesSize, values.length);
  const v = await runCli(["verify", b.bundle, "--public-key", "sign.pub"], { cwd: b.root });
  t.is(v.code, 0, v.stderr);
  t.regex(v.stderr, /the lock's signature verifies with sign\.pub/);
  t.regex(v.stdout, /bundle ok: 0 blobs and 3 files checked/);
  const u = await upload(b, b.bundle, "--public-key", "sign.pub");
  t.is(u.code, 0, u.stderr);
  t.regex(u.stderr, /the charts, templates and values match it/);
  t.is(await readFile(path.join(b.served, "demo", "conf.txt"), "utf8"), "greeting=hello\n");
});

test("templates/values.json changed after signing: verify, upload, deploy and unpack refuse it, naming it", async (t) => {
  const b = await signedBed(t);
  const archive = path.join(b.root, "signed.tar");
  await change(path.join(b.bundle, "templates", "values.json"), "hello", "HELLO");
  const before = await snapshot(b.canary);

  // The signature holds (the lock is as signed); the values file is not what it names.
  const signed = await runCli(["verify", b.bundle, "--public-key", "sign.pub"], { cwd: b.root });
  t.is(signed.code, 1, signed.stderr);
  t.regex(
    signed.stdout,
    /^mismatch: templates\/values\.json: expected \d+ bytes with sha256 [0-9a-f]{64}, got \d+ bytes/m,
  );
  t.regex(signed.stdout, /bundle NOT ok: 1 problem;/);
  noStack(t, signed.stderr);

  const plain = await runCli(["verify", b.bundle], { cwd: b.root });
  t.is(plain.code, 1, plain.stderr);
  t.regex(plain.stdout, /^mismatch: templates\/values\.json: /m);

  const up = await upload(b, b.bundle, "--public-key", "sign.pub");
  t.is(up.code, 1, up.stderr);
  t.regex(
    up.stderr,
    /the bundle differs from the signed lock; nothing was done:\n {2}- mismatch: templates\/values\.json: expected/,
  );
  // Without the key the values file is still checked before it is used.
  const upPlain = await upload(b);
  t.is(upPlain.code, 1, upPlain.stderr);
  t.regex(
    upPlain.stderr,
    /templates\/values\.json: \d+ bytes with sha256 [0-9a-f]{64}, the lock says .*changed after prepare/,
  );
  t.deepEqual(await contents(b.served), [], "nothing reached the file server");

  const dep = await runCli(["deploy", b.bundle, "--dry-run", "--fileserver", b.serverUrl], { cwd: b.root });
  t.is(dep.code, 1, dep.stderr);
  t.regex(dep.stderr, /templates\/values\.json: .*changed after prepare/);

  const pack = await runCli(["pack", b.bundle, archive], { cwd: b.root });
  t.is(pack.code, 0, pack.stderr);
  const out = path.join(b.root, "unpacked");
  const un = await runCli(["unpack", archive, out], { cwd: b.root });
  t.is(un.code, 1, un.stderr);
  t.regex(
    un.stderr,
    /member templates\/values\.json of .*signed\.tar is corrupt: sha256 [0-9a-f]{64}, expected [0-9a-f]{64}/,
  );
  t.false(
    await stat(out).then(
      () => true,
      () => false,
    ),
    "nothing unpacked under the folder's name",
  );
  const upArchive = await upload(b, archive, "--public-key", "sign.pub");
  t.is(upArchive.code, 1, upArchive.stderr);
  t.regex(upArchive.stderr, /templates\/values\.json/);
  t.deepEqual(await snapshot(b.canary), before, "the canary is untouched");
});

test("a template changed after signing: verify and upload with --public-key refuse it, naming it", async (t) => {
  const b = await signedBed(t);
  await change(path.join(b.bundle, "templates", "files", "site.txt"), "url=", "rm=");
  const v = await runCli(["verify", b.bundle, "--public-key", "sign.pub"], { cwd: b.root });
  t.is(v.code, 1, v.stderr);
  t.regex(v.stdout, /^mismatch: templates\/files\/site\.txt: expected sha256 [0-9a-f]{64}, got \d+ bytes/m);
  const u = await upload(b, b.bundle, "--public-key", "sign.pub");
  t.is(u.code, 1, u.stderr);
  t.regex(
    u.stderr,
    /the bundle differs from the signed lock; nothing was done:\n.*templates\/files\/site\.txt/,
  );
  noStack(t, u.stderr);
  t.deepEqual(await contents(b.served), [], "nothing reached the file server");
});

test("a link in files/ to a canary outside, with the lock saying the canary's digest: verify and upload refuse to read it", async (t) => {
  const b = await signedBed(t);
  // An attacker without the key rewrites the lock to match the canary and drops the signature.
  const lockFile = path.join(b.bundle, "bundle.lock.json");
  const lock = JSON.parse(await readFile(lockFile, "utf8")) as Lock;
  const entry = lock.files.find((f) => f.path === "conf.txt");
  if (!entry) return t.fail("no conf.txt in the lock");
  Object.assign(entry, { size: Buffer.byteLength(CANARY), sha256: sha(CANARY) });
  await writeFile(lockFile, JSON.stringify(lock, null, 2));
  await rm(`${lockFile}.sig`);
  const link = path.join(b.bundle, "files", "conf.txt");
  await rm(link);
  await symlink(path.join(b.canary, "secret.txt"), link);
  const before = await snapshot(b.canary);

  const v = await runCli(["verify", b.bundle], { cwd: b.root });
  t.is(v.code, 1, v.stderr);
  t.regex(
    v.stdout,
    /^mismatch: files\/conf\.txt: .*files\/conf\.txt: a link in its path leads outside .*bundle; it is not followed$/m,
  );
  const u = await upload(b);
  t.is(u.code, 2, u.stderr);
  t.regex(u.stderr, /files\/conf\.txt: a link in its path leads outside .*bundle; it is not followed/);
  noStack(t, u.stderr);
  t.false(
    (await contents(b.served)).some((c) => c.includes("canary-secret")),
    "the canary never reached the server",
  );

  // The file server does not serve a link out of its root either.
  await mkdir(path.join(b.served, "demo"), { recursive: true });
  await symlink(path.join(b.canary, "secret.txt"), path.join(b.served, "demo", "leak.txt"));
  const res = await fetch(`${b.serverUrl}/demo/leak.txt`);
  t.is(res.status, 404);
  t.false((await res.text()).includes("canary-secret"));
  t.deepEqual(await snapshot(b.canary), before, "the canary is untouched");
});

test("a deploy/ link to a canary folder: deploy refuses to work in it, and removes nothing there", async (t) => {
  const b = await signedBed(t);
  await writeFile(path.join(b.canary, "keep.txt"), "keep me\n");
  await symlink(b.canary, path.join(b.bundle, "deploy"));
  const before = await snapshot(b.canary);
  const r = await runCli(["deploy", b.bundle, "--dry-run", "--fileserver", b.serverUrl], { cwd: b.root });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /bundle\/deploy: a link in its path leads outside .*bundle; it is not followed/);
  noStack(t, r.stderr);
  t.deepEqual(await snapshot(b.canary), before, "the canary folder is untouched");
});

/** A definition at `defs/one/<file>` (its lines may name the temp root) with a canary two folders up. */
async function defBed(t: ExecutionContext, file: string, lines: (root: string) => string[]): Promise<string> {
  const { dir, cleanup } = await tempFiles(
    {
      "defs/one/ok.txt": "ok {{FILESERVER_URL}}\n",
      "canary/secret.txt": CANARY,
      "canary/chart/Chart.yaml": "apiVersion: v2\nname: theirs\nversion: 0.1.0\n",
    },
    "work",
  );
  t.teardown(cleanup);
  await writeFile(path.join(dir, "defs", "one", file), lines(dir).join("\n"));
  return dir;
}

const outside: [string, string, (root: string) => string[], RegExp][] = [
  [
    "a native template source ../../canary/secret.txt",
    "bundle.yml",
    () => ["name: demo", "templates:", "  - source: ../../canary/secret.txt", "    dest: files/x.txt"],
    /defs\/one\/bundle\.yml:3:\d+ templates\[0\]\.source: "\.\.\/\.\.\/canary\/secret\.txt" lies outside the definition's folder/,
  ],
  [
    "a native local chart at an absolute path",
    "bundle.yml",
    (root) => [
      "name: demo",
      "charts:",
      "  - name: theirs",
      `    path: ${path.join(root, "canary", "chart")}`,
    ],
    /defs\/one\/bundle\.yml:4:\d+ charts\[0\]\.path: ".*\/canary\/chart" lies outside the definition's folder/,
  ],
  [
    "a Telego helm-dir ../../canary/chart",
    "deployment.yml",
    () => ["comment: x", "helms:", "  theirs:", "    helm-dir: ../../canary/chart", "    namespace: x"],
    /defs\/one\/deployment\.yml:4:\d+ helms\.theirs\.helm-dir: "\.\.\/\.\.\/canary\/chart" lies outside the definition's folder/,
  ],
  [
    "a Telego read_from_file ../../canary/secret.txt",
    "deployment.yml",
    () => ["comment: x", "local_values:", "  secret:", "    read_from_file: ../../canary/secret.txt"],
    /defs\/one\/deployment\.yml:4:\d+ local_values\.secret\.read_from_file: "\.\.\/\.\.\/canary\/secret\.txt" lies outside/,
  ],
];

for (const [what, file, lines, message] of outside) {
  test(`${what}: lint and prepare are exit 2 naming file:line and value; --allow-outside lets it through`, async (t) => {
    const root = await defBed(t, file, lines);
    const def = path.join("defs", "one", file);
    const before = await snapshot(path.join(root, "canary"));
    const out = path.join(root, "out");
    for (const args of [
      ["lint", "-f", def],
      ["prepare", "-f", def, "-o", out],
    ]) {
      const r = await runCli(args, { cwd: root });
      t.is(r.code, 2, `${args[0]}: ${r.stderr}`);
      t.regex(r.stderr, message, args[0]);
      t.regex(r.stderr, /give --allow-outside to take it from there/);
      noStack(t, r.stderr);
    }
    t.false(
      await stat(out).then(
        () => true,
        () => false,
      ),
      "prepare wrote nothing",
    );
    const lint = await runCli(["lint", "-f", def, "--allow-outside"], { cwd: root });
    t.is(lint.code, 0, lint.stderr);
    const prep = await runCli(["prepare", "-f", def, "-o", out, "--allow-outside"], { cwd: root });
    t.is(prep.code, 0, prep.stderr);
    t.deepEqual(await snapshot(path.join(root, "canary")), before, "the canary is untouched");
  });
}

test("a template source that is a link out of the definition's folder is outside too", async (t) => {
  const root = await defBed(t, "bundle.yml", () => [
    "name: demo",
    "templates:",
    "  - source: inside.txt",
    "    dest: files/x.txt",
  ]);
  await symlink(path.join(root, "canary", "secret.txt"), path.join(root, "defs", "one", "inside.txt"));
  const r = await runCli(["lint", "-f", "defs/one/bundle.yml"], { cwd: root });
  t.is(r.code, 2, r.stderr);
  t.regex(
    r.stderr,
    /bundle\.yml:3:\d+ templates\[0\]\.source: "inside\.txt" lies outside the definition's folder/,
  );
});

test("modes with setuid, setgid or sticky bits in a definition are exit 2 naming file:line; 0755 is kept", async (t) => {
  for (const [file, lines, at] of [
    [
      "bundle.yml",
      ["name: demo", "templates:", "  - source: ok.txt", "    dest: files/x.sh", '    mode: "4755"'],
      /bundle\.yml:5:\d+ templates\[0\]\.mode: mode "4755" sets setuid, setgid or sticky bits/,
    ],
    [
      "deployment.yml",
      [
        "comment: x",
        "prepare:",
        "  - filemap:",
        "      content: hi",
        "      path: teledeploy/x.sh",
        "      mode: 6777",
      ],
      /deployment\.yml:6:\d+ prepare\[0\]\.filemap\.mode: mode 6777 sets setuid, setgid or sticky bits/,
    ],
  ] as const) {
    const root = await defBed(t, file, () => [...lines]);
    const r = await runCli(["lint", "-f", `defs/one/${file}`], { cwd: root });
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, at);
    t.regex(r.stderr, /a bundle carries permission bits only/);
  }
  const root = await defBed(t, "bundle.yml", () => [
    "name: demo",
    "templates:",
    "  - source: ok.txt",
    "    dest: files/x.sh",
    '    mode: "0755"',
  ]);
  const r = await runCli(["lint", "-f", "defs/one/bundle.yml"], { cwd: root });
  t.is(r.code, 0, r.stderr);
});
