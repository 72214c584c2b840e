import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import Dockerode from "dockerode";
import { captureTail, once, sleep, stopProcess, unrefProcess, watchdogScript } from "./process.js";

/**
 * A throw-away Docker daemon (Debian's dockerd 20.10) with its own socket, state and containerd,
 * all inside one temp dir. Starting one takes a second or two: share one per test file.
 *
 * Register `t.teardown(() => dockerd.stop())` (or `test.after.always`) right after starting one.
 * As a safety net it also dies when the test process exits, even by SIGKILL (see WATCHDOG_SCRIPT).
 */
export interface TestDockerd {
  socketPath: string;
  docker: Dockerode;
  /** `DOCKER_HOST=unix://…` (with the rest of process.env) for running the docker CLI against it. */
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export interface StartDockerdOptions {
  /** `host:port` of registries to reach over plain HTTP (127.0.0.0/8 already is by default). */
  insecureRegistries?: string[];
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const STDERR_TAIL_BYTES = 8_192;

/**
 * dockerd runs in its own mount namespace (`unshare --mount`): the sandbox's root mount is
 * private, so dockerd bind-mounts its data root onto itself, and a daemon killed without its
 * shutdown would leave that mount behind, making the temp dir impossible to remove. In a
 * namespace of its own the mount vanishes with the daemon. The containerd that dockerd starts
 * is its child with a parent-death signal, so it goes too.
 *
 * As for the registry, the shell stops dockerd (SIGTERM, a clean shutdown) when our end of its
 * stdin closes: on stop(), or when the test process exits or dies, however it does (its end of
 * the pipe closes with it; no exit handler is needed). Then the shell removes the temp dir.
 */
const WATCHDOG_SCRIPT = watchdogScript(
  `unshare --mount --propagation private dockerd "$@"`,
  `rm -rf "$TESTBED_DOCKERD_DIR"`,
);

export async function startDockerd(opts: StartDockerdOptions = {}): Promise<TestDockerd> {
  const dir = await mkdtemp(path.join(tmpdir(), "testbed-dockerd-"));
  try {
    return await startIn(dir, opts);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

async function startIn(dir: string, opts: StartDockerdOptions): Promise<TestDockerd> {
  const socketPath = path.join(dir, "docker.sock");
  const args = await daemonArgs(dir, socketPath, opts);
  const child = spawn("sh", ["-c", WATCHDOG_SCRIPT, "sh", ...args], {
    stdio: ["pipe", "ignore", "pipe"],
    // TMPDIR inside the folder removed at stop: under load dockerd asks its containerd for a
    // stack dump (SIGUSR1), which containerd writes to TMPDIR as containerd.<pid>.stacks.log.
    env: { ...process.env, TESTBED_DOCKERD_DIR: dir, TMPDIR: dir },
    // Own process group, so a last-resort kill reaches dockerd under the shell as well.
    detached: true,
  });
  const stderr = captureTail(child, STDERR_TAIL_BYTES);
  unrefProcess(child);
  const entry = { child, dir };
  const docker = new Dockerode({ socketPath });
  try {
    await waitUntilReady(docker, child, stderr);
  } catch (error) {
    await stopProcess(child, STOP_TIMEOUT_MS);
    throw error;
  }
  const env = { ...process.env, DOCKER_HOST: `unix://${socketPath}` };
  return { socketPath, docker, env, stop: once(() => stopDockerd(entry)) };
}

async function daemonArgs(dir: string, socketPath: string, opts: StartDockerdOptions): Promise<string[]> {
  // Our own config file: /etc/docker/daemon.json must not apply, and the trust key 20.10 still
  // writes would otherwise land in /etc/docker/key.json.
  const configFile = path.join(dir, "daemon.json");
  await writeFile(configFile, JSON.stringify({ "deprecated-key-path": path.join(dir, "key.json") }));
  return [
    `--config-file=${configFile}`,
    `--host=unix://${socketPath}`,
    `--data-root=${path.join(dir, "data")}`,
    `--exec-root=${path.join(dir, "exec")}`,
    `--pidfile=${path.join(dir, "docker.pid")}`,
    // vfs works on any filesystem and needs no kernel module; the test images are tiny.
    "--storage-driver=vfs",
    // No networking for containers: nothing here runs one, and it keeps iptables untouched.
    "--bridge=none",
    "--iptables=false",
    "--ip-masq=false",
    "--log-level=warn",
    ...(opts.insecureRegistries ?? []).map((r) => `--insecure-registry=${r}`),
  ];
}

async function waitUntilReady(docker: Dockerode, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`dockerd exited (${child.exitCode ?? child.signalCode}):\n${stderr()}`);
    }
    if (
      await docker.ping().then(
        () => true,
        () => false, // the socket is not there or not answering yet
      )
    )
      return;
    await sleep(100);
  }
  throw new Error(`dockerd did not answer ping within ${START_TIMEOUT_MS} ms:\n${stderr()}`);
}

async function stopDockerd(entry: { child: ChildProcess; dir: string }): Promise<void> {
  await stopProcess(entry.child, STOP_TIMEOUT_MS);
  await rm(entry.dir, { recursive: true, force: true });
}
