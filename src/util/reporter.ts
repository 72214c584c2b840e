/**
 * What the work says while it runs, and how it runs many transfers with visible progress: the
 * interface stages and features write to. The command line implements it (src/cli/output.ts,
 * src/cli/progress.ts), so nothing below the CLI knows of terminals, frames or JSON.
 */

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

export interface Reporter {
  /** A line of progress or information; silenced by --quiet. */
  info(line: string): void;
  /** Detail for --verbose only. */
  debug(line: string): void;
  /** Something the user should read even with --quiet. */
  warn(line: string): void;
  error(line: string): void;
  /** The command's result: `human` lines, or `data` as JSON with --json. */
  result(data: unknown, human: () => string[]): void;
  /** Runs `jobs` with bounded concurrency, their progress shown under `label`; one outcome each. */
  runJobs<T>(label: string, jobs: Job<T>[], opts: RunOptions): Promise<JobOutcome<T>[]>;
}
