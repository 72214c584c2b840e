/**
 * forEachLimited (src/util/pool.ts), which unpack uses to write members at once: never more than
 * the limit running, and after a failure nothing new starts and nothing is still running when it
 * throws (unpack then removes its work folder; a member still being written would survive that).
 */
import test from "ava";
import { forEachLimited } from "../src/util/pool.js";

/** A task that finishes when the test says so. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

test("at most `limit` run at once, and every item runs", async (t) => {
  let running = 0;
  let most = 0;
  const done: number[] = [];
  await forEachLimited([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
    running++;
    most = Math.max(most, running);
    await new Promise((resolve) => setImmediate(resolve));
    running--;
    done.push(n);
  });
  t.is(most, 3);
  t.deepEqual([...done].sort(), [1, 2, 3, 4, 5, 6, 7]);
});

test("after a failure none starts, those running finish first, then the first failure is thrown", async (t) => {
  const slow = gate();
  const started: number[] = [];
  let finished = false;
  const run = forEachLimited([1, 2, 3, 4], 2, async (n) => {
    started.push(n);
    if (n === 1) {
      await slow.opened;
      finished = true;
    }
    if (n === 2) throw new Error("member 2 is damaged");
  });
  let settled = false;
  void run.catch(() => (settled = true));
  await new Promise((resolve) => setImmediate(resolve));
  t.false(settled, "still waiting for item 1");
  slow.open();
  const err = await t.throwsAsync(run);
  t.is(err?.message, "member 2 is damaged");
  t.true(finished, "item 1 ran to its end before the call threw");
  t.deepEqual(started, [1, 2], "nothing started after the failure");
});
