/**
 * npm items through the CLI: a git repository with a folder's package.json, a tiny npm registry
 * on 127.0.0.1 (npm is pointed at it with npm_config_registry, its cache in the test's folder),
 * and `bundle prepare` carrying the folder's node_modules as one archive under files/.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import * as tar from "tar";
import { makeGitRepo } from "./helpers/git.js";
import { runCli, tempFiles } from "./helpers/cli.js";
import { startNpmRegistry, type TestNpmRegistry } from "./helpers/npmRegistry.js";
import type { Lock } from "../src/bundle/lock.js";

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

const BASE_JS = "module.exports = (s, n) => ' '.repeat(Math.max(0, n - s.length)) + s;\n";
const PAD_JS = "const base = require('base-lib');\nmodule.exports = (s) => base(s, 8);\n";
const CLI_JS = "#!/usr/bin/env node\nconsole.log(require('./index.js')(process.argv[2] || ''));\n";

async function registry(t: { teardown: (fn: () => Promise<void>) => void }): Promise<TestNpmRegistry> {
  const reg = await startNpmRegistry([
    { name: "base-lib", version: "1.0.0", files: { "index.js": BASE_JS, "README.md": "# base-lib\n" } },
    { name: "base-lib", version: "1.2.0", files: { "index.js": BASE_JS, "README.md": "# base-lib 1.2\n" } },
    {
      name: "leftpad-lite",
      version: "2.0.0",
      dependencies: { "base-lib": "^1.0.0" },
      files: { "index.js": PAD_JS, "lib/cli.js": CLI_JS },
      bin: { "leftpad-lite": "lib/cli.js" },
    },
  ]);
  t.teardown(reg.close);
  return reg;
}

const APP_PACKAGE = `${JSON.stringify({ name: "fn", main: "fn.js", dependencies: { "leftpad-lite": "2.0.0" } }, null, 2)}\n`;

async function setup(
  t: { teardown: (fn: () => Promise<void>) => void },
  files: Record<string, string> | ((reg: TestNpmRegistry) => Promise<Record<string, string>>),
  npmItem: string[],
) {
  const reg = await registry(t);
  if (typeof files === "function") files = await files(reg);
  const repo = await makeGitRepo({
    commits: [{ message: "an action with npm dependencies", files: { "README.md": "# app\n", ...files } }],
    tags: [],
  });
  t.teardown(repo.cleanup);
  const { dir, cleanup } = await tempFiles(
    {
      "bundle.yml": [
        "name: npm-demo",
        "git:",
        `  - url: ${repo.url}`,
        `    commit: ${repo.commits[0]}`,
        "    archive: app.tar.gz",
        "npm:",
        ...npmItem,
      ].join("\n"),
      "npmrc-empty": "",
    },
    "site",
  );
  t.teardown(cleanup);
  const env = {
    BUNDLE_CACHE_DIR: path.join(dir, "cache"),
    npm_config_registry: `${reg.url}/`,
    npm_config_cache: path.join(dir, "npm-cache"),
    npm_config_userconfig: path.join(dir, "npmrc-empty"),
  };
  return { reg, repo, dir, env, out: path.join(dir, "out") };
}

interface Entry {
  path: string;
  type: string;
  mode: number;
  mtime: number;
  data: Buffer;
  linkpath: string;
}

async function entries(file: string): Promise<Entry[]> {
  const out: Entry[] = [];
  await tar.t({
    file,
    onReadEntry: (e) => {
      const chunks: Buffer[] = [];
      e.on("data", (c: Buffer) => chunks.push(c));
      e.on("end", () =>
        out.push({
          path: e.path.replace(/\/$/, ""),
          type: e.type,
          mode: e.mode ?? 0,
          mtime: e.mtime?.getTime() ?? 0,
          data: Buffer.concat(chunks),
          linkpath: e.linkpath ?? "",
        }),
      );
    },
  });
  return out;
}

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  return new Promise<{ code: number; out: string }>((resolve) => {
    execFile(cmd, args, { cwd, env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

test("prepare installs a folder's npm dependencies into one archive; a rerun asks npm nothing; npm offline then needs nothing", async (t) => {
  const { reg, dir, env, out } = await setup(
    t,
    { "actions/fn/package.json": APP_PACKAGE, "actions/fn/fn.js": "module.exports = {};\n" },
    ["  - git: app.tar.gz", "    dirs: [actions/fn]", "    path: deps/fn-node_modules.tar.gz"],
  );
  const first = await runCli(["prepare", "-o", out], { cwd: dir, env });
  t.is(first.code, 0, first.stderr);
  const asked = reg.requests.length;
  t.true(asked >= 4, `npm asked the test registry ${asked} times`);
  t.deepEqual(reg.requests.filter((r) => r.endsWith(".tgz")).sort(), [
    "/base-lib/-/base-lib-1.2.0.tgz",
    "/leftpad-lite/-/leftpad-lite-2.0.0.tgz",
  ]);

  const file = path.join(out, "files", "deps", "fn-node_modules.tar.gz");
  const bytes = await readFile(file);
  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  t.deepEqual(
    lock.files.find((f) => f.path === "deps/fn-node_modules.tar.gz"),
    { path: "deps/fn-node_modules.tar.gz", size: bytes.length, sha256: sha256(bytes) },
  );
  const npm = lock.npm?.[0];
  t.like(npm, {
    git: "app.tar.gz",
    path: "deps/fn-node_modules.tar.gz",
    size: bytes.length,
    sha256: sha256(bytes),
  });
  t.like(npm?.dirs[0], {
    dir: "actions/fn",
    packageJson: sha256(APP_PACKAGE),
    lockfileGiven: false,
    packages: 2,
  });

  const list = await entries(file);
  const names = list.map((e) => e.path);
  t.true(
    names.every((n) => n.startsWith("actions/fn/node_modules") || n === "actions/fn/package-lock.json"),
    names.join("\n"),
  );
  t.deepEqual(
    names,
    [...names].sort((a, b) =>
      Buffer.compare(Buffer.from(a.replaceAll("/", "\0")), Buffer.from(b.replaceAll("/", "\0"))),
    ),
  );
  t.is(new Set(list.map((e) => e.mtime)).size, 1, "one date on every entry");
  t.is(list[0]?.mtime, Date.UTC(2024, 0, 1), "the commit's date");
  const get = (p: string) => list.find((e) => e.path === `actions/fn/${p}`);
  t.is(get("node_modules/base-lib/index.js")?.data.toString(), BASE_JS);
  t.is(get("node_modules/base-lib/README.md")?.data.toString(), "# base-lib 1.2\n");
  t.is(get("node_modules/base-lib/package.json")?.data.toString(), reg.manifests["base-lib"]);
  t.is(get("node_modules/leftpad-lite/index.js")?.data.toString(), PAD_JS);
  t.is(get("node_modules/leftpad-lite/lib/cli.js")?.data.toString(), CLI_JS);
  t.is(get("node_modules/leftpad-lite/lib/cli.js")?.mode, 0o755);
  t.is(get("node_modules/base-lib/index.js")?.mode, 0o644);
  t.is(get("node_modules/leftpad-lite")?.mode, 0o755);
  t.like(get("node_modules/.bin/leftpad-lite"), {
    type: "SymbolicLink",
    linkpath: "../leftpad-lite/lib/cli.js",
  });
  const packageLock = get("package-lock.json")?.data ?? Buffer.alloc(0);
  t.is(npm?.dirs[0]?.packageLock, sha256(packageLock));
  const parsed = JSON.parse(packageLock.toString()) as {
    lockfileVersion: number;
    packages: Record<string, { version?: string }>;
  };
  t.is(parsed.lockfileVersion, 2);
  t.is(parsed.packages["node_modules/base-lib"]?.version, "1.2.0");
  t.deepEqual(
    await readdir(out).then((n) => n.filter((x) => x.startsWith("."))),
    [],
    "no temporary folder left",
  );

  // Same inputs: npm is not run, the archive is the same.
  const second = await runCli(["prepare", "-o", out], { cwd: dir, env });
  t.is(second.code, 0, second.stderr);
  t.is(reg.requests.length, asked, "the second prepare asked the npm registry nothing");
  t.true((await readFile(file)).equals(bytes));
  const verified = await runCli(["verify", out]);
  t.is(verified.code, 0, verified.stdout + verified.stderr);

  // The site: the archive unpacked into the folder, npm install with an empty cache, offline.
  const site = path.join(dir, "site-tree");
  await mkdir(path.join(site, "actions", "fn"), { recursive: true });
  await writeFile(path.join(site, "actions", "fn", "package.json"), APP_PACKAGE);
  await tar.x({ file, cwd: site });
  const offline = await sh("npm", ["install", "--no-audit", "--no-fund"], path.join(site, "actions", "fn"), {
    ...env,
    npm_config_cache: path.join(dir, "empty-cache"),
    npm_config_offline: "true",
    npm_config_update_notifier: "false", // as the install-packages script sets it
  });
  t.is(offline.code, 0, offline.out);
  t.deepEqual(reg.requests.slice(asked), [], "npm install at the site asked nothing");
  t.is(
    await readFile(path.join(site, "actions", "fn", "node_modules", "base-lib", "index.js"), "utf8"),
    BASE_JS,
  );
});

test("a folder with its own package-lock.json is installed with npm ci, from that lockfile", async (t) => {
  // The lockfile pins base-lib 1.0.0, though 1.2.0 is the newest match.
  const integrity = async (reg: TestNpmRegistry, name: string, version: string) => {
    const doc = (await (await fetch(`${reg.url}/${name}`)).json()) as {
      versions: Record<string, { dist: { integrity: string; tarball: string } }>;
    };
    const dist = doc.versions[version]?.dist;
    return { version, resolved: dist?.tarball, integrity: dist?.integrity };
  };
  const { dir, env, out } = await setup(
    t,
    async (reg) => ({
      "fn/package.json": APP_PACKAGE,
      "fn/package-lock.json": `${JSON.stringify(
        {
          name: "fn",
          lockfileVersion: 3,
          requires: true,
          packages: {
            "": { name: "fn", dependencies: { "leftpad-lite": "2.0.0" } },
            "node_modules/base-lib": await integrity(reg, "base-lib", "1.0.0"),
            "node_modules/leftpad-lite": {
              ...(await integrity(reg, "leftpad-lite", "2.0.0")),
              dependencies: { "base-lib": "^1.0.0" },
              bin: { "leftpad-lite": "lib/cli.js" },
            },
          },
        },
        null,
        2,
      )}\n`,
    }),
    ["  - git: app.tar.gz", "    dirs: [fn]"],
  );
  const prepared = await runCli(["prepare", "-o", out], { cwd: dir, env });
  t.is(prepared.code, 0, prepared.stderr);
  const file = path.join(out, "files", "app-node_modules.tar.gz");
  const list = await entries(file);
  const get = (p: string) => list.find((e) => e.path === `fn/${p}`);
  t.is(
    get("node_modules/base-lib/README.md")?.data.toString(),
    "# base-lib\n",
    "1.0.0, as the lockfile says",
  );
  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  t.like(lock.npm?.[0]?.dirs[0], { dir: "fn", lockfileGiven: true });
});

test("a dependency the registry lacks: exit 1 naming the folder and the package; nothing left behind", async (t) => {
  const broken = `${JSON.stringify({ name: "fn", dependencies: { "leftpad-lite": "2.0.0", "no-such-package": "^1.0.0" } })}\n`;
  const { dir, env, out } = await setup(t, { "actions/fn/package.json": broken }, [
    "  - git: app.tar.gz",
    "    dirs: [actions/fn]",
  ]);
  const r = await runCli(["prepare", "-o", out], { cwd: dir, env });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /npm install failed in app\.tar\.gz: actions\/fn \(bundle\.yml:\d+:\d+\)/);
  t.regex(r.stderr, /no-such-package/);
  t.false(/\n\s+at /.test(r.stderr), "no stack trace");
  t.deepEqual(await readdir(out).then((n) => n.filter((x) => x.startsWith("."))), []);
  t.deepEqual(await readdir(path.join(out, "files")), ["app.tar.gz"]);
});

test("a folder without package.json, an unknown git item: exit 2 naming the definition's line", async (t) => {
  const { dir, env, out } = await setup(t, { "actions/fn/package.json": APP_PACKAGE }, [
    "  - git: app.tar.gz",
    "    dirs: [actions/fn, actions/other]",
  ]);
  const r = await runCli(["prepare", "-o", out], { cwd: dir, env });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /bundle\.yml:8:\d+ npm: app\.tar\.gz has no package\.json in folder actions\/other/);

  await writeFile(
    path.join(dir, "bundle.yml"),
    ["name: npm-demo", "npm:", "  - git: elsewhere.tar.gz", "    dirs: [a, ../b]"].join("\n"),
  );
  const lint = await runCli(["lint"], { cwd: dir, env });
  t.is(lint.code, 2, lint.stderr);
  t.regex(
    lint.stderr,
    /bundle\.yml:3:\d+ npm\[0\]\.git: no git item has the url or archive "elsewhere\.tar\.gz"/,
  );
  t.regex(
    lint.stderr,
    /bundle\.yml:4:\d+ npm\[0\]\.dirs\[1\]: "\.\.\/b" must be a folder inside the git tree/,
  );
});
