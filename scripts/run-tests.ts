/**
 * `npm test` after the build: ava over dist/test, with TMPDIR pointed at a folder of its own, then
 * a check that the run left nothing behind — nothing in that folder, and no file in the checkout
 * that git neither tracks nor ignores and that was not there before — and that passing tests
 * printed no command's error lines. Anything found is named and fails the run, so a test that
 * forgets to clean up, or logs a failure it expected, is found the day it is written.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("../../", import.meta.url));

/** Untracked, unignored files of the checkout (none when it is not a git checkout). */
function untracked(): Set<string> {
  try {
    const out = execFileSync("git", ["ls-files", "--others", "--exclude-standard", "-z"], {
      cwd: repo,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    return new Set(out.split("\0").filter(Boolean));
  } catch {
    return new Set();
  }
}

// Short: dockerd's sockets live below it, and a unix socket's path has at most 107 bytes.
const tmp = await mkdtemp(path.join(os.tmpdir(), "bt-"));
const before = untracked();
const ava = path.join(repo, "node_modules", "ava", "entrypoints", "cli.mjs");
// ava's output passes through as it comes; kept too, to look for failures printed by passing tests.
let output = "";
const code = await new Promise<number>((resolve) => {
  const child = spawn(process.execPath, [ava, ...process.argv.slice(2)], {
    cwd: repo,
    stdio: ["inherit", "pipe", "pipe"],
    env: { ...process.env, TMPDIR: tmp },
  });
  for (const [from, to] of [
    [child.stdout, process.stdout],
    [child.stderr, process.stderr],
  ] as const) {
    from.setEncoding("utf8");
    from.on("data", (text: string) => {
      to.write(text);
      output += text;
    });
  }
  child.on("close", (c, signal) => resolve(c ?? (signal ? 1 : 0)));
});
// A passing test that prints a command's errors (`✖ …`, `error: …`) hides real failures in noise.
const noise = code === 0 ? output.split("\n").filter((l) => /^\s+(✖ |error: )/.test(l)) : [];

// Node 22+'s compile cache (ava turns it on) lands in TMPDIR: a cache, not something a test left.
const leftInTmp = (await readdir(tmp))
  .filter((f) => f !== "node-compile-cache")
  .map((f) => path.join(tmp, f));
const leftInRepo = [...untracked()].filter((f) => !before.has(f));
await rm(tmp, { recursive: true, force: true });
if (noise.length > 0) {
  console.error(
    ["error: passing tests printed these lines (assert on the output instead of logging it):", ...noise].join(
      "\n",
    ),
  );
}
if (leftInTmp.length + leftInRepo.length > 0) {
  console.error(
    [
      "error: the tests left these behind (clean them up in the test that makes them):",
      ...leftInTmp.map((f) => `  ${f} (in TMPDIR)`),
      ...leftInRepo.map((f) => `  ${f} (in the checkout, neither tracked nor ignored)`),
    ].join("\n"),
  );
}
process.exitCode = code || (noise.length + leftInTmp.length + leftInRepo.length > 0 ? 1 : 0);
