/**
 * A YAML file kept together with its syntax tree, so any value or key found wrong later
 * (by the schema, or by the loader's own checks) can be pointed at by file, line and column.
 */
import { readFile } from "node:fs/promises";
import { isMap, isPair, isScalar, LineCounter, parseDocument, visit, type Document, type Node } from "yaml";
import { DefinitionError, InputError, type Diagnostic, type SourcePos } from "../util/errors.js";
import { fsReason } from "../util/files.js";

export type KeyPath = readonly (string | number)[];

export class YamlSource {
  private constructor(
    readonly file: string,
    readonly text: string,
    private readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
  ) {}

  /** Reads and parses `file`; a syntax error is a DefinitionError at its line and column. */
  static async load(file: string, displayName = file): Promise<YamlSource> {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new InputError(
        code === "ENOENT"
          ? `${displayName}: no such file`
          : `${displayName}: cannot read the file: ${fsReason(err)}`,
      );
    }
    return YamlSource.parse(text, displayName);
  }

  /**
   * `failsafe`: every scalar is a string, as Helm reads a Chart.yaml (`version: 1.10` is "1.10"),
   * except a plain empty value, `~` or `null`, which stays null.
   */
  static parse(text: string, displayName: string, opts: { failsafe?: boolean } = {}): YamlSource {
    const lines = new LineCounter();
    const doc = parseDocument(text, {
      lineCounter: lines,
      prettyErrors: false,
      uniqueKeys: true,
      ...(opts.failsafe ? { schema: "failsafe" as const } : {}),
    });
    const src = new YamlSource(displayName, text, doc, lines);
    // Only the first syntax error: the ones after it are mostly the parser losing its way.
    const first = doc.errors[0];
    if (first) {
      throw new DefinitionError([
        { pos: src.posAt(first.pos[0]), path: "", message: `YAML syntax error: ${firstLine(first.message)}` },
      ]);
    }
    if (opts.failsafe) visit(doc, { Scalar: (key, node) => void (key !== "key" && plainNull(node)) });
    return src;
  }

  /** The plain JavaScript value of the document. */
  data(): unknown {
    return this.doc.toJS({ maxAliasCount: 100 });
  }

  posAt(offset: number): SourcePos {
    const { line, col } = this.lines.linePos(offset);
    return { file: this.file, line, col };
  }

  /** Where the value at `path` starts; falls back to the nearest ancestor that exists. */
  pos(path: KeyPath): SourcePos {
    for (let n = path.length; n >= 0; n--) {
      const node = this.doc.getIn(path.slice(0, n), true) as Node | undefined;
      if (node?.range) return this.posAt(node.range[0]);
    }
    return { file: this.file, line: 1, col: 1 };
  }

  /** Where the key `key` of the map at `path` is written (for unknown keys). */
  keyPos(path: KeyPath, key: string): SourcePos {
    const map = path.length === 0 ? this.doc.contents : this.doc.getIn(path, true);
    if (isMap(map)) {
      for (const item of map.items) {
        if (isPair(item) && isScalar(item.key) && String(item.key.value) === key && item.key.range) {
          return this.posAt(item.key.range[0]);
        }
      }
    }
    return this.pos(path);
  }

  /** The line (1-based) where the block scalar at `path` starts its content. */
  contentPos(path: KeyPath): SourcePos {
    const node = this.doc.getIn(path, true);
    if (isScalar(node) && node.range) {
      const start = this.posAt(node.range[0]);
      const isBlock = node.type === "BLOCK_LITERAL" || node.type === "BLOCK_FOLDED";
      return isBlock ? { file: this.file, line: start.line + 1, col: 1 } : start;
    }
    return this.pos(path);
  }

  diag(path: KeyPath, message: string): Diagnostic {
    return { pos: this.pos(path), path: formatPath(path), message };
  }
}

/** `["prepare", 3, "git"]` → `prepare[3].git`. */
export function formatPath(path: KeyPath): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out === "" ? p : `.${p}`;
  return out;
}

/** A plain (unquoted) null in YAML's core schema becomes null: failsafe would make it a string. */
function plainNull(node: { type?: string; value: unknown }): void {
  if (node.type === "PLAIN" && /^(|~|null|Null|NULL)$/.test(String(node.value))) node.value = null;
}

function firstLine(s: string): string {
  return s.split("\n")[0] ?? s;
}
