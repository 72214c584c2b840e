/**
 * One registry's requests: authentication (answering 401 challenges, once), redirects followed
 * by hand so credentials never leave the registry's origin, 5xx/429 turned into
 * TransientError, and `retrying` to run a whole request under withRetry (util/retry.ts says
 * who retries what).
 */
import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import type { Method } from "got";
import { WorkError } from "../util/errors.js";
import { Attempts, TransientError, type RetryOptions } from "../util/retry.js";
import type { Authenticator } from "./auth.js";
import { sameOrigin, type RegistryEndpoint } from "./endpoint.js";
import {
  classifyError,
  header,
  isTransientStatus,
  MAX_SMALL_BODY,
  responseOf,
  retryRequest,
  transientStatusError,
  type BodyWriter,
  type HttpStack,
} from "./http.js";

export interface RequestSpec {
  method: Method;
  /** A path on the registry (`/v2/...`) or an absolute URL (an upload Location). */
  url: string;
  /** Token scopes the request needs, e.g. `repository:a/b:pull`. */
  scopes: string[];
  headers?: Record<string, string>;
  /**
   * A Buffer or a writer may be sent twice (after a 401); a stream only once, so a 401 on a
   * streamed body refreshes the authorization and fails transiently for the caller to resend.
   */
  body?: RequestBody;
}

export type RequestBody = Buffer | Readable | BodyWriter;

/** A response: the body buffered, or for a 2xx of `open`, left as a stream. */
export interface Exchange {
  status: number;
  headers: IncomingHttpHeaders;
  /** The URL that answered, after redirects. */
  url: string;
  body: Buffer;
  stream?: Readable;
}

const MAX_REDIRECTS = 5;
/** Error bodies of streamed requests are read for their error code only. */
const MAX_ERROR_BODY = 64 * 1024;

export class Transport {
  constructor(
    readonly endpoint: RegistryEndpoint,
    private readonly http: HttpStack,
    private readonly auth: Authenticator,
    readonly retry: RetryOptions,
  ) {}

  /** A request with its body buffered. Throws TransientError on 5xx/429, WorkError when auth fails. */
  send(spec: RequestSpec): Promise<Exchange> {
    return this.exchange(spec, false);
  }

  /** Like send, but a 2xx answer's body is left as `stream` for the caller to consume. */
  open(spec: RequestSpec): Promise<Exchange & { stream?: Readable }> {
    return this.exchange(spec, true);
  }

  /**
   * Runs `fn` under withRetry: the one retry loop of a registry request. Whatever escapes is a
   * BundleError prefixed with `what`; a TransientError that outlived its retries a GaveUpError.
   * A download that reopens passes its own `attempts`, so a reopen counts with its stream's faults.
   */
  retrying<T>(what: string, fn: () => Promise<T>, attempts = new Attempts(this.retry, what)): Promise<T> {
    return retryRequest(what, fn, attempts);
  }

  absolute(url: string): string {
    return new URL(url, this.endpoint.baseUrl + "/").toString();
  }

  private async exchange(spec: RequestSpec, stream: boolean): Promise<Exchange> {
    const { res: first, authorization } = await this.authorized(spec, this.absolute(spec.url), stream);
    const res = await this.followRedirects(spec, first, authorization, stream);
    if (isTransientStatus(res.status)) {
      discard(res);
      throw transientStatusError(`${spec.method} ${res.url}`, {
        statusCode: res.status,
        headers: res.headers,
      });
    }
    return res;
  }

  /** Sends with what we know of the registry's auth; on a 401 answers the challenge and sends once more. */
  private async authorized(
    spec: RequestSpec,
    url: string,
    stream: boolean,
  ): Promise<{ res: Exchange; authorization: string | undefined }> {
    // An upload Location may send us elsewhere (blob storage): the registry's credentials stay home.
    if (!sameOrigin(url, this.endpoint.baseUrl))
      return { res: await this.foreign(spec, url, stream), authorization: undefined };
    let authorization = await this.auth.authorization(spec.scopes);
    let res = await this.once(spec, url, authorization, stream);
    if (res.status === 401) {
      discard(res);
      const challenge = header(res, "www-authenticate");
      authorization = await this.auth.onChallenge(challenge, spec.scopes, authorization);
      if (spec.body !== undefined && !Buffer.isBuffer(spec.body) && typeof spec.body !== "function") {
        throw new TransientError(`${spec.method} ${url}: authorization expired while sending`);
      }
      res = await this.once(spec, url, authorization, stream);
    }
    if (res.status === 401 || res.status === 403) {
      discard(res);
      throw await this.auth.deniedError(spec.scopes, res.status);
    }
    return { res, authorization };
  }

  /** A request to another origin goes without Authorization, and a challenge from there is not answered. */
  private async foreign(spec: RequestSpec, url: string, stream: boolean): Promise<Exchange> {
    const res = await this.once(spec, url, undefined, stream);
    if (res.status === 401 || res.status === 403) {
      discard(res);
      throw new WorkError(
        `${spec.method} ${url}: HTTP ${res.status}; the credentials of registry ${this.endpoint.host} are not sent to another origin`,
      );
    }
    return res;
  }

  /**
   * Registries send blob GETs to storage elsewhere (S3, a CDN) with a signed URL: follow it,
   * but the registry's Authorization goes only to the registry's own origin.
   */
  private async followRedirects(
    spec: RequestSpec,
    first: Exchange,
    authorization: string | undefined,
    stream: boolean,
  ): Promise<Exchange> {
    let res = first;
    for (let hops = 0; isRedirect(res.status) && (spec.method === "GET" || spec.method === "HEAD"); hops++) {
      const location = header(res, "location");
      if (!location) return res;
      discard(res);
      if (hops >= MAX_REDIRECTS)
        throw new WorkError(`${spec.method} ${first.url}: more than ${MAX_REDIRECTS} redirects`);
      const next = new URL(location, res.url).toString();
      const auth = sameOrigin(next, this.endpoint.baseUrl) ? authorization : undefined;
      res = await this.once(spec, next, auth, stream);
    }
    return res;
  }

  private async once(
    spec: RequestSpec,
    url: string,
    authorization: string | undefined,
    stream: boolean,
  ): Promise<Exchange> {
    const headers = { ...spec.headers, ...(authorization ? { authorization } : {}) };
    try {
      return stream
        ? await this.streamed(spec.method, url, headers)
        : await this.buffered(spec, url, headers);
    } catch (err) {
      throw classifyError(err, `${spec.method} ${url}`);
    }
  }

  /** Registry answers read whole are small (manifests, errors, tokens): bounded, so a hostile one cannot fill memory. */
  private async buffered(spec: RequestSpec, url: string, headers: Record<string, string>): Promise<Exchange> {
    const res = await this.http.request(url, {
      method: spec.method,
      headers,
      ...(spec.body !== undefined ? { body: spec.body } : {}),
      maxBytes: MAX_SMALL_BODY,
    });
    return { status: res.statusCode, headers: res.headers, url, body: res.body };
  }

  private async streamed(method: Method, url: string, headers: Record<string, string>): Promise<Exchange> {
    const req = this.http.stream(url, { method, headers });
    const response = await responseOf(req);
    if (response.statusCode >= 200 && response.statusCode < 300) {
      return {
        status: response.statusCode,
        headers: response.headers,
        url,
        body: Buffer.alloc(0),
        stream: req,
      };
    }
    req.on("error", () => undefined); // the error body is best effort
    const body = await readSome(req, MAX_ERROR_BODY);
    req.destroy();
    return { status: response.statusCode, headers: response.headers, url, body };
  }
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

/** Drops an unread streamed body so its socket can be freed. */
function discard(res: Exchange): void {
  res.stream?.destroy();
}

async function readSome(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= limit) break;
    }
  } catch {
    // a broken error body still leaves the status to report
  }
  return Buffer.concat(chunks).subarray(0, limit);
}
