/**
 * Managing the servers tests start (registries, dockerd): they run in their own process group
 * under a watchdog shell that stops them when our end of its stdin closes, so they die with
 * the test process even when it is SIGKILLed.
 */
import type { ChildProcess } from "node:child_process";
import type { Socket } from "node:net";

/**
 * A shell script that runs `command` (with the script's arguments) and kills it when our end of
 * its stdin closes: on stop(), and also when the test process dies in a way no exit handler
 * sees. Background jobs get /dev/null as stdin in a non-interactive shell, hence the copy on
 * fd 3. `after` runs once the server is gone (cleanup).
 */
export function watchdogScript(command: string, after = ""): string {
  return `
exec 3<&0
${command} </dev/null &
server=$!
(read _ <&3; kill "$server" 2>/dev/null) &
watchdog=$!
wait "$server"
code=$?
kill "$watchdog" 2>/dev/null
${after}
exit "$code"
`;
}

/** The last `bytes` of a child's stderr, for error messages when it fails to start. */
export function captureTail(child: ChildProcess, bytes: number): () => string {
  let tail = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    tail = (tail + chunk).slice(-bytes);
  });
  return () => tail;
}

/** Closing stdin makes the watchdog stop the server cleanly; SIGKILL the group if that stalls. */
export async function stopProcess(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    child.stdin?.destroy(); // lets a still-waiting watchdog subshell go
    return;
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.stdin?.end();
  const timer = setTimeout(() => killGroup(child, "SIGKILL"), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** A server a test forgot to stop must not keep the test process alive (an exit handler kills it). */
export function unrefProcess(child: ChildProcess): void {
  child.unref();
  for (const stream of [child.stdin, child.stderr]) (stream as Partial<Socket> | null)?.unref?.();
}

export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

export function once(fn: () => Promise<void>): () => Promise<void> {
  let result: Promise<void> | undefined;
  return () => (result ??= fn());
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
