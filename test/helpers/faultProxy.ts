import http from "node:http";
import type { Socket } from "node:net";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";

/**
 * An HTTP proxy in front of a registry that misbehaves on purpose, by rule: it answers 503
 * (or any status) instead of the registry, drops the connection part way through a request
 * or response body, or flips a byte of a response. It streams every body, and logs every
 * request so tests can count them.
 *
 * The Host header is passed on unchanged, so the registry builds its Location headers with
 * the proxy's address and later requests of an upload come back through the proxy too.
 */
export type Fault =
  /** Answer with this status without asking the registry. */
  | { kind: "status"; status: number; retryAfterSeconds?: number; body?: string }
  /** Pass the registry's answer on, but cut the connection after this many body bytes. */
  | { kind: "drop-response"; afterBytes: number }
  /** Pass the registry's answer on with the byte at this position inverted. */
  | { kind: "corrupt-response"; atByte: number }
  /** Pass this many bytes of the request body to the registry, then cut both connections. */
  | { kind: "drop-request"; afterBytes: number };

export interface FaultRule {
  /** Exact method, any when absent. */
  method?: string;
  /** Tested against the request's path with its query string. */
  path: RegExp;
  /** Matching requests let through untouched before the fault applies; default 0. */
  skip?: number;
  /** How many matching requests get the fault; default 1. */
  times?: number;
  fault: Fault;
}

export interface LoggedRequest {
  method: string;
  /** Path and query, as received. */
  path: string;
  headers: http.IncomingHttpHeaders;
  /** The fault applied, if any. */
  fault?: Fault["kind"];
}

export interface FaultProxy {
  /** "127.0.0.1:PORT", to use as a registry host. */
  host: string;
  url: string;
  /** Every request received, in order. */
  requests: LoggedRequest[];
  addRule(rule: FaultRule): void;
  clearRules(): void;
  /** How many requests matched `method` (or any, with "*") and `path`. */
  count(method: string, path: RegExp): number;
  /** How many times rules have fired. */
  faultsApplied(): number;
  /** TCP connections accepted so far: keep-alive clients reuse theirs. */
  connections(): number;
  stop(): Promise<void>;
}

interface ActiveRule extends FaultRule {
  toSkip: number;
  remaining: number;
}

export async function startFaultProxy(upstreamUrl: string): Promise<FaultProxy> {
  const upstream = new URL(upstreamUrl);
  const rules: ActiveRule[] = [];
  const requests: LoggedRequest[] = [];
  const sockets = new Set<Socket>();
  let applied = 0;

  const takeRule = (req: http.IncomingMessage): Fault | undefined => {
    const rule = rules.find(
      (r) => r.remaining > 0 && (!r.method || r.method === req.method) && r.path.test(req.url ?? ""),
    );
    if (!rule) return undefined;
    if (rule.toSkip > 0) {
      rule.toSkip--;
      return undefined;
    }
    rule.remaining--;
    applied++;
    return rule.fault;
  };

  const server = http.createServer((req, res) => {
    const fault = takeRule(req);
    requests.push({
      method: req.method ?? "",
      path: req.url ?? "",
      headers: req.headers,
      fault: fault?.kind,
    });
    if (fault?.kind === "status") answerStatus(req, res, fault);
    else forward(upstream, req, res, fault);
  });
  let accepted = 0;
  server.on("connection", (socket) => {
    accepted++;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("fault proxy has no port");
  const host = `127.0.0.1:${address.port}`;
  let stopped: Promise<void> | undefined;

  return {
    host,
    url: `http://${host}`,
    requests,
    addRule: (rule) => void rules.push({ ...rule, toSkip: rule.skip ?? 0, remaining: rule.times ?? 1 }),
    clearRules: () => void rules.splice(0),
    count: (method, path) =>
      requests.filter((r) => (method === "*" || r.method === method) && path.test(r.path)).length,
    faultsApplied: () => applied,
    connections: () => accepted,
    stop: () =>
      (stopped ??= new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      })),
  };
}

/** Reads (and drops) the request body first, so the client is not cut off mid-send. */
function answerStatus(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  fault: Extract<Fault, { kind: "status" }>,
): void {
  req.resume();
  req.once("end", () => {
    const body =
      fault.body ?? JSON.stringify({ errors: [{ code: "UNAVAILABLE", message: "injected fault" }] });
    const headers: http.OutgoingHttpHeaders = {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
    };
    if (fault.retryAfterSeconds !== undefined) headers["retry-after"] = String(fault.retryAfterSeconds);
    res.writeHead(fault.status, headers);
    res.end(req.method === "HEAD" ? undefined : body);
  });
}

function forward(
  upstream: URL,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  fault: Fault | undefined,
): void {
  const upReq = http.request(
    {
      host: upstream.hostname,
      port: upstream.port,
      path: req.url,
      method: req.method,
      headers: req.headers,
      agent: false,
    },
    (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      // The request's socket, captured now: by the time of the cut `res.socket` may be detached.
      const socket = req.socket;
      const damage = responseFault(fault, () => socket.destroy());
      const done = damage ? pipeline(upRes, damage, res) : pipeline(upRes, res);
      done.catch(() => res.socket?.destroy());
    },
  );
  upReq.on("error", () => res.socket?.destroy());
  if (fault?.kind === "drop-request") {
    const cut = () => {
      upReq.destroy();
      req.socket.destroy();
    };
    // With nothing to let through, cut at once: a request without a body sends no chunk to count.
    if (fault.afterBytes === 0) return cut();
    req.pipe(new Cutter(fault.afterBytes, cut)).pipe(upReq);
  } else {
    pipeline(req, upReq).catch(() => res.socket?.destroy());
  }
}

function responseFault(fault: Fault | undefined, cut: () => void): Transform | undefined {
  if (fault?.kind === "drop-response") return new Cutter(fault.afterBytes, cut);
  if (fault?.kind === "corrupt-response") return new Corrupter(fault.atByte);
  return undefined;
}

/** Passes `limit` bytes, then calls `cut` and swallows the rest. */
class Cutter extends Transform {
  private seen = 0;
  private done = false;

  constructor(
    private readonly limit: number,
    private readonly cut: () => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.done) return callback();
    const room = this.limit - this.seen;
    this.seen += chunk.length;
    if (chunk.length < room) return callback(null, chunk);
    this.done = true;
    if (room > 0) this.push(chunk.subarray(0, room));
    // Let the bytes before the cut reach the socket before it goes.
    setImmediate(this.cut);
    callback();
  }

  /** After a cut the stream never ends: an end would let the other side finish normally. */
  override _flush(callback: TransformCallback): void {
    if (!this.done) callback();
  }
}

/** Inverts the byte at absolute position `at`. */
class Corrupter extends Transform {
  private seen = 0;

  constructor(private readonly at: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    const start = this.seen;
    this.seen += chunk.length;
    if (this.at >= start && this.at < this.seen) {
      const copy = Buffer.from(chunk);
      copy[this.at - start] = (copy[this.at - start] ?? 0) ^ 0xff;
      return callback(null, copy);
    }
    callback(null, chunk);
  }
}
