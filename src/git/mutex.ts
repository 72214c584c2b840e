/**
 * A lock file next to a cache repository, so that concurrent prepares (in one process or in
 * several) fetch into it one at a time. git itself survives concurrent fetches without
 * corruption, but the losers fail on ref locks ("cannot lock ref"), and two runs creating the
 * same cache repository would trip over each other.
 *
 * The holder refreshes the file's mtime while it works. A lock is stale, and taken over, when
 * its holder is a process of this host that no longer runs (a killed prepare), or when nobody
 * refreshed it for STALE_MS (a holder on another host sharing the cache folder).
 */
import { hostname } from "node:os";
import { readFile, rm, stat, utimes, writeFile } from "node:fs/promises";

const HEARTBEAT_MS = 5_000;
const STALE_MS = 60_000;
const MAX_POLL_MS = 250;

interface Owner {
  pid: number;
  host: string;
}

export async function withFileLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  await acquire(file);
  const beat = setInterval(() => {
    const now = new Date();
    utimes(file, now, now).catch(() => undefined);
  }, HEARTBEAT_MS);
  beat.unref();
  try {
    return await fn();
  } finally {
    clearInterval(beat);
    await rm(file, { force: true });
  }
}

async function acquire(file: string): Promise<void> {
  const owner: Owner = { pid: process.pid, host: hostname() };
  for (let wait = 20; ; wait = Math.min(wait * 2, MAX_POLL_MS)) {
    try {
      await writeFile(file, JSON.stringify(owner), { flag: "wx" });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    if (await isStale(file)) await rm(file, { force: true });
    else await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

async function isStale(file: string): Promise<boolean> {
  const info = await stat(file).catch(() => undefined);
  if (!info) return true; // released meanwhile: try again at once
  if (Date.now() - info.mtimeMs > STALE_MS) return true;
  const owner = parseOwner(await readFile(file, "utf8").catch(() => ""));
  // An empty file is a lock being written right now: not stale.
  return owner !== undefined && owner.host === hostname() && !isRunning(owner.pid);
}

function parseOwner(text: string): Owner | undefined {
  try {
    const o = JSON.parse(text) as Partial<Owner>;
    return typeof o.pid === "number" && typeof o.host === "string" ? { pid: o.pid, host: o.host } : undefined;
  } catch {
    return undefined;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
