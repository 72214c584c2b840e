import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import bcrypt from "bcryptjs";
import { httpRequest, type Credentials } from "./http.js";
import { freePort } from "./ports.js";
import { captureTail, killGroup, once, sleep, stopProcess, unrefProcess, watchdogScript } from "./process.js";

export type { Credentials } from "./http.js";

/**
 * A throw-away Docker Distribution registry on 127.0.0.1.
 *
 * Always register `t.teardown(() => registry.stop())` right after starting one. As a safety net
 * a registry also dies when the test process exits (even by SIGKILL), see WATCHDOG_SCRIPT.
 */
export interface TestRegistry {
  /** "127.0.0.1:PORT", as used in image references. */
  host: string;
  /** "http://127.0.0.1:PORT" */
  url: string;
  /** The credentials the registry requires, when started with auth. */
  auth?: Credentials;
  /** Root of the filesystem storage driver (docker/registry/v2/... lives below it). */
  storageDir: string;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  auth?: Credentials;
}

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
const STDERR_TAIL_BYTES = 4_096;
const START_ATTEMPTS = 3;

/**
 * Runs the registry under sh so that it is killed when our end of the stdin pipe closes: that
 * happens on stop(), and also when the test process dies in a way no exit handler sees.
 * Background jobs get /dev/null as stdin in a non-interactive shell, hence the copy on fd 3.
 */
const WATCHDOG_SCRIPT = watchdogScript(`docker-registry serve "$1"`);

/** Registries still running, killed on process exit in case a test forgot stop(). */
const running = new Set<{ child: ChildProcess; dir: string }>();
process.on("exit", () => {
  for (const entry of running) {
    killGroup(entry.child, "SIGKILL");
    rmSync(entry.dir, { recursive: true, force: true });
  }
});

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(path.join(tmpdir(), "testbed-registry-"));
  try {
    return await startWithRetries(dir, opts);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

async function startWithRetries(dir: string, opts: StartRegistryOptions): Promise<TestRegistry> {
  let lastError: unknown;
  // freePort() can race with another process taking the port before the registry binds it.
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const port = await freePort();
    try {
      return await startOnPort(dir, port, opts);
    } catch (error) {
      lastError = error;
      if (!/address already in use/i.test(String(error))) break;
    }
  }
  throw lastError;
}

async function startOnPort(dir: string, port: number, opts: StartRegistryOptions): Promise<TestRegistry> {
  const configPath = await writeConfig(dir, port, opts.auth);
  const child = spawn("sh", ["-c", WATCHDOG_SCRIPT, "sh", configPath], {
    stdio: ["pipe", "ignore", "pipe"],
    // Own process group, so a last-resort kill reaches the registry under the shell as well.
    detached: true,
  });
  const stderr = captureTail(child, STDERR_TAIL_BYTES);
  unrefProcess(child);
  const entry = { child, dir };
  running.add(entry);
  const url = `http://127.0.0.1:${port}`;
  const stop = once(() => stopRegistry(entry));
  try {
    await waitUntilReady(url, child, stderr);
  } catch (error) {
    await stopProcess(child, STOP_TIMEOUT_MS);
    running.delete(entry);
    throw error;
  }
  return { host: `127.0.0.1:${port}`, url, auth: opts.auth, storageDir: path.join(dir, "data"), stop };
}

async function writeConfig(dir: string, port: number, auth?: Credentials): Promise<string> {
  const lines = [
    "version: 0.1",
    "log:",
    "  level: warn",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${JSON.stringify(path.join(dir, "data"))}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    // A fixed secret silences the "generated random secret" warning on every start.
    "  secret: testbed-secret",
  ];
  if (auth) {
    const htpasswdPath = path.join(dir, "htpasswd");
    // Distribution only accepts bcrypt entries; cost 4 keeps each authenticated request cheap.
    await writeFile(htpasswdPath, `${auth.username}:${bcrypt.hashSync(auth.password, 4)}\n`);
    lines.push("auth:", "  htpasswd:", "    realm: testbed", `    path: ${JSON.stringify(htpasswdPath)}`);
  }
  const configPath = path.join(dir, "config.yml");
  await writeFile(configPath, lines.join("\n") + "\n");
  return configPath;
}

async function waitUntilReady(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`docker-registry exited (${child.exitCode ?? child.signalCode}):\n${stderr()}`);
    }
    const status = await probe(`${url}/v2/`);
    // 401 means the registry is up and auth is on.
    if (status === 200 || status === 401) return;
    await sleep(50);
  }
  throw new Error(`docker-registry did not answer ${url}/v2/ within ${START_TIMEOUT_MS} ms:\n${stderr()}`);
}

async function probe(url: string): Promise<number | undefined> {
  try {
    return (await httpRequest(url)).status;
  } catch {
    return undefined; // not listening yet
  }
}

async function stopRegistry(entry: { child: ChildProcess; dir: string }): Promise<void> {
  await stopProcess(entry.child, STOP_TIMEOUT_MS);
  running.delete(entry);
  await rm(entry.dir, { recursive: true, force: true });
}
