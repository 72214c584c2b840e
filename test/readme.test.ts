/** The README's "Source folders" list names exactly the folders under src/, each once. */
import test from "ava";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { REPO } from "./helpers/cli.js";

test("the README's source folders are the folders under src/", async (t) => {
  const readme = await readFile(path.join(REPO, "README.md"), "utf8");
  const start = readme.indexOf("Source folders");
  t.true(start >= 0, "the README has a Source folders list");
  const list = readme.slice(start, readme.indexOf("\n\n", readme.indexOf("\n- ", start)));
  const named = [...list.matchAll(/^- `src\/([a-z]+)`:/gm)].map((m) => m[1]);
  const folders = (await readdir(path.join(REPO, "src"), { withFileTypes: true }))
    .filter((d) => d.isDirectory())
    .map((d) => d.name);
  t.deepEqual([...named].sort(), folders.sort());
});
