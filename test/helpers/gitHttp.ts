import { spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Credentials } from "./http.js";

/**
 * Smart HTTP git on 127.0.0.1: `git http-backend` run as a CGI for every request, serving the
 * repositories under `root`, behind Basic authentication. Counts what it saw, so a test can tell
 * that the client authenticated and what it sent before it did.
 */
export interface TestGitHttp {
  /** http://127.0.0.1:PORT */
  base: string;
  /** Requests answered 401 (no or wrong credentials) and requests let through. */
  counts: { refused: number; allowed: number };
  stop(): Promise<void>;
}

export async function startGitHttp(root: string, auth: Credentials): Promise<TestGitHttp> {
  const expected = "Basic " + Buffer.from(`${auth.username}:${auth.password}`).toString("base64");
  const counts = { refused: 0, allowed: 0 };
  const server = http.createServer((req, res) => {
    if (req.headers.authorization !== expected) {
      counts.refused++;
      req.resume();
      res.writeHead(401, { "www-authenticate": 'Basic realm="git"', "content-length": 0 }).end();
      return;
    }
    counts.allowed++;
    runBackend(root, auth.username, req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const stop = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return { base, counts, stop };
}

function runBackend(root: string, user: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://x");
  const child = spawn("git", ["http-backend"], {
    stdio: ["pipe", "pipe", "ignore"],
    env: {
      PATH: process.env.PATH,
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: "1",
      REQUEST_METHOD: req.method ?? "GET",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      REMOTE_USER: user,
      REMOTE_ADDR: "127.0.0.1",
      ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] } : {}),
      ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {}),
    },
  });
  req.pipe(child.stdin);
  child.stdin.on("error", () => undefined);
  let head = Buffer.alloc(0);
  let started = false;
  child.stdout.on("data", (chunk: Buffer) => {
    if (started) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf("\r\n\r\n");
    if (end < 0) return;
    started = true;
    const headers: Record<string, string> = {};
    let status = 200;
    for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
      const colon = line.indexOf(":");
      const [name, value] = [line.slice(0, colon).trim(), line.slice(colon + 1).trim()];
      if (name.toLowerCase() === "status") status = Number.parseInt(value, 10);
      else headers[name] = value;
    }
    res.writeHead(status, headers);
    res.write(head.subarray(end + 4));
  });
  child.on("close", () => {
    if (!started) res.writeHead(500).end();
    else res.end();
  });
}
