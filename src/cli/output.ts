/**
 * Where a run's words go. Results go to stdout (as JSON with --json); progress and logs go to
 * stderr. On a TTY progress is drawn by listr2; otherwise it is plain lines, one per event.
 */
import { Listr, ProcessOutput, type ListrTask } from "listr2";

export type OutputMode = "tty" | "plain" | "json";

export interface OutputOptions {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

export class Output {
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
    if (!this.opts.quiet) this.stderr.write(`${line}\n`);
  }

  /** Detail for --verbose only. */
  debug(line: string): void {
    if (this.opts.verbose) this.stderr.write(`${line}\n`);
  }

  /** Something the user should read even with --quiet. */
  warn(line: string): void {
    this.stderr.write(`warning: ${line}\n`);
  }

  error(line: string): void {
    this.stderr.write(`${line}\n`);
  }

  /** The command's result: `human` lines on stdout, or `data` as JSON with --json. */
  result(data: unknown, human: () => string[]): void {
    if (this.mode === "json") this.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
    else for (const line of human()) this.stdout.write(`${line}\n`);
  }

  /** Runs tasks with a progress display that fits the terminal (or none with --quiet/--json). */
  async tasks<Ctx extends object>(
    tasks: ListrTask<Ctx>[],
    ctx: Ctx,
    concurrent: boolean | number = false,
  ): Promise<Ctx> {
    const renderer =
      this.opts.quiet || this.mode === "json" ? "silent" : this.mode === "tty" ? "default" : "simple";
    const list = new Listr<Ctx>(tasks, {
      concurrent,
      exitOnError: true,
      renderer,
      // Progress is not the result: it goes to stderr so stdout stays clean for pipes and --json.
      rendererOptions: {
        collapseSubtasks: false,
        processOutput: new ProcessOutput(this.stderr, this.stderr),
      },
      ctx,
    } as ConstructorParameters<typeof Listr<Ctx>>[1]);
    return list.run();
  }
}
