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
