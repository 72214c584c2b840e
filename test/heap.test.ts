/**
 * The CLI keeps V8's young generation at its first size (src/cli/main.ts keepYoungGenerationSmall):
 * a copy allocates with every chunk, and a young generation grown to 16 MiB semi-spaces cost a
 * prepare 39 MB of peak memory and a fifth more CPU. Checked in a child Node that runs the CLI's
 * `run` and then allocates as a copy would; without the setting its new space grows to 32 MiB.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { pathToFileURL } from "node:url";
import { CLI } from "./helpers/cli.js";

/** Runs `code` (an ES module) in a fresh node; resolves with its stdout. */
function node(code: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ["--input-type=module", "-e", code], (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

/** Allocates 3 million short-lived objects, then prints the new space's size in bytes. */
const CHURN_AND_MEASURE = `
  const v8 = await import("node:v8");
  let keep = [];
  for (let i = 0; i < 3e6; i++) { keep.push({ i, s: "x" + i }); if (keep.length > 1000) keep = []; }
  const space = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
  console.log("new_space", space.space_size);
`;

function newSpace(stdout: string): number {
  const m = /^new_space (\d+)$/m.exec(stdout);
  if (!m) throw new Error(`no new_space line in: ${stdout}`);
  return Number(m[1]);
}

test("after the CLI runs, V8's young generation stays at its first size under a burst of garbage", async (t) => {
  const MiB = 1024 * 1024;
  const main = pathToFileURL(CLI).href;
  const withCli = await node(
    `const { run } = await import(${JSON.stringify(main)});\n` +
      `if ((await run(["--version"])) !== 0) throw new Error("bundle --version failed");\n` +
      CHURN_AND_MEASURE,
  );
  t.regex(withCli, /^\d+\.\d+\.\d+/, "the CLI ran and printed its version");
  t.true(newSpace(withCli) <= 4 * MiB, `new space ${newSpace(withCli)} bytes`);
  // The same burst in a plain node grows the new space: the check above can fail.
  const plain = await node(CHURN_AND_MEASURE);
  t.true(newSpace(plain) >= 8 * MiB, `plain node's new space ${newSpace(plain)} bytes`);
});
