/**
 * The file half of upload: every file of the bundle, and every template of files/ rendered with
 * the site's values, to `<fileserver>/<bundle name>/<path>`. A file the server already holds with
 * the same sha256 is skipped; at the end the server's listing must match, file by file.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { LockTemplate } from "../bundle/lock.js";
import type { BundleContents } from "../bundle/contents.js";
import type { FileBody } from "../fileserver/client.js";
import { parseDestPath, type Values } from "../config/model.js";
import { renderTemplate } from "../templates/render.js";
import { InputError, WorkError } from "../util/errors.js";
import type { Job, Reporter } from "../util/reporter.js";
import { throwIfFailed } from "./transfer.js";

/** What upload needs of a file server (src/fileserver/client.ts). */
export interface FileTarget {
  list(bundle: string): Promise<{ path: string; size: number; sha256: string }[]>;
  put(
    bundle: string,
    relPath: string,
    body: FileBody,
    sha256: string,
    onBytes?: (n: number) => void,
  ): Promise<void>;
  url(bundle: string, relPath: string): string;
}

export interface Outgoing {
  /** Path under the bundle's folder on the file server. */
  path: string;
  sha256: string;
  size: number;
  /** Where the bytes come from: the bundle's `files/` (folder or archive), or a rendered template. */
  body: FileBody;
  /** The bundle path of the bytes, for messages; undefined for a rendered template. */
  from?: string;
}

export async function uploadFiles(
  bundle: BundleContents,
  target: FileTarget,
  values: Values,
  opts: { out: Reporter; continueOnError: boolean },
): Promise<{ sent: string[]; skipped: string[]; bytesMoved: number }> {
  const lock = bundle.lock;
  const outgoing = await plannedFiles(bundle, values);
  const remote = new Map((await target.list(lock.name)).map((f) => [f.path, f.sha256]));
  // An update bundle does not carry some files: the site has them already (checked before).
  const carried = new Set(lock.update?.omittedFiles ?? []);
  const todo = outgoing.filter((f) => remote.get(f.path) !== f.sha256 && !carried.has(f.path));
  await requirePresent(bundle, todo);
  let moved = 0;
  const jobs: Job<void>[] = todo.map((f) => ({
    title: target.url(lock.name, f.path),
    run: async (report) => {
      report.planned(f.size);
      await target.put(lock.name, f.path, f.body, f.sha256, (n) => (report.moved(n), (moved += n)));
    },
  }));
  const outcomes = await opts.out.runJobs("files", jobs, {
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
}

/** Every file to send is in the bundle with the size the lock gives, or nothing is sent. */
async function requirePresent(bundle: BundleContents, todo: Outgoing[]): Promise<void> {
  const wrong: string[] = [];
  for (const f of todo) {
    if (f.from === undefined) continue;
    const size = (await bundle.stat(f.from))?.size;
    if (size === undefined) wrong.push(`${f.from} is missing`);
    else if (size !== f.size) wrong.push(`${f.from} has ${size} bytes; the lock says ${f.size}`);
  }
  if (wrong.length > 0)
    throw new WorkError(
      `${bundle.where} is incomplete; nothing was uploaded:\n${wrong.map((w) => `  - ${w}`).join("\n")}`,
    );
}

/** What the file server should hold: the bundle's files and its files/ templates rendered. */
export async function plannedFiles(bundle: BundleContents, values: Values): Promise<Outgoing[]> {
  const carried = bundle.lock.files.map((f): Outgoing => {
    const from = `files/${f.path}`;
    return {
      path: f.path,
      sha256: f.sha256,
      size: f.size,
      from,
      body: { size: f.size, open: () => bundle.open(from) },
    };
  });
  return [...carried, ...(await renderFileTemplates(bundle, values))];
}

/** A template the bundle kept, rendered with the run's values; a site value not given names its flag. */
export async function renderLockTemplate(
  t: LockTemplate,
  bundle: BundleContents,
  values: Values,
): Promise<string> {
  const missing = t.siteValues.filter((v) => values[v] === undefined);
  if (missing.length > 0) {
    const flag = missing.includes("IMG_REPO") ? "--registry" : "--fileserver";
    throw new InputError(`${t.dest} uses ${missing.join(", ")}: give ${flag} so it can be rendered`);
  }
  // The lock (and a signature over it) covers the template: what is rendered is what was prepared.
  // Checked here, once, with a message that says it is a template (from a folder or an archive).
  const bytes = await bundle.readFile(t.source, { check: false });
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  if (sha256 !== t.sha256)
    throw new WorkError(
      `${t.source}: sha256 ${sha256}, the lock says ${t.sha256}; the template was changed after prepare`,
    );
  const text = bytes.toString("utf8");
  return renderTemplate({ syntax: t.syntax, text, origin: t.origin, dest: parseDestPath(t.dest) }, values);
}

/** Templates of files/ rendered with the site's values; held in memory (templates are small text). */
async function renderFileTemplates(bundle: BundleContents, values: Values): Promise<Outgoing[]> {
  const out: Outgoing[] = [];
  for (const t of bundle.lock.templates.filter((x) => x.dest.startsWith("files/"))) {
    const bytes = Buffer.from(await renderLockTemplate(t, bundle, values));
    out.push({
      path: t.dest.slice("files/".length),
      sha256: createHash("sha256").update(bytes).digest("hex"),
      size: bytes.length,
      body: { size: bytes.length, open: () => Readable.from([bytes]) },
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
