/**
 * Where a run's words go. Results go to stdout (as JSON with --json); progress and logs go to
 * stderr. On a TTY progress is a few lines redrawn in place at the bottom (a `LiveArea`), with
 * every other line printed above them; otherwise it is plain lines, one per event.
 */

import type { Job, JobOutcome, Reporter, RunOptions } from "../util/reporter.js";
import { runJobs } from "./progress.js";

export type OutputMode = "tty" | "plain" | "json";

export interface OutputOptions {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

export class Output implements Reporter {
  readonly mode: OutputMode;
  constructor(
    readonly opts: OutputOptions,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {
    this.mode = opts.json ? "json" : stderr.isTTY ? "tty" : "plain";
  }

  /** A line of progress or information; silenced by --quiet. */
  info(line: string): void {
    if (!this.opts.quiet) this.write(`${line}\n`);
  }

  /** Detail for --verbose only. */
  debug(line: string): void {
    if (this.opts.verbose) this.write(`${line}\n`);
  }

  /** Something the user should read even with --quiet. */
  warn(line: string): void {
    this.write(`warning: ${line}\n`);
  }

  error(line: string): void {
    this.write(`${line}\n`);
  }

  /** The command's result: `human` lines on stdout, or `data` as JSON with --json. */
  result(data: unknown, human: () => string[]): void {
    if (this.mode === "json") this.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
    else for (const line of human()) this.stdout.write(`${line}\n`);
  }

  runJobs<T>(label: string, jobs: Job<T>[], opts: RunOptions): Promise<JobOutcome<T>[]> {
    return runJobs(this, label, jobs, opts);
  }

  /**
   * The bottom of the terminal for a progress display, while it lasts: lines written meanwhile
   * go above it. Undefined unless stderr is a TTY and --quiet and --json are off.
   */
  liveArea(): LiveArea | undefined {
    if (this.mode !== "tty" || this.opts.quiet) return undefined;
    const area = new LiveArea(this.stderr, () => {
      if (this.live === area) this.live = undefined;
    });
    this.live = area;
    return area;
  }

  private live: LiveArea | undefined;

  private write(text: string): void {
    if (this.live) this.live.print(text);
    else this.stderr.write(text);
  }
}

/**
 * A few lines at the bottom of a terminal, redrawn in place: the cursor goes back up over the
 * last frame, erases to the end of the screen and writes the next one, all in one write.
 * Lines must fit the terminal's width (`columns`), or the count of lines to go back is wrong.
 */
export class LiveArea {
  private frame = "";
  private drawn = 0;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly onClose: () => void,
  ) {}

  /** The width a line may take; one column is left free so that no line wraps. */
  get columns(): number {
    return Math.max(20, (this.stream.columns || 80) - 1);
  }

  /** The terminal's height: a frame must be shorter, or the cursor cannot go back over it all. */
  get rows(): number {
    return this.stream.rows || 24;
  }

  /** Replaces what the area shows with `lines`, after printing `above` (whole lines) over it. */
  draw(lines: string[], above = ""): void {
    this.frame = lines.length ? `${lines.join("\n")}\n` : "";
    this.stream.write(this.erase() + above + this.frame);
    this.drawn = lines.length;
  }

  /** Prints `text` (whole lines) above the area. */
  print(text: string): void {
    this.stream.write(this.erase() + text + this.frame);
  }

  /** Leaves what the area shows on the screen as ordinary lines; later output goes below. */
  close(): void {
    this.frame = "";
    this.drawn = 0;
    this.onClose();
  }

  private erase(): string {
    return this.drawn > 0 ? `\r\x1b[${this.drawn}A\x1b[J` : "";
  }
}
