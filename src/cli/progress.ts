/**
 * Running many transfers (images, files) with bounded concurrency and visible progress: per
 * item and overall bytes, rate and ETA on a TTY (listr2); one line per finished item, and an
 * overall line every few seconds, when output is a log.
 */
import pLimit from "p-limit";
import { formatBytes, formatDuration } from "../util/format.js";
import type { Output } from "./output.js";

export interface JobReport {
  /** Bytes this job still has to move (may be called several times; it adds up). */
  planned(bytes: number): void;
  moved(bytes: number): void;
}

export interface Job<T> {
  title: string;
  run(report: JobReport): Promise<T>;
}

export type JobOutcome<T> =
  | { title: string; ok: true; value: T; ms: number }
  | { title: string; ok: false; error: unknown; skipped: boolean };

export interface RunOptions {
  concurrency: number;
  continueOnError: boolean;
  /** Aborted at the first failure unless continueOnError, so running jobs start nothing new. */
  abort: AbortController;
}

const REFRESH_MS = 250;
const LOG_EVERY_MS = 5000;

class Meter {
  planned = 0;
  moved = 0;
  readonly start = Date.now();

  line(): string {
    const secs = (Date.now() - this.start) / 1000;
    const rate = secs > 0 ? this.moved / secs : 0;
    const left = Math.max(0, this.planned - this.moved);
    const eta = rate > 0 && left > 0 ? `, ETA ${formatDuration((left / rate) * 1000)}` : "";
    return `${formatBytes(this.moved)} / ${formatBytes(this.planned)}, ${formatBytes(rate)}/s${eta}`;
  }
}

export async function runJobs<T>(
  out: Output,
  label: string,
  jobs: Job<T>[],
  opts: RunOptions,
): Promise<JobOutcome<T>[]> {
  if (jobs.length === 0) return [];
  const overall = new Meter();
  const outcomes: JobOutcome<T>[] = new Array(jobs.length);
  const runOne = async (i: number, onTick?: (meter: Meter) => void): Promise<void> => {
    const job = jobs[i] as Job<T>;
    if (opts.abort.signal.aborted) {
      outcomes[i] = {
        title: job.title,
        ok: false,
        error: new Error("not started after an earlier failure"),
        skipped: true,
      };
      return;
    }
    const mine = new Meter();
    const report: JobReport = {
      planned: (n) => ((mine.planned += n), (overall.planned += n), onTick?.(mine)),
      moved: (n) => ((mine.moved += n), (overall.moved += n), onTick?.(mine)),
    };
    try {
      const value = await job.run(report);
      outcomes[i] = { title: job.title, ok: true, value, ms: Date.now() - mine.start };
    } catch (error) {
      outcomes[i] = { title: job.title, ok: false, error, skipped: false };
      if (!opts.continueOnError) opts.abort.abort();
    }
  };
  if (out.mode === "tty" && !out.opts.quiet)
    await runWithListr(out, label, jobs, overall, runOne, outcomes, opts);
  else await runWithLines(out, label, jobs, overall, runOne, outcomes, opts);
  return outcomes;
}

type RunOne = (i: number, onTick?: (m: Meter) => void) => Promise<void>;

async function runWithLines<T>(
  out: Output,
  label: string,
  jobs: Job<T>[],
  overall: Meter,
  runOne: RunOne,
  outcomes: JobOutcome<T>[],
  opts: RunOptions,
): Promise<void> {
  const limit = pLimit(opts.concurrency);
  const timer = setInterval(() => out.info(`${label}: ${overall.line()}`), LOG_EVERY_MS);
  try {
    await Promise.all(
      jobs.map((job, i) =>
        limit(async () => {
          await runOne(i);
          const o = outcomes[i];
          if (o?.ok) out.info(`  ✔ ${job.title} (${formatDuration(o.ms)})`);
          else if (o && !o.skipped) out.info(`  ✖ ${job.title}: ${firstLine(o.error)}`);
        }),
      ),
    );
  } finally {
    clearInterval(timer);
  }
  out.info(`${label}: ${formatBytes(overall.moved)} moved in ${formatDuration(Date.now() - overall.start)}`);
}

async function runWithListr<T>(
  out: Output,
  label: string,
  jobs: Job<T>[],
  overall: Meter,
  runOne: RunOne,
  outcomes: JobOutcome<T>[],
  opts: RunOptions,
) {
  // Failures are in `outcomes`; listr2 only draws them, so what it throws at the end is not news.
  await out
    .tasks<object>(
      [
        {
          title: label,
          task: (_ctx, parent) => {
            const tick = throttle(() => (parent.title = `${label} — ${overall.line()}`));
            return parent.newListr(
              jobs.map((job, i) => ({
                title: job.title,
                task: async (_c: object, task: { title: string }) => {
                  const update = throttle((m: Meter) => (task.title = `${job.title} — ${m.line()}`));
                  await runOne(i, (m) => (update(m), tick()));
                  task.title = job.title;
                  const o = outcomes[i];
                  if (o && !o.ok) throw o.error;
                },
              })),
              { concurrent: opts.concurrency, exitOnError: false },
            );
          },
        },
      ],
      {},
    )
    .catch(() => undefined);
}

function throttle<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
  let last = 0;
  return (...args: A) => {
    const now = Date.now();
    if (now - last >= REFRESH_MS) {
      last = now;
      fn(...args);
    }
  };
}

export function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split("\n")[0] ?? "";
}
