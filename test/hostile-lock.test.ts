/**
 * Hostile locks and archives (issue 11, "parse, don't cast"): a crafted `bundle.lock.json` or
 * `bundle-index.json` is exit 2 naming the file, the field and the value, before anything is
 * read or written through it; `unpack` checks every member against the lock, not the index,
 * and writes permission bits only. A canary folder beside the bundle stays as it was.
 */
import test, { type ExecutionContext } from "ava";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { runCli, tempFiles } from "./helpers/cli.js";
import { emptyLock, snapshot } from "./helpers/bundles.js";
import type { Lock } from "../src/bundle/lock.js";
import type { ArchiveIndex } from "../src/bundle/archive.js";

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

/** A small whole bundle: one file and the template values, nothing that needs a registry. */
function baseLock(): Lock {
  return emptyLock({ files: [{ path: "a.txt", size: 5, sha256: sha("hello") }] });
}

interface Bed {
  root: string;
  bundle: string;
  canary: string;
}

async function bed(t: ExecutionContext, lock: unknown): Promise<Bed> {
  const { dir, cleanup } = await tempFiles(
    {
      "bundle/files/a.txt": "hello",
      "bundle/templates/values.json": "{}\n",
      "bundle/bundle.lock.json": JSON.stringify(lock, null, 2),
      "canary/secret.txt": "canary\n",
      "etc/passwd": "root:x:0:0\n",
    },
    "site",
  );
  t.teardown(cleanup);
  return { root: dir, bundle: path.join(dir, "bundle"), canary: path.join(dir, "canary") };
}

const commands = (b: string) => [
  ["verify", b],
  ["inspect", b],
  ["upload", b, "--registry", "127.0.0.1:9", "--fileserver", "http://127.0.0.1:9"],
  ["deploy", b, "--dry-run", "--registry", "127.0.0.1:9", "--fileserver", "http://127.0.0.1:9"],
];

const hostile: [string, (l: Lock & Record<string, unknown>) => void, RegExp][] = [
  [
    "images that are not a list",
    (l) => (l.images = "notalist" as never),
    /bundle\.lock\.json: images: expected a list, got "notalist"/,
  ],
  [
    "a release named ../../x",
    (l) => (l.releases = [{ name: "../../x", chart: "demo", namespace: "demo", valuesFiles: [] }]),
    /bundle\.lock\.json: releases\[0\]\.name: expected a Helm release name .*, got "\.\.\/\.\.\/x"/,
  ],
  [
    "a file path ../../etc/passwd",
    (l) => (l.files = [{ path: "../../etc/passwd", size: 11, sha256: sha("root:x:0:0\n") }]),
    /bundle\.lock\.json: files\[0\]\.path: expected a relative path under files\/ without \.\., got "\.\.\/\.\.\/etc\/passwd"/,
  ],
  [
    "a digest sha256:zz",
    (l) =>
      (l.images = [
        {
          ref: "docker.io/library/redis:4.0",
          source: "registry",
          digest: "sha256:zz",
          mediaType: "application/vnd.oci.image.index.v1+json",
          size: 10,
          platforms: [],
          missingPlatforms: [],
          mirror: "teleinfra/redis:4.0",
          mirrorDigest: `sha256:${"a".repeat(64)}`,
          blobs: [],
          bytes: 0,
        },
      ]),
    /bundle\.lock\.json: images\[0\]\.digest: expected a digest sha256:<64 lowercase hex digits>, got "sha256:zz"/,
  ],
  [
    "a template with mode 04755 writing outside",
    (l) =>
      (l.templates = [
        {
          dest: "files/../../canary/x.sh",
          source: "templates/x.sh",
          syntax: "handlebars",
          mode: 0o4755,
          sha256: sha(""),
          origin: { file: "bundle.yml", line: 1, col: 1 },
          siteValues: [],
        },
      ]),
    /templates\[0\]\.dest: expected .*, got "files\/\.\.\/\.\.\/canary\/x\.sh"/,
  ],
  [
    "a mirror name with ../ in it",
    (l) =>
      (l.images = [
        {
          ...baseImage(),
          mirror: "../etc:passwd",
        },
      ]),
    /images\[0\]\.mirror: expected an OCI repository name .*, got "\.\.\/etc:passwd"/,
  ],
];

function baseImage(): Lock["images"][number] {
  const d = `sha256:${"a".repeat(64)}`;
  return {
    ref: "docker.io/library/redis:4.0",
    source: "registry",
    digest: d,
    mediaType: "application/vnd.oci.image.index.v1+json",
    size: 10,
    platforms: [],
    missingPlatforms: [],
    mirror: "teleinfra/redis:4.0",
    mirrorDigest: d,
    blobs: [],
    bytes: 0,
  };
}

for (const [what, craft, message] of hostile) {
  test(`a lock with ${what} is exit 2 naming the field and value, in every command`, async (t) => {
    const lock = baseLock() as Lock & Record<string, unknown>;
    craft(lock);
    const b = await bed(t, lock);
    const before = await snapshot(b.root);
    for (const args of commands(b.bundle)) {
      const r = await runCli(args, { cwd: b.root });
      t.is(r.code, 2, `${args[0]}: ${r.stderr}`);
      t.regex(r.stderr, message, args[0]);
      t.true(r.stderr.includes(path.join(b.bundle, "bundle.lock.json")), `${args[0]} names the file`);
      t.false(/TypeError|\n\s+at /.test(r.stderr), `${args[0]}: no stack trace`);
    }
    t.deepEqual(await snapshot(b.root), before, "nothing beside the bundle changed");
  });
}

test("the sound lock of the test bed verifies: the crafted ones fail for their one field", async (t) => {
  const b = await bed(t, baseLock());
  const r = await runCli(["verify", b.bundle], { cwd: b.root });
  t.is(r.code, 0, r.stderr);
});

/** Packs the test bed's bundle and returns the archive with its parsed index. */
async function packed(
  t: ExecutionContext,
  b: Bed,
): Promise<{ file: string; bytes: Buffer; index: ArchiveIndex }> {
  const file = path.join(b.root, "bundle.tar");
  const r = await runCli(["pack", b.bundle, file], { cwd: b.root });
  t.is(r.code, 0, r.stderr);
  const bytes = await readFile(file);
  const size = parseInt(bytes.subarray(124, 136).toString("latin1").trim(), 8);
  const index = JSON.parse(bytes.subarray(512, 512 + size).toString("utf8")) as ArchiveIndex;
  return { file, bytes, index };
}

/** Rewrites the index in place (same tar header: the JSON is padded with spaces to its length). */
async function rewriteIndex(file: string, bytes: Buffer, index: ArchiveIndex): Promise<void> {
  const size = parseInt(bytes.subarray(124, 136).toString("latin1").trim(), 8);
  const json = JSON.stringify(index);
  if (json.length > size) throw new Error("crafted index longer than the original");
  bytes.write(json.padEnd(size, " "), 512, "utf8");
  await writeFile(file, bytes);
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

test("unpack checks each member against the lock: an index that agrees with changed bytes does not", async (t) => {
  const b = await bed(t, baseLock());
  const { file, bytes, index } = await packed(t, b);
  const member = index.members.find((m) => m.path === "files/a.txt");
  if (!member) return t.fail("no files/a.txt in the index");
  bytes.write("HELLO", member.offset, "utf8");
  member.sha256 = sha("HELLO");
  await rewriteIndex(file, bytes, index);
  const before = await snapshot(b.canary);
  const out = path.join(b.root, "unpacked");
  const r = await runCli(["unpack", file, out], { cwd: b.root });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /member files\/a\.txt .* is corrupt: sha256 [0-9a-f]{64}, expected 2cf24dba/);
  t.false(await exists(out), "nothing is left under the folder's name");
  t.deepEqual(
    (await readdir(b.root)).sort(),
    ["bundle", "bundle.tar", "canary", "etc"],
    "no work folder is left beside it",
  );
  t.deepEqual(await snapshot(b.canary), before);
  // verify and inspect of the archive judge by the lock too.
  const v = await runCli(["verify", file], { cwd: b.root });
  t.is(v.code, 1, v.stderr);
  t.regex(v.stdout + v.stderr, /files\/a\.txt|a\.txt/);
});

test("unpack writes permission bits only: a member with mode 06777 lands as 0777", async (t) => {
  const b = await bed(t, baseLock());
  const { file, bytes, index } = await packed(t, b);
  const member = index.members.find((m) => m.path === "files/a.txt");
  if (!member) return t.fail("no files/a.txt in the index");
  member.mode = 0o6777;
  await rewriteIndex(file, bytes, index);
  const out = path.join(b.root, "unpacked");
  const r = await runCli(["unpack", file, out], { cwd: b.root });
  t.is(r.code, 0, r.stderr);
  t.is((await stat(path.join(out, "files", "a.txt"))).mode & 0o7777, 0o777);
  t.is(await readFile(path.join(out, "files", "a.txt"), "utf8"), "hello");
});

test("an index with an offset of -100 or a member path with .. is exit 2 naming it", async (t) => {
  const b = await bed(t, baseLock());
  const { bytes, index } = await packed(t, b);
  const cases: [string, (i: ArchiveIndex) => void, RegExp][] = [
    [
      "offset",
      (i) => {
        const m = i.members.find((x) => x.path === "files/a.txt");
        if (m) m.offset = -100;
      },
      /bundle-index\.json in .*(?:offset|path)\.tar: members\[1\]\.offset: expected a non-negative whole number, got -100/,
    ],
    [
      "path",
      (i) => {
        const m = i.members.find((x) => x.path === "files/a.txt");
        if (!m) return;
        m.path = "files/../../canary/secret.txt";
        delete m.sha256; // room for the longer path in the index's padding
      },
      /bundle-index\.json in .*(?:offset|path)\.tar: members\[1\]\.path: expected a relative path inside the bundle without \.\., got "files\/\.\.\/\.\.\/canary\/secret\.txt"/,
    ],
  ];
  const before = await snapshot(b.canary);
  for (const [what, craft, message] of cases) {
    const crafted = structuredClone(index);
    craft(crafted);
    const copy = path.join(b.root, `${what}.tar`);
    await rewriteIndex(copy, Buffer.from(bytes), crafted);
    const out = path.join(b.root, `${what}-out`);
    for (const args of [
      ["unpack", copy, out],
      ["verify", copy],
      ["inspect", copy],
    ]) {
      const r = await runCli(args, { cwd: b.root });
      t.is(r.code, 2, `${what} ${args[0]}: ${r.stderr}`);
      t.regex(r.stderr, message, `${what} ${args[0]}`);
      t.false(/TypeError|\n\s+at /.test(r.stderr), "no stack trace");
    }
    t.false(await exists(out), "nothing unpacked");
  }
  t.deepEqual(await snapshot(b.canary), before, "the canary is untouched");
});

test("unpack refuses a folder that is not empty, and unpacks into an empty one", async (t) => {
  const b = await bed(t, baseLock());
  const { file } = await packed(t, b);
  const full = path.join(b.root, "full");
  await mkdir(full);
  await writeFile(path.join(full, "keep.txt"), "mine\n");
  const r = await runCli(["unpack", file, full], { cwd: b.root });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /already exists and is not empty/);
  t.deepEqual(await readdir(full), ["keep.txt"]);
  const empty = path.join(b.root, "empty");
  await mkdir(empty);
  const ok = await runCli(["unpack", file, empty], { cwd: b.root });
  t.is(ok.code, 0, ok.stderr);
  t.is((await runCli(["verify", empty], { cwd: b.root })).code, 0);
});
