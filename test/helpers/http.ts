import http from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

export interface Credentials {
  username: string;
  password: string;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** A Readable is streamed; set content-length yourself so the server need not handle chunking. */
  body?: Buffer | string | Readable;
  auth?: Credentials;
}

export function basicAuthHeader(auth: Credentials): string {
  return "Basic " + Buffer.from(`${auth.username}:${auth.password}`).toString("base64");
}

/**
 * Minimal HTTP client for the test bed. Plain node:http rather than fetch so that streamed
 * uploads are sent with an exact Content-Length and no surprises from undici.
 */
export function httpRequest(url: string | URL, opts: HttpRequestOptions = {}): Promise<HttpResponse> {
  const target = new URL(url);
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.auth) headers["authorization"] = basicAuthHeader(opts.auth);
  const client = target.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    // agent: false so no keep-alive socket outlives a test's registry.
    const req = client.request(target, { method: opts.method ?? "GET", headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
    });
    req.on("error", reject);
    sendBody(req, opts.body).catch(reject);
  });
}

async function sendBody(req: http.ClientRequest, body: HttpRequestOptions["body"]): Promise<void> {
  if (body === undefined || typeof body === "string" || Buffer.isBuffer(body)) {
    req.end(body);
    return;
  }
  await pipeline(body, req);
}

/** The response's header as one string (node gives arrays for repeated headers). */
export function header(res: HttpResponse, name: string): string | undefined {
  const value = res.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(", ") : value;
}

export interface FakeServer {
  host: string;
  url: string;
  requests: { method: string; path: string; headers: http.IncomingHttpHeaders }[];
}

/** A tiny server on 127.0.0.1 the test owns; `handle` answers each request. Torn down with the test. */
export async function fakeServer(
  t: { teardown(fn: () => Promise<void>): void },
  handle: http.RequestListener,
): Promise<FakeServer> {
  const requests: FakeServer["requests"] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers });
    handle(req, res);
  });
  const port = await listenLocal(t, server);
  return { host: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}`, requests };
}

/** Starts `server` on a free port of 127.0.0.1, closed (connections and all) with the test. */
export async function listenLocal(
  t: { teardown(fn: () => Promise<void>): void },
  server: http.Server | https.Server,
): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return (server.address() as { port: number }).port;
}
