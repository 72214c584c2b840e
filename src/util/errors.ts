/**
 * Errors that carry the exit code SPEC.md assigns: 2 when the user's input is wrong,
 * 1 when the work itself failed. The CLI prints `message` as is, so messages name what
 * they are about (file and line, image and digest, URL).
 */
export abstract class BundleError extends Error {
  abstract readonly exitCode: 1 | 2;
}

/** The input is wrong: usage, definition, a missing value. Exit 2. */
export class InputError extends BundleError {
  readonly exitCode = 2 as const;
  override name = "InputError";
}

/** The work failed: network, registry, digest mismatch, helm. Exit 1. */
export class WorkError extends BundleError {
  readonly exitCode = 1 as const;
  override name = "WorkError";
}

/** Work not finished because another item failed first: not a failure of its own. */
export class StoppedError extends WorkError {
  override name = "StoppedError";
}

/** A place in a source file, 1-based, as editors and compilers print it. */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

export function formatPos(pos: SourcePos): string {
  return `${pos.file}:${pos.line}:${pos.col}`;
}

/** One problem found in a definition; `path` is the dotted key path, e.g. `prepare[3].git`. */
export interface Diagnostic {
  pos: SourcePos;
  path: string;
  message: string;
  /** The rule that found it, for checks a user may skip (`--skip-lint RULE`). */
  rule?: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${formatPos(d.pos)} ${d.path ? `${d.path}: ` : ""}${d.message}`;
}

/** Every problem found while loading a definition, reported together so one run shows them all. */
export class DefinitionError extends InputError {
  override name = "DefinitionError";
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join("\n"));
  }
}

/** An error's first line, for a one-line account of it. */
export function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split("\n")[0] ?? "";
}
