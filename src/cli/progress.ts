/**
 * Running many transfers (images, files) with bounded concurrency and visible progress: per
 * item and overall bytes, rate and ETA on a TTY; one line per finished item, and an overall
 * line every few seconds, when output is a log.
 *
 * On a TTY the cost of the display does not grow with the bytes: jobs only add to counters,
 * and a frame is drawn from them four times a second (widths of titles measured once each),
 * then a final frame from the final counts, so the last thing on the screen is the total.
 */
import pLimit from "p-limit";
import { formatBytes, formatDuration } from "../util/format.js";
import { firstLine } from "../util/errors.js";
import type { Job, JobOutcome, JobReport, RunOptions } from "../util/reporter.js";
import type { LiveArea, Output } from "./output.js";

const REFRESH_MS = 250;
const LOG_EVERY_MS = 5000;

class Meter {
  planned = 0;
  moved = 0;
  readonly start = Date.now();

  line(now = Date.now()): string {
    const ms = now - this.start;
    const rate = ms > 0 ? (this.moved * 1000) / ms : 0;
    const left = Math.max(0, this.planned - this.moved);
    const eta = rate > 0 && left > 0 ? `, ETA ${formatDuration((left / rate) * 1000)}` : "";
    return `${formatBytes(this.moved)} / ${formatBytes(this.planned)}, ${formatBytes(Math.round(rate))}/s${eta}`;
  }

  /** What it came to: bytes moved of those planned, in how long. */
  summary(now = Date.now()): string {
    const ms = now - this.start;
    const rate = ms > 0 ? (this.moved * 1000) / ms : 0;
    return `${formatBytes(this.moved)} / ${formatBytes(this.planned)} in ${formatDuration(ms)}, ${formatBytes(Math.round(rate))}/s`;
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
  const runOne = async (i: number, onStart?: (meter: Meter) => void): Promise<void> => {
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
    onStart?.(mine);
    const report: JobReport = {
      planned: (n) => ((mine.planned += n), (overall.planned += n)),
      moved: (n) => ((mine.moved += n), (overall.moved += n)),
    };
    try {
      const value = await job.run(report);
      outcomes[i] = { title: job.title, ok: true, value, ms: Date.now() - mine.start };
    } catch (error) {
      outcomes[i] = { title: job.title, ok: false, error, skipped: false };
      if (!opts.continueOnError) opts.abort.abort();
    }
  };
  const area = out.liveArea();
  if (area) await runOnTerminal(area, label, jobs, overall, runOne, outcomes, opts);
  else await runWithLines(out, label, jobs, overall, runOne, outcomes, opts);
  return outcomes;
}

type RunOne = (i: number, onStart?: (m: Meter) => void) => Promise<void>;

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

async function runOnTerminal<T>(
  area: LiveArea,
  label: string,
  jobs: Job<T>[],
  overall: Meter,
  runOne: RunOne,
  outcomes: JobOutcome<T>[],
  opts: RunOptions,
): Promise<void> {
  const display = new Display(area, label, overall);
  const limit = pLimit(opts.concurrency);
  const timer = setInterval(() => display.draw(), REFRESH_MS);
  try {
    await Promise.all(
      jobs.map((job, i) =>
        limit(async () => {
          let meter: Meter | undefined;
          await runOne(i, (m) => display.started(i, job.title, (meter = m)));
          const o = outcomes[i];
          if (!o) return;
          if (o.ok) display.finished(i, `✔ ${job.title} — ${meter?.summary() ?? "done"}`);
          else if (!o.skipped) display.finished(i, `✖ ${job.title}: ${firstLine(o.error)}`);
        }),
      ),
    );
  } finally {
    clearInterval(timer);
    display.end(outcomes.filter((o) => !o.ok && !o.skipped).length, jobs.length);
  }
}

/** Item and overall meters, drawn into a `LiveArea` only when asked: jobs just count bytes. */
class Display {
  private readonly running = new Map<number, { title: string; width: number; meter: Meter }>();
  /** Lines of finished items, printed above the frame at the next draw. */
  private done = "";
  private readonly labelWidth: number;

  constructor(
    private readonly area: LiveArea,
    private readonly label: string,
    private readonly overall: Meter,
  ) {
    this.labelWidth = displayWidth(label);
  }

  started(i: number, title: string, meter: Meter): void {
    this.running.set(i, { title, width: displayWidth(title), meter });
  }

  finished(i: number, line: string): void {
    this.running.delete(i);
    this.done += `  ${fit(line, displayWidth(line), this.area.columns - 2)}\n`;
  }

  draw(): void {
    const now = Date.now();
    const columns = this.area.columns;
    const head = `${this.label} — ${this.overall.line(now)}`;
    const lines = [fit(head, this.labelWidth + head.length - this.label.length, columns)];
    // A frame taller than the terminal could not be drawn over: the items that fit, then a count.
    const shown = Math.min(this.running.size, Math.max(0, this.area.rows - 3));
    for (const item of [...this.running.values()].slice(0, shown)) {
      const meter = ` — ${item.meter.planned || item.meter.moved ? item.meter.line(now) : "checking"}`;
      const room = columns - 4 - meter.length;
      if (item.width <= room) lines.push(`  › ${item.title}${meter}`);
      else if (room >= 8) lines.push(`  › ${fit(item.title, item.width, room)}${meter}`);
      else lines.push(fit(`  › ${item.title}${meter}`, NaN, columns));
    }
    if (shown < this.running.size) lines.push(`  … ${this.running.size - shown} more`);
    this.area.draw(lines, this.done);
    this.done = "";
  }

  /** The final frame: the counts as they ended, in place of the live lines. */
  end(failed: number, of: number): void {
    const head = failed > 0 ? `✖ ${this.label} — ${failed} of ${of} failed, ` : `✔ ${this.label} — `;
    this.running.clear();
    this.area.draw([fit(head + this.overall.summary(), NaN, this.area.columns)], this.done);
    this.done = "";
    this.area.close();
  }
}

/** `text` cut to `columns` terminal cells; `width` is its width when known (NaN: measure it). */
function fit(text: string, width: number, columns: number): string {
  const w = Number.isNaN(width) ? displayWidth(text) : width;
  if (w <= columns) return text;
  if (columns <= 1) return "";
  let out = "";
  let used = 0;
  for (const ch of text) {
    const cw = charWidth(ch.codePointAt(0) ?? 0);
    if (used + cw > columns - 1) break;
    out += ch;
    used += cw;
  }
  return `${out}…`;
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** Terminal cells `text` takes: its length when it is plain ASCII, else counted per character. */
export function displayWidth(text: string): number {
  if (PRINTABLE_ASCII.test(text)) return text.length;
  let w = 0;
  for (const ch of text) w += charWidth(ch.codePointAt(0) ?? 0);
  return w;
}

/** 0 for combining marks and controls, 2 for East Asian wide and emoji ranges, else 1. */
function charWidth(cp: number): number {
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || (cp >= 0x300 && cp < 0x370) || cp === 0x200d) return 0;
  if ((cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0x20d0 && cp <= 0x20ff)) return 0;
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1faff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  )
    return 2;
  return 1;
}
