/**
 * Retries with exponential backoff for transient faults: dropped connections, 5xx and 429.
 * Anything else (4xx, a digest mismatch, bad input) fails at once: trying again won't help.
 *
 * Who retries: exactly one layer per operation, so attempts never multiply. Inner layers (the
 * HTTP stack, `registry/transport.ts`, the token fetch) only raise TransientError, naming the
 * URL and the reason; the owner runs the operation under `withRetry` or, where it resumes rather
 * than starts over, counts with `Attempts`:
 * - a registry request (ping, manifests, tags, mounts): its `RegistryClient` method, through
 *   `Transport.retrying`;
 * - a blob download: `registry/download.ts`, resuming with Range from the byte it reached;
 * - a blob upload: `registry/upload.ts`, resuming from the offset the registry holds, or
 *   starting the session over when the registry lost it;
 * - a pinned file download: `files/download.ts`, resuming its partial file with Range;
 * - a file-server request: `fileserver/client.ts`.
 * The copy engine and the stages retry nothing: what reaches them is final. An owner that gives
 * up throws GaveUpError, a WorkError, so no loop takes it for transient, however it is wrapped.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { BundleError, WorkError } from "./errors.js";

/** An error worth trying again; `retryAfterMs` honours a server's Retry-After. */
export class TransientError extends Error {
  override name = "TransientError";
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** An operation's last transient fault, after its owner used up the retries: final. */
export class GaveUpError extends WorkError {
  override name = "GaveUpError";
}

const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET",
]);

export function isTransient(err: unknown): boolean {
  if (err instanceof TransientError) return true;
  // Ours are decided: a WorkError wrapping a transient cause (a gave-up) stays final.
  if (err instanceof BundleError) return false;
  const e = err as { code?: string; name?: string; response?: { statusCode?: number }; cause?: unknown };
  if (e?.code && TRANSIENT_CODES.has(e.code)) return true;
  // A body cut off after a 200 is a ReadError with statusCode 200: the name decides first.
  if (e?.name === "ReadError" || e?.name === "TimeoutError") return true;
  const status = e?.response?.statusCode;
  if (status !== undefined) return status >= 500 || status === 429;
  if (e?.name === "RequestError") return true;
  return e?.cause !== undefined && e.cause !== err ? isTransient(e.cause) : false;
}

export interface RetryOptions {
  /** Tries after the first; default 5. */
  retries?: number;
  /** First delay; doubles each time, with jitter, capped at 10 s. Default 200 ms. */
  baseDelayMs?: number;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/**
 * The pause before retry `attempt` (1-based): doubling from the base with jitter, capped at
 * 10 s, or the server's Retry-After.
 */
export function backoffMs(err: unknown, attempt: number, opts: RetryOptions): number {
  if (err instanceof TransientError && err.retryAfterMs !== undefined) return err.retryAfterMs;
  const base = opts.baseDelayMs ?? 200;
  return Math.min(10_000, base * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
}

/**
 * The failed attempts of one operation. `failed` waits out the backoff when the error is
 * transient and tries remain, and throws the final error otherwise. `what` prefixes a
 * gave-up message that does not already start with it.
 */
export class Attempts {
  private failures = 0;
  constructor(
    private readonly opts: RetryOptions = {},
    private readonly what?: string,
  ) {}

  /** Bytes got through since the last fault: the link works, so the count starts anew. */
  progressed(): void {
    this.failures = 0;
  }

  async failed(err: unknown): Promise<void> {
    if (!isTransient(err)) throw err;
    if (this.failures >= (this.opts.retries ?? 5)) throw gaveUp(err, this.failures + 1, this.what);
    this.failures++;
    const delay = backoffMs(err, this.failures, this.opts);
    this.opts.onRetry?.(err, this.failures, delay);
    await sleep(delay);
  }
}

/**
 * Runs `fn` until it succeeds, fails for good, or its retries are used up (GaveUpError).
 * Given `Attempts`, it counts on with an operation's earlier failures.
 */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  opts: RetryOptions | Attempts = {},
  what?: string,
): Promise<T> {
  const attempts = opts instanceof Attempts ? opts : new Attempts(opts, what);
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      await attempts.failed(err);
    }
  }
}

function gaveUp(err: unknown, attempts: number, what: string | undefined): GaveUpError {
  const message = (err as Error)?.message ?? String(err);
  const said = what === undefined || message.startsWith(what) ? message : `${what}: ${message}`;
  return new GaveUpError(`${said} (gave up after ${attempts} attempt${attempts === 1 ? "" : "s"})`, {
    cause: err,
  });
}
