/** `bundle serve`'s entry point: token file, flags, start and graceful stop. */
import test, { type ExecutionContext } from "ava";
import { createHash } from "node:crypto";
import net from "node:net";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { FileServerClient } from "../src/fileserver/client.js";
import type { FileServer } from "../src/fileserver/server.js";
import { parseByteSize, readTokenFile, serve } from "../src/fileserver/serve.js";
import { InputError, WorkError } from "../src/util/errors.js";
import { freePort } from "./helpers/ports.js";

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bundle-serve-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("readTokenFile trims the token, refuses missing or empty files, and warns when others can read it", async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, "token");
  await writeFile(file, "  tok-123\n");
  await chmod(file, 0o600);
  const warnings: string[] = [];
  t.is(await readTokenFile(file, (w) => warnings.push(w)), "tok-123");
  t.deepEqual(warnings, []);
  await chmod(file, 0o644);
  await readTokenFile(file, (w) => warnings.push(w));
  t.regex(warnings[0] ?? "", /readable by every user \(mode 644\)/);
  t.false(warnings.some((w) => w.includes("tok-123")));
  await t.throwsAsync(readTokenFile(path.join(dir, "none")), {
    instanceOf: InputError,
    message: /none: cannot read it: no such file$/,
  });
  await writeFile(file, "\n \n");
  await t.throwsAsync(readTokenFile(file), { instanceOf: InputError, message: /empty/ });
  await writeFile(file, "two words\n");
  await t.throwsAsync(readTokenFile(file), { instanceOf: InputError });
});

test("parseByteSize reads bytes and binary suffixes, and refuses the rest", (t) => {
  t.is(parseByteSize("1000"), 1000);
  t.is(parseByteSize("20G"), 20 * 2 ** 30);
  t.is(parseByteSize("512MiB"), 512 * 2 ** 20);
  t.is(parseByteSize("1k"), 1024);
  for (const bad of ["", "abc", "-1", "1.5G", "0", "10X"])
    t.throws(() => parseByteSize(bad), { instanceOf: InputError }, bad);
});

test("serve starts with the token file, takes an upload, and stops when asked", async (t) => {
  const dir = await tempDir(t);
  const tokenFile = path.join(dir, "fileserver.token");
  await writeFile(tokenFile, "serve-test-token\n", { mode: 0o600 });
  const local = path.join(dir, "f.txt");
  await writeFile(local, "payload\n");
  const stop = new AbortController();
  const log: string[] = [];
  let server: FileServer | undefined;
  const running = serve({
    root: path.join(dir, "srv"),
    host: "127.0.0.1",
    port: await freePort(),
    tokenFile,
    signal: stop.signal,
    log: (l) => log.push(l),
    onListening: (s) => (server = s),
  });
  t.teardown(() => stop.abort());
  await waitFor(() => server !== undefined);
  const client = new FileServerClient(server?.url ?? "", {
    token: "serve-test-token",
    retry: { retries: 1, baseDelayMs: 10 },
  });
  t.teardown(() => client.close());
  await client.put("b", "f.txt", local, createHash("sha256").update("payload\n").digest("hex"));
  t.is(await readFile(path.join(dir, "srv", "b", "f.txt"), "utf8"), "payload\n");
  stop.abort();
  await running;
  t.regex(
    log[0] ?? "",
    /^serving .*srv at http:\/\/127\.0\.0\.1:\d+; uploads need the token of --token-file$/,
  );
  t.false(log.some((l) => l.includes("serve-test-token")));
  await t.throwsAsync(client.list("b"), { instanceOf: WorkError }, "the server is gone");
});

test("serve explains a port in use and refuses a bad port", async (t) => {
  const dir = await tempDir(t);
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const port = (blocker.address() as net.AddressInfo).port;
  const stop = new AbortController();
  t.teardown(() => stop.abort());
  await t.throwsAsync(
    serve({ root: dir, host: "127.0.0.1", port, signal: stop.signal, log: () => undefined }),
    {
      instanceOf: WorkError,
      message: `cannot listen on 127.0.0.1:${port}: the port is in use`,
    },
  );
  await t.throwsAsync(serve({ root: dir, port: 70000, log: () => undefined }), { instanceOf: InputError });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
