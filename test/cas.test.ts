/** util/cas.ts writeVerified: the one writer of streamed content — exclusive temp, checked bytes, rename. */
import test, { type ExecutionContext } from "ava";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { TransientError } from "../src/util/retry.js";
import os from "node:os";
import path from "node:path";
import { writeResumable, writeVerified, type ResumableWrite } from "../src/util/cas.js";
import { WorkError } from "../src/util/errors.js";

const CHUNK = Buffer.alloc(64 * 1024, 7);
const DATA = Buffer.concat([CHUNK, CHUNK, CHUNK]);
const SHA = createHash("sha256").update(DATA).digest("hex");

async function folder(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-cas-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // A file beside the target that no write may touch.
  await writeFile(path.join(dir, "canary"), "untouched");
  return dir;
}

/** The three chunks, counting how many the writer pulled. */
function source(pulled: { n: number }) {
  return (async function* () {
    for (let i = 0; i < 3; i++) {
      pulled.n++;
      yield CHUNK;
    }
  })();
}

async function rest(t: ExecutionContext, dir: string, expected: string[]) {
  t.deepEqual((await readdir(dir)).sort(), expected.sort(), "no temporary file is left");
  t.is(await readFile(path.join(dir, "canary"), "utf8"), "untouched");
}

test("bytes that match go in place with their size and sha256; the mode is the one asked", async (t) => {
  const dir = await folder(t);
  const file = path.join(dir, "f.bin");
  let counted = 0;
  const got = await writeVerified(file, source({ n: 0 }), {
    want: { size: DATA.length, sha256: SHA },
    mode: 0o640,
    onBytes: (n) => (counted += n),
  });
  t.deepEqual(got, { size: DATA.length, sha256: SHA });
  t.is(counted, DATA.length);
  t.true((await readFile(file)).equals(DATA));
  t.is((await stat(file)).mode & 0o777, 0o640);
  await rest(t, dir, ["canary", "f.bin"]);
});

test("a stream past its size stops at that chunk; the old file stays and nothing else is left", async (t) => {
  const dir = await folder(t);
  const file = path.join(dir, "f.bin");
  await writeFile(file, "old");
  const pulled = { n: 0 };
  const err = await t.throwsAsync(writeVerified(file, source(pulled), { want: { max: CHUNK.length + 1 } }), {
    instanceOf: WorkError,
  });
  t.is(err.message, `${file}: more than the ${CHUNK.length + 1} bytes expected; nothing was kept`);
  t.is(pulled.n, 2, "no chunk is read after the one past the limit");
  t.is(await readFile(file, "utf8"), "old");
  await rest(t, dir, ["canary", "f.bin"]);
});

test("a sha256 that differs is refused with both digests, by the caller's error when given", async (t) => {
  const dir = await folder(t);
  const file = path.join(dir, "f.bin");
  const wrong = "0".repeat(64);
  const err = await t.throwsAsync(writeVerified(file, source({ n: 0 }), { want: { sha256: wrong } }), {
    instanceOf: WorkError,
  });
  t.is(
    err.message,
    `${file}: expected any number of bytes with sha256 ${wrong}, got ${DATA.length} bytes with sha256 ${SHA}; nothing was kept`,
  );
  class Mine extends Error {}
  await t.throwsAsync(
    writeVerified(file, source({ n: 0 }), {
      want: { size: DATA.length - 1 },
      fail: { over: () => new Mine("over"), differ: () => new Mine("differ") },
    }),
    { instanceOf: Mine, message: "over" },
  );
  await rest(t, dir, ["canary"]);
});

test("a temporary name that exists is someone else's: not written over, not removed", async (t) => {
  const dir = await folder(t);
  const temp = path.join(dir, "busy");
  await writeFile(temp, "theirs");
  const err = await t.throwsAsync(writeVerified(path.join(dir, "f.bin"), source({ n: 0 }), { temp }));
  t.is((err as NodeJS.ErrnoException).code, "EEXIST");
  t.is(await readFile(temp, "utf8"), "theirs");
  await rest(t, dir, ["canary", "busy"]);
});

test("a source that breaks leaves nothing; a publish step gets the checked temporary file", async (t) => {
  const dir = await folder(t);
  const file = path.join(dir, "f.bin");
  const broken = (async function* () {
    yield CHUNK;
    throw new Error("connection reset");
  })();
  await t.throwsAsync(writeVerified(file, broken), { message: "connection reset" });
  await rest(t, dir, ["canary"]);

  const seen: { size: number; sha256: string }[] = [];
  await t.throwsAsync(
    writeVerified(file, [DATA], {
      durable: true,
      publish: (temp, written) => {
        seen.push(written);
        return readFile(temp).then((b) => {
          t.true(b.equals(DATA));
          throw new WorkError("refused at publish");
        });
      },
    }),
    { message: "refused at publish" },
  );
  t.deepEqual(seen, [{ size: DATA.length, sha256: SHA }]);
  await rest(t, dir, ["canary"]);
});

/** A resumable write of DATA whose source breaks after `breakAt` bytes the first time, and records each offset asked. */
function resumable(
  dir: string,
  asked: number[],
  opts: { breakAt?: number; ignoreRange?: boolean } = {},
): ResumableWrite {
  let broken = false;
  return {
    partial: path.join(dir, "partial"),
    open: (offset) => {
      asked.push(offset);
      const from = opts.ignoreRange ? 0 : offset;
      const breakAt = !broken && opts.breakAt !== undefined ? opts.breakAt : undefined;
      broken ||= breakAt !== undefined;
      const stream = (async function* () {
        if (breakAt === undefined) {
          yield DATA.subarray(from);
          return;
        }
        yield DATA.subarray(from, breakAt);
        throw new TransientError("connection reset");
      })();
      return Promise.resolve({ stream, from });
    },
    want: { size: DATA.length, sha256: SHA },
    fail: { over: () => new WorkError("over"), differ: (size) => new WorkError(`differ at ${size}`) },
    keep: (err) => err instanceof TransientError,
  };
}

test("a resumable write keeps its partial after a transient fault and asks only for the rest", async (t) => {
  const dir = await folder(t);
  const file = path.join(dir, "f.bin");
  const asked: number[] = [];
  const w = resumable(dir, asked, { breakAt: 5000 });
  // A killed run left 1000 bytes; this run's first attempt breaks after byte 5000.
  await writeFile(w.partial, DATA.subarray(0, 1000));
  await t.throwsAsync(writeResumable(file, w), { instanceOf: TransientError, message: "connection reset" });
  const held = await readFile(w.partial);
  t.true(held.length >= 1000 && held.length <= 5000, `the partial holds ${held.length} bytes`);
  t.true(held.equals(DATA.subarray(0, held.length)), "and they are the content's first bytes");
  t.deepEqual(await writeResumable(file, w), { size: DATA.length, sha256: SHA });
  t.deepEqual(asked, [1000, held.length], "each attempt asks only for what the partial lacks");
  t.true((await readFile(file)).equals(DATA));
  await rest(t, dir, ["canary", "f.bin"]);
});

test("a resumable write starts over when the source cannot skip, and drops a partial that fails the check", async (t) => {
  const dir = await folder(t);
  const file = path.join(dir, "f.bin");
  const asked: number[] = [];
  await writeFile(path.join(dir, "partial"), DATA.subarray(0, 500));
  t.deepEqual(await writeResumable(file, resumable(dir, asked, { ignoreRange: true })), {
    size: DATA.length,
    sha256: SHA,
  });
  t.deepEqual(asked, [500]);
  t.true((await readFile(file)).equals(DATA));

  // Spoilt bytes held from before: the whole is checked, refused, and nothing is kept.
  await rm(file);
  await writeFile(path.join(dir, "partial"), Buffer.alloc(500, 0x41));
  await t.throwsAsync(writeResumable(file, resumable(dir, [])), { message: `differ at ${DATA.length}` });
  await rest(t, dir, ["canary"]);
});
