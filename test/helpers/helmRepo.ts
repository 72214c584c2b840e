/**
 * A Helm chart repository as helm serves one: a folder of `.tgz` archives and the `index.yaml`
 * the real `helm repo index` writes, served read-only over loopback HTTP. Charts are made by the
 * real `helm package`; `helm()` runs the real helm with its config, cache and data folders under
 * the test's own folder, so no test touches the user's helm setup.
 */
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdir, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { HELM } from "./helm.js";

export interface HelmRepo {
  /** `http://127.0.0.1:PORT/` */
  url: string;
  /** The folder served. */
  dir: string;
  /** Each path asked for, in order. */
  requests: string[];
  close(): Promise<void>;
}

/** Serves `dir`'s files (no listing, no path out of it) on a free port of 127.0.0.1. */
export async function serveHelmRepo(dir: string): Promise<HelmRepo> {
  await mkdir(dir, { recursive: true });
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname).replace(/^\/+/, "");
    requests.push(`/${rel}`);
    const file = path.join(dir, rel);
    if (rel === "" || rel.split("/").includes("..")) return void res.writeHead(404).end();
    stat(file).then(
      (info) => {
        res.writeHead(200, { "content-length": info.size });
        createReadStream(file).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    dir,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Runs the real helm with its homes under `home`; the combined output, or an error with it. */
export async function helm(home: string, args: string[], cwd = home): Promise<string> {
  await mkdir(home, { recursive: true });
  const env = {
    ...process.env,
    HELM_CONFIG_HOME: path.join(home, "config"),
    HELM_CACHE_HOME: path.join(home, "cache"),
    HELM_DATA_HOME: path.join(home, "data"),
    HELM_REGISTRY_CONFIG: path.join(home, "registry.json"),
  };
  return new Promise((resolve, reject) => {
    execFile(HELM, args, { cwd, env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`helm ${args.join(" ")}: ${err.message} ${stderr}${stdout}`));
      else resolve(stdout + stderr);
    });
  });
}

/** Writes a chart folder: `files` maps paths inside it to their text. */
export async function writeChart(dir: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), text);
  }
}
