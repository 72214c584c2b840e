/**
 * Runs the built `bundle` executable on a pseudo-terminal (`script`), as a user would at a
 * prompt, and plays what it wrote back onto a screen: carriage return, line feed, cursor up,
 * erase below and erase line, the control sequences a redrawn display uses, and autowrap at the
 * last column. Anything else is kept as text, so a display that used more shows up as garbage.
 */
import { execFile } from "node:child_process";
import { CLI } from "./cli.js";

export interface TerminalResult {
  code: number;
  /** Every line the terminal shows at the end, top to bottom, trailing blank lines dropped. */
  screen: string[];
  /** What the program wrote, control sequences and all. */
  raw: string;
}

export function runCliOnTerminal(
  args: string[],
  opts: { cwd: string; columns?: number; rows?: number },
): Promise<TerminalResult> {
  const size = `stty rows ${opts.rows ?? 40} cols ${opts.columns ?? 120}`;
  const command = `${size} && exec ${[process.execPath, CLI, ...args].map(quote).join(" ")}`;
  return new Promise((resolve) => {
    execFile(
      "script",
      ["-qfec", command, "/dev/null"],
      { cwd: opts.cwd, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, screen: play(stdout, opts.columns ?? 120), raw: stdout });
      },
    );
  });
}

/**
 * The screen after `output`, as an unbounded list of lines (nothing scrolls away). A character
 * written past the last of `columns` wraps to the next line, as a terminal's autowrap does.
 */
export function play(output: string, columns: number): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  // eslint-disable-next-line no-control-regex -- an escape sequence is what it looks for
  const sequence = /^\x1b\[(\d*)([A-Za-z])/;
  for (let i = 0; i < output.length;) {
    const ch = output[i]!;
    if (ch === "\x1b") {
      const m = sequence.exec(output.slice(i, i + 16));
      if (m) {
        const n = m[1] ? Number(m[1]) : undefined;
        if (m[2] === "A") row = Math.max(0, row - (n ?? 1));
        else if (m[2] === "J" && (n ?? 0) === 0) {
          lines[row]!.length = col;
          lines.length = row + 1;
        } else if (m[2] === "K" && (n ?? 0) === 0) lines[row]!.length = col;
        else lines[row]!.push(...m[0]);
        i += m[0].length;
        continue;
      }
    }
    i++;
    if (ch === "\r") col = 0;
    else if (ch === "\n") {
      row++;
      while (lines.length <= row) lines.push([]);
    } else {
      if (col >= columns) {
        row++;
        col = 0;
        while (lines.length <= row) lines.push([]);
      }
      const line = lines[row]!;
      while (line.length < col) line.push(" ");
      line[col++] = ch;
    }
  }
  const screen = lines.map((l) => l.join("").trimEnd());
  while (screen.length > 0 && screen[screen.length - 1] === "") screen.pop();
  return screen;
}

function quote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}
