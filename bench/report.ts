/** The results: one row per step, the targets with pass/fail marks, as a table and as JSON. */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Check } from "./verify.js";

export interface Measured {
  seconds: number;
  peakMb: number | null;
}

/** How a bundle command did: measured, failed (with its first error line) or not run. */
export type Outcome =
  | ({ status: "ok" } & Measured)
  | ({ status: "failed"; error: string } & Measured)
  | { status: "skipped"; reason: string };

export interface Row {
  id: string;
  step: string;
  skopeo: Measured | null;
  /** The bare Node floor of the same step (bench/floors.ts), where there is one. */
  floor?: Measured;
  bundle: Outcome;
  /** Digest checks of what each tool produced against the source. */
  checks: { skopeo?: Check; bundle?: Check };
  notes: string[];
  /** For the update-bundle row: the bytes of the full bundle and of the update bundle. */
  sizes?: { fullBytes: number; updateBytes: number };
}

export type Mark = "pass" | "FAIL" | "n/a";

export interface Target {
  name: string;
  goal: string;
  value: string;
  mark: Mark;
}

export const PEAK_LIMIT_MB = 100;
/** bundle against skopeo, per step (issue 12's goals). */
export const RATIO_LIMITS: Record<string, number> = { prepare: 0.45, upload: 0.48 };
export const NOOP_LIMIT_S = 0.25;
/** prepare and upload within 10 % of the bare floors (issue 12). */
export const FLOOR_LIMIT = 1.1;
/** A progress display on a terminal may cost 5 % over output to a log. */
export const TERMINAL_LIMIT = 1.05;

/** bundle's time over the bare floor's. */
export function floorRatio(row: Row): number | null {
  if (!row.floor || row.bundle.status !== "ok" || row.floor.seconds <= 0) return null;
  return row.bundle.seconds / row.floor.seconds;
}

export function ratio(row: Row): number | null {
  if (!row.skopeo || row.bundle.status !== "ok" || row.skopeo.seconds <= 0) return null;
  return row.bundle.seconds / row.skopeo.seconds;
}

/** "not built" for the stages still stubbed out, else the error line. */
export function bundleLabel(outcome: Outcome): string {
  if (outcome.status === "ok") return fmt(outcome.seconds, 2);
  if (outcome.status === "skipped") return `skipped: ${outcome.reason}`;
  return /not built/i.test(outcome.error) ? "not built" : outcome.error;
}

export function targets(rows: Row[]): Target[] {
  const list: Target[] = [];
  const byId = (id: string) => rows.find((r) => r.id === id);
  const ratioTarget = (id: string, what: string, limit: number) => {
    const row = byId(id);
    if (!row) return;
    const r = ratio(row);
    list.push({
      name: `${row.step}: ${what}`,
      goal: `≤ ${limit}`,
      value: r === null ? bundleLabel(row.bundle) : fmt(r, 2),
      mark: r === null ? notMeasured(row) : r <= limit && digestsOk(row) ? "pass" : "FAIL",
    });
  };
  for (const id of ["prepare", "upload"]) ratioTarget(id, "bundle/skopeo", RATIO_LIMITS[id] ?? 0.5);
  for (const id of ["prepare", "upload"]) {
    const row = byId(id);
    const f = row ? floorRatio(row) : null;
    if (row && f !== null)
      list.push({
        name: `${row.step}: bundle/floor`,
        goal: `≤ ${FLOOR_LIMIT}`,
        value: fmt(f, 2),
        mark: f <= FLOOR_LIMIT ? "pass" : "FAIL",
      });
  }
  for (const id of ["prepare-tty", "upload-tty"]) ratioTarget(id, "terminal/log", TERMINAL_LIMIT);
  const noop = byId("noop");
  if (noop) {
    const b = noop.bundle;
    list.push({
      name: noop.step,
      goal: `< ${NOOP_LIMIT_S} s`,
      value: b.status === "ok" ? `${fmt(b.seconds, 3)} s` : bundleLabel(b),
      mark: b.status === "ok" ? (b.seconds < NOOP_LIMIT_S ? "pass" : "FAIL") : notMeasured(noop),
    });
  }
  for (const row of rows) {
    if (row.bundle.status === "skipped") continue;
    const peak = row.bundle.peakMb;
    list.push({
      name: `${row.step}: bundle peak RSS`,
      goal: `< ${PEAK_LIMIT_MB} MB`,
      value: peak === null ? "not measured" : `${fmt(peak, 0)} MB`,
      mark: peak === null || row.bundle.status !== "ok" ? "n/a" : peak < PEAK_LIMIT_MB ? "pass" : "FAIL",
    });
  }
  for (const row of rows) {
    const check = row.checks.bundle;
    if (!check) continue;
    list.push({
      name: `${row.step}: bundle digests = source`,
      goal: `${check.checked} of ${check.checked}`,
      value: `${check.checked - check.mismatches.length} of ${check.checked}`,
      mark: check.mismatches.length === 0 ? "pass" : "FAIL",
    });
  }
  return list;
}

function digestsOk(row: Row): boolean {
  return (row.checks.bundle?.mismatches.length ?? 0) === 0;
}

/** A stage that does not run yet has no figure: that is "n/a", not a pass. */
function notMeasured(row: Row): Mark {
  return row.bundle.status === "failed" && !/not built/i.test(row.bundle.error) ? "FAIL" : "n/a";
}

export function printTable(rows: Row[], list: Target[], log: (line: string) => void): void {
  const header = [
    "step",
    "skopeo s",
    "floor s",
    "bundle s",
    "ratio",
    "/floor",
    "bundle peak MB",
    "skopeo peak MB",
    "floor peak MB",
    "digests",
  ];
  const body = rows.map((row) => {
    const [r, f] = [ratio(row), floorRatio(row)];
    const peak = row.bundle.status === "skipped" ? null : row.bundle.peakMb;
    return [
      row.step,
      row.skopeo ? fmt(row.skopeo.seconds, 2) : "-",
      row.floor ? fmt(row.floor.seconds, 2) : "-",
      truncate(bundleLabel(row.bundle), 48),
      r === null ? "-" : fmt(r, 2),
      f === null ? "-" : fmt(f, 2),
      peak === null || row.bundle.status !== "ok" ? "-" : fmt(peak, 0),
      row.skopeo?.peakMb == null ? "-" : fmt(row.skopeo.peakMb, 0),
      row.floor?.peakMb == null ? "-" : fmt(row.floor.peakMb, 0),
      digestSummary(row),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => cells[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 || i === 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  log(line(header));
  log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const cells of body) log(line(cells));
  log("");
  log("Targets:");
  const nameWidth = Math.max(...list.map((t) => t.name.length));
  for (const t of list) {
    const mark = t.mark === "pass" ? "[pass]" : t.mark === "FAIL" ? "[FAIL]" : "[n/a ]";
    log(`  ${mark} ${t.name.padEnd(nameWidth)}  ${t.goal.padEnd(10)}  ${truncate(t.value, 80)}`);
  }
}

/** "s ok / b ok": each tool's result checked against the source. */
function digestSummary(row: Row): string {
  const part = (who: string, check: Check | undefined) =>
    check ? `${who} ${check.mismatches.length === 0 ? "ok" : `${check.mismatches.length} bad`}` : undefined;
  const parts = [part("skopeo", row.checks.skopeo), part("bundle", row.checks.bundle)].filter(Boolean);
  return parts.length ? parts.join(", ") : "-";
}

export async function writeJson(file: string, data: unknown): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(data, null, 2) + "\n");
}

export function fmt(value: number, digits: number): string {
  return value.toFixed(digits);
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max - 1) + "…";
}

export function mb(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
