/**
 * A Helm chart repository as helm serves one: a folder of `.tgz` archives and the `index.yaml`
 * the real `helm repo index` writes, served read-only over loopback HTTP, behind Basic auth
 * checked against a bcrypt hash as an htpasswd file holds it (as ChartMuseum or nginx do) when
 * given credentials. Charts are made by the real `helm package`; `helm()` runs the real helm
 * with its config, cache and data folders under the test's own folder, so no test touches the
 * user's helm setup.
 */
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdir, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import bcrypt from "bcryptjs";
import { HELM } from "./helm.js";
import type { Credentials } from "./http.js";

export interface HelmRepo {
  /** `http://127.0.0.1:PORT/` */
  url: string;
  /** The folder served. */
  dir: string;
  /** Each path asked for, in order. */
  requests: string[];
  /** The Authorization header of each request (undefined when it had none), in the same order. */
  authorizations: (string | undefined)[];
  close(): Promise<void>;
}

export interface HelmRepoOptions {
  /** Answer 401 unless a request carries these as Basic auth. */
  auth?: Credentials;
  /** Paths answered with a 302 to another URL (after the auth check). */
  redirects?: Record<string, string>;
}

/** Serves `dir`'s files (no listing, no path out of it) on a free port of 127.0.0.1. */
export async function serveHelmRepo(dir: string, opts: HelmRepoOptions = {}): Promise<HelmRepo> {
  await mkdir(dir, { recursive: true });
  const requests: string[] = [];
  const authorizations: (string | undefined)[] = [];
  const allowed = opts.auth ? htpasswdCheck(opts.auth) : () => true;
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname).replace(/^\/+/, "");
    requests.push(`/${rel}`);
    authorizations.push(req.headers.authorization);
    if (!allowed(req.headers.authorization))
      return void res.writeHead(401, { "www-authenticate": 'Basic realm="charts"' }).end();
    const to = opts.redirects?.[`/${rel}`];
    if (to) return void res.writeHead(302, { location: to }).end();
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
    authorizations,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The htpasswd way: only a bcrypt hash of the password is kept, each request's compared with it. */
function htpasswdCheck(auth: Credentials): (header: string | undefined) => boolean {
  const hash = bcrypt.hashSync(auth.password, 4);
  return (header) => {
    const decoded = Buffer.from(/^Basic (.*)$/.exec(header ?? "")?.[1] ?? "", "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    return (
      colon > 0 &&
      decoded.slice(0, colon) === auth.username &&
      bcrypt.compareSync(decoded.slice(colon + 1), hash)
    );
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
