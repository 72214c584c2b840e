/**
 * Retries with exponential backoff for transient faults: dropped connections, 5xx and 429.
 * Anything else (4xx, a digest mismatch, bad input) fails at once: trying again won't help.
 */
import { setTimeout as sleep } from "node:timers/promises";

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

export async function withRetry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const retries = opts.retries ?? 5;
  const base = opts.baseDelayMs ?? 200;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= retries || !isTransient(err)) throw err;
      const backoff = Math.min(10_000, base * 2 ** attempt) * (0.5 + Math.random() / 2);
      const delay =
        err instanceof TransientError && err.retryAfterMs !== undefined ? err.retryAfterMs : backoff;
      opts.onRetry?.(err, attempt + 1, delay);
      await sleep(delay);
    }
  }
}
