/**
 * `bundle serve --registry-port` under parallel pulls: its peak RSS while N clients each read
 * every image of a prepared bundle (manifest by tag, then every blob, hashed and checked
 * against its digest), all at once. Memory must stay flat whatever the blobs' size: each blob
 * is streamed from the bundle. A figure for the bench table, not a timed test.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { Lock } from "../src/bundle/lock.js";
import { parseMirror } from "../src/config/mirror.js";
import { GNU_TIME, hasGnuTime, readPeak } from "./exec.js";
import type { Row } from "./report.js";

const LISTENING = /registry: .* at (http:\/\/[^\s,]+), read-only[\s\S]*Deploy against it: .*\n/;

/** Serves `bundleDir` with `bundle serve`, runs `pulls` pulls of every image at once, then stops it. */
export async function servePulls(cli: string, bundleDir: string, label: string, pulls: number): Promise<Row> {
  const row: Row = {
    id: "serve-pulls",
    step: `serve: ${pulls} parallel pulls (${label})`,
    skopeo: null,
    bundle: { status: "skipped", reason: "not run" },
    checks: {},
    notes: [],
  };
  const lock = JSON.parse(await readFile(path.join(bundleDir, "bundle.lock.json"), "utf8")) as Lock;
  const tmp = await mkdtemp(path.join(os.tmpdir(), "bench-serve-"));
  const rssFile = path.join(tmp, "rss");
  const args = [cli, "serve", "--host", "127.0.0.1", "--no-fileserver", "--registry-port", "0", bundleDir];
  const timed = hasGnuTime();
  const [file, argv] = timed
    ? [GNU_TIME, ["-f", "%M", "-o", rssFile, process.execPath, ...args]]
    : [process.execPath, args];
  // Its own process group, so the signal that stops it reaches bundle under GNU time.
  const child = spawn(file, argv, { stdio: ["ignore", "ignore", "pipe"], detached: true });
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  try {
    const url = await listening(child.stderr);
    const started = performance.now();
    const bytes = await Promise.all(Array.from({ length: pulls }, () => pullAll(url, lock)));
    const seconds = (performance.now() - started) / 1000;
    const hwm = timed ? null : await highWaterMb(child.pid);
    // SIGINT, which GNU time ignores while it waits: it survives to write the figure.
    process.kill(-(child.pid ?? 0), "SIGINT");
    await exited;
    row.bundle = { status: "ok", seconds, peakMb: timed ? await readPeak(rssFile) : hwm };
    row.notes.push(`${pulls} pulls of ${bytes[0] ?? 0} bytes each, every blob's digest checked`);
  } catch (err) {
    if (child.exitCode === null) process.kill(-(child.pid ?? 0), "SIGINT");
    await exited;
    row.bundle = { status: "failed", error: (err as Error).message, seconds: 0, peakMb: null };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return row;
}

/** Without GNU time, the kernel's peak RSS of the process (VmHWM), read while it still runs. */
async function highWaterMb(pid: number | undefined): Promise<number | null> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const kib = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]);
  return kib > 0 ? kib / 1024 : null;
}

function listening(stderr: NodeJS.ReadableStream | null): Promise<string> {
  let text = "";
  return new Promise((resolve, reject) => {
    stderr?.setEncoding("utf8");
    stderr?.on("data", (chunk: string) => {
      text += chunk;
      const url = LISTENING.exec(text)?.[1];
      if (url) resolve(url);
    });
    stderr?.once("end", () => reject(new Error(`bundle serve stopped: ${text.trim().split("\n").at(-1)}`)));
  });
}

/** One client reading every image: its manifest by tag, then each blob; the bytes it read. */
async function pullAll(url: string, lock: Lock): Promise<number> {
  let total = 0;
  for (const img of lock.images) {
    const m = parseMirror(img.mirror);
    const repo = `${url}/v2/${m.repository}`;
    total += await fetchChecked(`${repo}/manifests/${m.tag ?? img.mirrorDigest}`, img.mirrorDigest);
    for (const p of img.platforms) total += await fetchChecked(`${repo}/manifests/${p.digest}`, p.digest);
    for (const b of img.blobs) total += await fetchChecked(`${repo}/blobs/${b.digest}`, b.digest);
  }
  return total;
}

/** GETs `url`, hashing the body as it arrives; fails unless it is `digest`'s bytes. */
function fetchChecked(url: string, digest: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        const hash = createHash("sha256");
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          hash.update(chunk);
          size += chunk.length;
        });
        res.on("error", reject);
        res.on("end", () => {
          const got = `sha256:${hash.digest("hex")}`;
          if (res.statusCode === 200 && got === digest) resolve(size);
          else reject(new Error(`${url}: HTTP ${res.statusCode}, ${size} bytes of ${got}`));
        });
      })
      .on("error", reject);
  });
}
