/**
 * scripts/node.sh, which install-deps.sh, quickstart.sh and .ci/run use: on a machine whose node
 * is older than 22 it installs a maintained one from the npm registry into .tools/node and puts
 * it first on PATH. The machine's node and npm are stand-ins here (nothing in the tests reaches
 * the network); they record what they were asked.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { chmod, copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { REPO, tempFiles } from "./helpers/cli.js";

function fakeNode(major: number): string {
  return `#!/bin/sh\ncase "$1" in -p) echo ${major} ;; --version) echo v${major}.0.0 ;; esac\n`;
}

/** npm that records its arguments and "installs" a node 24 under --prefix. */
const FAKE_NPM = `#!/bin/sh
echo "$@" >> "$SANDBOX/npm-args"
prefix=""
while [ $# -gt 0 ]; do [ "$1" = "--prefix" ] && prefix="$2"; shift; done
mkdir -p "$prefix/bin"
printf '%s\\n' '#!/bin/sh' 'case "$1" in -p) echo 24 ;; --version) echo v24.0.0 ;; esac' > "$prefix/bin/node"
chmod +x "$prefix/bin/node"
`;

async function sandbox(t: { teardown: (fn: () => Promise<void>) => void }, machineNode: number) {
  const { dir, cleanup } = await tempFiles({}, "checkout");
  t.teardown(cleanup);
  await mkdir(path.join(dir, "scripts"));
  await copyFile(path.join(REPO, "scripts/node.sh"), path.join(dir, "scripts/node.sh"));
  const bin = path.join(dir, "machine-bin");
  await mkdir(bin);
  await writeFile(path.join(bin, "node"), fakeNode(machineNode));
  await writeFile(path.join(bin, "npm"), FAKE_NPM);
  await Promise.all([chmod(path.join(bin, "node"), 0o755), chmod(path.join(bin, "npm"), 0o755)]);
  const shell = (script: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        "bash",
        ["-c", `set -euo pipefail; source scripts/node.sh; ${script}`],
        { cwd: dir, env: { PATH: `${bin}:/usr/bin:/bin`, SANDBOX: dir } },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      );
    });
  return { dir, shell };
}

test("on a machine with Node 20, install-deps' node step installs Node 24 from the npm registry into .tools/node, and later shells use it", async (t) => {
  const { dir, shell } = await sandbox(t, 20);
  const r = await shell("bundle_install_node; command -v node; node --version");
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /this machine has v20\.0\.0; bundle needs 22 or later/);
  t.true(r.stdout.includes(`${dir}/.tools/node/bin/node\nv24.0.0\n`), r.stdout);
  const npmArgs = await readFile(path.join(dir, "npm-args"), "utf8");
  t.regex(
    npmArgs,
    new RegExp(`^install --global --prefix ${dir}/\\.tools/node .*node-linux-(x64|arm64)@24\\n$`),
  );

  // What .ci/run and quickstart.sh do after install-deps.sh: source the file, nothing more.
  const later = await shell("node --version");
  t.is(later.stdout, "v24.0.0\n");
  const again = await shell("bundle_install_node");
  t.is(again.code, 0, again.stderr);
  t.is((await readFile(path.join(dir, "npm-args"), "utf8")).split("\n").length, 2, "installed once");
});

test("a machine with Node 22 or later keeps its own node; package.json's engines say the same minimum", async (t) => {
  const { dir, shell } = await sandbox(t, 22);
  const r = await shell("bundle_install_node; command -v node");
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `${dir}/machine-bin/node\n`);
  await t.throwsAsync(readFile(path.join(dir, "npm-args")), undefined, "npm was not asked for anything");
  const pkg = JSON.parse(await readFile(path.join(REPO, "package.json"), "utf8")) as {
    engines: { node: string };
  };
  t.is(pkg.engines.node, ">=22");
});
