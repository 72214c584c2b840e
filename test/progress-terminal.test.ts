/**
 * The progress display as a user sees it: `bundle prepare` and `bundle upload` on a
 * pseudo-terminal, their output played back onto a screen. Whatever was drawn while bytes moved, the screen ends on every item
 * finished and a final line whose bytes moved equal the bytes planned: the total.
 */
import test from "ava";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { startRegistry } from "./helpers/registry.js";
import { runCliOnTerminal } from "./helpers/terminal.js";
import { standardBed } from "./helpers/bundles.js";
import type { Lock } from "../src/bundle/lock.js";
import { formatBytes } from "../src/util/format.js";

test("prepare and upload on a terminal end on the total: each image ✔, then moved = planned", async (t) => {
  const { dir, out } = await standardBed(t);

  const prepare = await runCliOnTerminal(["prepare", "-o", out], { cwd: dir });
  t.is(prepare.code, 0, prepare.screen.join("\n"));
  const lock = JSON.parse(await readFile(path.join(out, "bundle.lock.json"), "utf8")) as Lock;
  // The blobs were fetched once each, shared base layers included: that is the total.
  const distinct = new Map(lock.images.flatMap((i) => i.blobs.map((b) => [b.digest, b.size])));
  const total = formatBytes([...distinct.values()].reduce((a, b) => a + b, 0));
  const refs = lock.images.map((i) => i.ref);
  checkScreen(t, prepare.screen, refs, total);

  const site = await startRegistry();
  t.teardown(() => site.stop());
  const upload = await runCliOnTerminal(["upload", out, "--registry", site.host], { cwd: dir });
  t.is(upload.code, 0, upload.screen.join("\n"));
  checkScreen(t, upload.screen, refs, total);
});

function checkScreen(
  t: { is: (a: unknown, b: unknown, m?: string) => void; true: (v: boolean, m?: string) => void },
  screen: string[],
  refs: string[],
  total: string,
): void {
  const shown = screen.join("\n");
  const images = screen.filter((line) => /^\s*(✔|✖|›)?\s*images —/.test(line));
  t.is(images.length, 1, `one images line left on the screen:\n${shown}`);
  t.true(
    images[0]!.startsWith(`✔ images — ${total} / ${total} in `),
    `the last frame is the total, ${total} of ${total}:\n${shown}`,
  );
  t.true(!/ETA|›/.test(shown), `no item left half-way, no ETA:\n${shown}`);
  for (const ref of refs)
    t.is(
      screen.filter((line) => line.startsWith(`  ✔ ${ref} `)).length,
      1,
      `${ref} finished, once:\n${shown}`,
    );
}
