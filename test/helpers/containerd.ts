import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { captureTail, once, sleep, stopProcess, unrefProcess, watchdogScript } from "./process.js";

const execFileAsync = promisify(execFile);

/**
 * A throw-away containerd (Debian's containerd 1.6) with its own root, state and socket in one
 * temp dir, for `ctr` pulls; stopped like the test dockerd (closing its stdin), in a mount
 * namespace of its own so no snapshot mount outlives it. The CRI plugin is off: no kubelet here.
 */
export interface TestContainerd {
  /** Runs `ctr --address <socket> …`; rejects with ctr's stderr on failure. */
  ctr(args: string[]): Promise<string>;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

const WATCHDOG_SCRIPT = watchdogScript(
  `unshare --mount --propagation private containerd "$@"`,
  `rm -rf "$TESTBED_CONTAINERD_DIR"`,
);

export async function startContainerd(): Promise<TestContainerd> {
  const dir = await mkdtemp(path.join(tmpdir(), "testbed-containerd-"));
  const socket = path.join(dir, "containerd.sock");
  const config = path.join(dir, "config.toml");
  await writeFile(
    config,
    [
      "version = 2",
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"]',
      "[grpc]",
      `  address = "${socket}"`,
      "[ttrpc]",
      `  address = "${socket}.ttrpc"`,
      "",
    ].join("\n"),
  );
  const child = spawn("sh", ["-c", WATCHDOG_SCRIPT, "sh", "-c", config, "--log-level", "error"], {
    stdio: ["pipe", "ignore", "pipe"],
    // TMPDIR inside the folder removed at stop: under load dockerd asks its containerd for a
    // stack dump (SIGUSR1), which containerd writes to TMPDIR as containerd.<pid>.stacks.log.
    env: { ...process.env, TESTBED_CONTAINERD_DIR: dir, TMPDIR: dir },
    detached: true,
  });
  const stderr = captureTail(child, 8192);
  unrefProcess(child);
  const ctr = async (args: string[]) =>
    (await execFileAsync("ctr", ["--address", socket, ...args], { maxBuffer: 16 << 20 })).stdout;
  const stop = once(async () => {
    await stopProcess(child, STOP_TIMEOUT_MS);
    await rm(dir, { recursive: true, force: true });
  });
  try {
    await waitUntilReady(child, () => ctr(["version"]), stderr);
  } catch (err) {
    await stop();
    throw err;
  }
  return { ctr, stop };
}

async function waitUntilReady(child: ChildProcess, ping: () => Promise<unknown>, stderr: () => string) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`containerd exited (${child.exitCode ?? child.signalCode}):\n${stderr()}`);
    if (
      await ping().then(
        () => true,
        () => false, // the socket is not there yet
      )
    )
      return;
    await sleep(100);
  }
  throw new Error(`containerd did not answer within ${START_TIMEOUT_MS} ms:\n${stderr()}`);
}
