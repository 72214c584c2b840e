/**
 * Runs the commands being measured: wall time from spawn to exit, and peak RSS through GNU
 * time (`/usr/bin/time -f %M`, the largest resident set of the process and of any child it
 * waited for, in KiB).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export const GNU_TIME = "/usr/bin/time";
const OUTPUT_TAIL_BYTES = 64 * 1024;

export interface RunResult {
  /** Exit code, or null when a signal ended the process. */
  code: number | null;
  signal: NodeJS.Signals | null;
  seconds: number;
  /** Peak RSS in MiB, or null when GNU time is missing or did not report. */
  peakMb: number | null;
  /** The last 64 KB of each stream. */
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Pass output through to ours (still captured). */
  echo?: boolean;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Every child still running, so that an interrupted bench can stop them. */
const running = new Set<ChildProcess>();

export function hasGnuTime(): boolean {
  return existsSync(GNU_TIME);
}

export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const measure = hasGnuTime();
  const tmp = measure ? await mkdtemp(path.join(os.tmpdir(), "bench-rss-")) : undefined;
  const rssFile = tmp ? path.join(tmp, "rss") : undefined;
  try {
    const [file, argv] = rssFile ? [GNU_TIME, ["-f", "%M", "-o", rssFile, cmd, ...args]] : [cmd, args];
    const result = await spawnTimed(file, argv, opts);
    const peakMb = rssFile ? await readPeak(rssFile) : null;
    return { ...result, peakMb };
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

function spawnTimed(file: string, argv: string[], opts: RunOptions): Promise<Omit<RunResult, "peakMb">> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(file, argv, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group: killGroup() then reaches the command under GNU time as well.
      detached: true,
    });
    running.add(child);
    const out = tail(child.stdout, opts.echo ? process.stdout : undefined);
    const err = tail(child.stderr, opts.echo ? process.stderr : undefined);
    let seconds = 0;
    child.on("exit", () => {
      seconds = (performance.now() - started) / 1000;
    });
    child.on("error", (error) => {
      running.delete(child);
      reject(error);
    });
    child.on("close", (code, signal) => {
      running.delete(child);
      resolve({ code, signal, seconds, stdout: out(), stderr: err() });
    });
  });
}

function tail(stream: NodeJS.ReadableStream | null, echo?: NodeJS.WritableStream): () => string {
  let text = "";
  stream?.setEncoding("utf8");
  stream?.on("data", (chunk: string) => {
    echo?.write(chunk);
    text = (text + chunk).slice(-OUTPUT_TAIL_BYTES);
  });
  return () => text;
}

/** GNU time writes "Command exited with non-zero status N" before the figure when it fails. */
export async function readPeak(file: string): Promise<number | null> {
  try {
    const lines = (await readFile(file, "utf8")).trim().split("\n");
    const kib = Number(lines[lines.length - 1]);
    return Number.isFinite(kib) && kib > 0 ? kib / 1024 : null;
  } catch {
    return null;
  }
}

/** Stops every child still running (an interrupted bench). */
export function killChildren(): void {
  for (const child of running) {
    if (child.pid === undefined) continue;
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
}

/** The first line that says what went wrong: an "error…" line if any, else the first line. */
export function errorLine(result: RunResult): string {
  const lines = (result.stderr + "\n" + result.stdout)
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("Command exited with non-zero status"));
  const line = lines.find((l) => /^error\b/i.test(l)) ?? lines[0];
  const how = result.signal ? `killed by ${result.signal}` : `exit ${result.code}`;
  return line ? `${line} (${how})` : how;
}
