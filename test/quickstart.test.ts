/** The README's first command, minus the install step: the local pipeline runs and lands its files. */
import test from "ava";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { REPO } from "./helpers/cli.js";

test("the quick start runs prepare, upload and a dry-run deploy locally and leaves the bundle and served files", async (t) => {
  const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [path.join(REPO, "dist/scripts/quickstart.js")], (err, _stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stderr }),
    );
  });
  t.is(code, 0, stderr);
  t.regex(stderr, /Where everything went:/);
  t.regex(
    stderr,
    /deploy: done \(dry run\): helm rendered the chart; the proof found the 1 image it runs on the site registry/,
  );
  const proof = JSON.parse(
    await readFile(path.join(REPO, ".quickstart/bundle/deploy/demo/proof.json"), "utf8"),
  ) as {
    images: { image: string; mirrorOf?: string }[];
  };
  t.regex(proof.images[0]?.image ?? "", /^127\.0\.0\.1:\d+\/teleinfra\/controller:1\.0$/);
  const lock = JSON.parse(await readFile(path.join(REPO, ".quickstart/bundle/bundle.lock.json"), "utf8")) as {
    images: unknown[];
    git: { sha256: string }[];
  };
  t.is(lock.images.length, 3);
  const served = await readFile(
    path.join(REPO, ".quickstart/fileserver/quickstart/override-values.yml"),
    "utf8",
  );
  t.regex(served, /name: "127\.0\.0\.1:\d+\/"/, "rendered with the site registry");
});
