/**
 * The file half of upload: every file of the bundle, and every template of files/ rendered with
 * the site's values, to `<fileserver>/<bundle name>/<path>`. A file the server already holds with
 * the same sha256 is skipped; at the end the server's listing must match, file by file.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import type { Lock, LockTemplate } from "../bundle/lock.js";
import { parseDestPath, type Values } from "../config/model.js";
import { renderTemplate } from "../templates/render.js";
import { InputError, WorkError } from "../util/errors.js";
import { runJobs, type Job } from "../cli/progress.js";
import type { Output } from "../cli/output.js";
import { throwIfFailed } from "./images.js";

/** What upload needs of a file server (src/fileserver/client.ts). */
export interface FileTarget {
  list(bundle: string): Promise<{ path: string; size: number; sha256: string }[]>;
  put(
    bundle: string,
    relPath: string,
    file: string,
    sha256: string,
    onBytes?: (n: number) => void,
  ): Promise<void>;
  url(bundle: string, relPath: string): string;
}

export interface Outgoing {
  path: string;
  file: string;
  sha256: string;
  size: number;
}

export async function uploadFiles(
  lock: Lock,
  dir: string,
  target: FileTarget,
  values: Values,
  opts: { out: Output; continueOnError: boolean },
): Promise<{ sent: string[]; skipped: string[]; bytesMoved: number }> {
  const work = await mkdtemp(path.join(os.tmpdir(), "bundle-upload-"));
  try {
    const outgoing = await plannedFiles(lock, dir, values, work);
    const remote = new Map((await target.list(lock.name)).map((f) => [f.path, f.sha256]));
    // An update bundle does not carry some files: the site has them already (checked before).
    const carried = new Set(lock.update?.omittedFiles ?? []);
    const todo = outgoing.filter((f) => remote.get(f.path) !== f.sha256 && !carried.has(f.path));
    let moved = 0;
    const jobs: Job<void>[] = todo.map((f) => ({
      title: target.url(lock.name, f.path),
      run: async (report) => {
        report.planned(f.size);
        await target.put(lock.name, f.path, f.file, f.sha256, (n) => (report.moved(n), (moved += n)));
      },
    }));
    const outcomes = await runJobs(opts.out, "files", jobs, {
      concurrency: 4,
      continueOnError: opts.continueOnError,
      abort: new AbortController(),
    });
    throwIfFailed(outcomes, "files");
    await verifyListing(lock.name, target, outgoing);
    return {
      sent: todo.map((f) => f.path),
      skipped: outgoing.filter((f) => !todo.includes(f)).map((f) => f.path),
      bytesMoved: moved,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** What the file server should hold: the bundle's files and its files/ templates rendered into `work`. */
export async function plannedFiles(
  lock: Lock,
  dir: string,
  values: Values,
  work: string,
): Promise<Outgoing[]> {
  return [
    ...lock.files.map((f) => ({
      path: f.path,
      file: path.join(dir, "files", f.path),
      sha256: f.sha256,
      size: f.size,
    })),
    ...(await renderFileTemplates(lock, dir, values, work)),
  ];
}

/** A template the bundle kept, rendered with the run's values; a site value not given names its flag. */
export async function renderLockTemplate(t: LockTemplate, dir: string, values: Values): Promise<string> {
  const missing = t.siteValues.filter((v) => values[v] === undefined);
  if (missing.length > 0) {
    const flag = missing.includes("IMG_REPO") ? "--registry" : "--fileserver";
    throw new InputError(`${t.dest} uses ${missing.join(", ")}: give ${flag} so it can be rendered`);
  }
  const text = await readFile(path.join(dir, t.source), "utf8");
  return renderTemplate({ syntax: t.syntax, text, origin: t.origin, dest: parseDestPath(t.dest) }, values);
}

/** Templates of files/ rendered with the site's values, into a temporary folder. */
async function renderFileTemplates(
  lock: Lock,
  dir: string,
  values: Values,
  work: string,
): Promise<Outgoing[]> {
  const out: Outgoing[] = [];
  for (const t of lock.templates.filter((x) => x.dest.startsWith("files/"))) {
    const text = await renderLockTemplate(t, dir, values);
    const rel = t.dest.slice("files/".length);
    const file = path.join(work, String(out.length));
    await writeFile(file, text);
    out.push({
      path: rel,
      file,
      sha256: createHash("sha256").update(text).digest("hex"),
      size: Buffer.byteLength(text),
    });
  }
  return out;
}

async function verifyListing(bundle: string, target: FileTarget, expected: Outgoing[]): Promise<void> {
  const remote = new Map((await target.list(bundle)).map((f) => [f.path, f.sha256]));
  const wrong = expected.filter((f) => remote.get(f.path) !== f.sha256);
  if (wrong.length > 0) {
    const lines = wrong.map(
      (f) =>
        `  ${target.url(bundle, f.path)}: expected sha256 ${f.sha256}, the server has ${remote.get(f.path) ?? "nothing"}`,
    );
    throw new WorkError(`the file server does not hold what was uploaded:\n${lines.join("\n")}`);
  }
}
