/** Human-readable sizes and durations for progress lines and tables, and sizes read from flags. */
import { InputError } from "./errors.js";

export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
}

/** A plain text table: columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** `1 image`, `2 images`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** A size flag: bytes, or with a binary suffix: 512M, 20G, 1T (K, M, G, T; KiB… too). */
export function parseByteSize(text: string, flag = "--max-upload-size"): number {
  const match = /^(\d+)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  const unit = { "": 0, k: 1, m: 2, g: 3, t: 4 }[(match?.[2] ?? "").toLowerCase()];
  if (!match?.[1] || unit === undefined)
    throw new InputError(`${flag} ${text}: write a size in bytes, e.g. 20G or 21474836480`);
  const bytes = Number(match[1]) * 1024 ** unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InputError(`${flag} ${text}: out of range`);
  return bytes;
}

/** `sha256:` and the first 12 hex digits: enough to tell digests apart in a table. */
export function shortDigest(digest: string): string {
  return digest.startsWith("sha256:") ? `sha256:${digest.slice(7, 19)}` : digest;
}
