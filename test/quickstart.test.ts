/**
 * The quick start as a user runs it once the dependencies are there: `npm run quickstart` in a
 * checkout (a copy of this one, so the build and `.quickstart/` stay out of the real one).
 */
import test from "ava";
import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { REPO } from "./helpers/cli.js";

function run(
  cmd: string,
  args: string[],
  cwd: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** What `npm run build` needs of a checkout; node_modules is linked, not copied. */
async function copyCheckout(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(path.join(os.tmpdir(), "bundle-checkout-"));
  const dir = path.join(root, "bundle");
  for (const entry of ["package.json", "tsconfig.json", "src", "test", "scripts", "bench", "schema"]) {
    await cp(path.join(REPO, entry), path.join(dir, entry), { recursive: true });
  }
  await symlink(path.join(REPO, "node_modules"), path.join(dir, "node_modules"));
  // The helm install-deps put there (and a Node it installed): the quick start renders with it.
  await symlink(path.join(REPO, ".tools"), path.join(dir, ".tools"));
  return { dir, cleanup: () => rm(root, { recursive: true, force: true }) };
}

test("npm run quickstart runs prepare, upload and a dry-run deploy, and the commands it prints afterwards work", async (t) => {
  const { dir, cleanup } = await copyCheckout();
  t.teardown(cleanup);
  const { code, stderr } = await run("npm", ["run", "quickstart"], dir);
  t.is(code, 0, stderr);
  t.regex(stderr, /Where everything went:/);
  t.regex(
    stderr,
    /deploy: +done \(dry run\): helm rendered the chart; the proof found the 1 image it runs on the site registry/,
  );
  t.regex(stderr, /were for this demo only/);
  const proof = JSON.parse(
    await readFile(path.join(dir, ".quickstart/bundle/deploy/demo/proof.json"), "utf8"),
  ) as {
    images: { image: string; mirrorOf?: string }[];
  };
  t.regex(proof.images[0]?.image ?? "", /^127\.0\.0\.1:\d+\/teleinfra\/controller:1\.0$/);
  const lock = JSON.parse(await readFile(path.join(dir, ".quickstart/bundle/bundle.lock.json"), "utf8")) as {
    images: unknown[];
  };
  t.is(lock.images.length, 3);
  const served = await readFile(
    path.join(dir, ".quickstart/fileserver/quickstart/override-values.yml"),
    "utf8",
  );
  t.regex(served, /name: "127\.0\.0\.1:\d+\/"/, "rendered with the site registry");

  const printed = stderr
    .split("\n")
    .filter((l) => l.startsWith("  npx bundle "))
    .map((l) => l.trim().split(/\s+/));
  t.is(printed.length, 3, stderr);
  for (const [npx, ...args] of printed) {
    const r = await run(npx ?? "npx", args, dir);
    t.is(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  }
});
