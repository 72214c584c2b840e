import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { freePort } from "./ports.js";
import { captureTail, killGroup, once, sleep, stopProcess, unrefProcess, watchdogScript } from "./process.js";

/**
 * `git daemon` serving the repositories under one folder over git:// on 127.0.0.1: a real
 * network protocol (protocol v2 when the client asks for it), for shallow fetches by commit and
 * for "the remote went away" tests. Register `t.teardown(() => daemon.stop())`.
 */
export interface TestGitDaemon {
  port: number;
  /** git://127.0.0.1:PORT/<name> for the repository `<base>/<name>`. */
  urlOf(repoDir: string): string;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 10_000;
const START_ATTEMPTS = 3;

/** The daemon dies when our end of its stdin closes (stop(), or the test process dying). */
const WATCHDOG_SCRIPT = watchdogScript(
  `git daemon --reuseaddr --listen=127.0.0.1 --port="$1" --base-path="$2" --export-all --informative-errors "$2"`,
);

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) killGroup(child, "SIGKILL");
});

export async function startGitDaemon(baseDir: string): Promise<TestGitDaemon> {
  let lastError: unknown;
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    try {
      return await startOnPort(baseDir, await freePort());
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

async function startOnPort(baseDir: string, port: number): Promise<TestGitDaemon> {
  const child = spawn("sh", ["-c", WATCHDOG_SCRIPT, "sh", String(port), baseDir], {
    stdio: ["pipe", "ignore", "pipe"],
    detached: true,
    // The server side must not see the developer's configuration either.
    env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1" },
  });
  const stderr = captureTail(child, 4096);
  unrefProcess(child);
  running.add(child);
  const stop = once(async () => {
    await stopProcess(child, 5_000);
    running.delete(child);
  });
  try {
    await waitForPort(port, child, stderr);
  } catch (error) {
    await stop();
    throw error;
  }
  const urlOf = (repoDir: string) => `git://127.0.0.1:${port}/${path.relative(baseDir, repoDir)}`;
  return { port, urlOf, stop };
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`git daemon exited (${child.exitCode}):\n${stderr()}`);
    if (await canConnect(port)) return;
    await sleep(30);
  }
  throw new Error(`git daemon did not listen on ${port} within ${START_TIMEOUT_MS} ms:\n${stderr()}`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
