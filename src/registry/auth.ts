/**
 * Registry authentication (the Docker token protocol). A 401 carries a `WWW-Authenticate`
 * challenge: `Basic` wants the credentials on every request, `Bearer` sends us to a token
 * service (the realm) for a short-lived token valid for some scopes (`repository:x:pull`).
 * Once a registry has told us which scheme it wants, later requests authenticate up front,
 * so only the first request of a run pays for the 401.
 */
import { TransientError } from "../util/retry.js";
import { WorkError } from "../util/errors.js";
import { describeCredentials, type Credentials } from "./credentials.js";

export interface Challenge {
  /** Lowercase: `basic`, `bearer`. */
  scheme: string;
  /** Parameter names in lowercase: `realm`, `service`, `scope`, `error`. */
  params: Record<string, string>;
}

/** What the token service answered; the client makes the request so TLS and agents are shared. */
export interface TokenHttpResponse {
  status: number;
  body: Buffer;
  retryAfterMs?: number;
}

export interface TokenHttpRequest {
  method: "GET" | "POST";
  url: string;
  headers: Record<string, string>;
  body?: string;
}

export type TokenRequester = (req: TokenHttpRequest) => Promise<TokenHttpResponse>;

export interface AuthenticatorOptions {
  /** The registry as users write it, for messages. */
  host: string;
  credentials: () => Promise<Credentials | undefined>;
  requestToken: TokenRequester;
  /** Clock for token expiry, replaceable in tests. */
  now?: () => number;
}

/** `repository:library/redis:pull,push` */
export function repositoryScope(repository: string, actions: readonly ("pull" | "push")[]): string {
  return `repository:${repository}:${actions.join(",")}`;
}

export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
}

type Mode = { scheme: "basic" } | { scheme: "bearer"; realm: string; service?: string };

interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Tokens are given for 60 s when the service does not say (the token spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;

export class Authenticator {
  private mode: Mode | undefined;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<string>>();
  private readonly now: () => number;

  constructor(private readonly opts: AuthenticatorOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** The Authorization header to send before any challenge, once the scheme is known. */
  async authorization(scopes: string[]): Promise<string | undefined> {
    const mode = this.mode;
    if (mode === undefined) return undefined;
    if (mode.scheme === "basic") return this.basicHeader();
    return `Bearer ${await this.token(mode.realm, mode.service, scopes, false)}`;
  }

  /**
   * Answers a 401: the header to try again with, or a WorkError when trying again cannot
   * help (no credentials, or the ones we sent were refused).
   */
  async onChallenge(
    wwwAuthenticate: string | undefined,
    scopes: string[],
    sent: string | undefined,
  ): Promise<string> {
    const challenges = parseChallenges(wwwAuthenticate ?? "");
    const bearer = challenges.find((c) => c.scheme === "bearer" && c.params.realm);
    if (bearer) {
      this.mode = { scheme: "bearer", realm: bearer.params.realm!, service: bearer.params.service };
      const wanted = mergeScopes(scopes, bearer.params.scope);
      // A token we sent was refused (expired early, or too narrow): ask for a fresh one.
      const force = sent?.startsWith("Bearer ") ?? false;
      return `Bearer ${await this.token(bearer.params.realm!, bearer.params.service, wanted, force)}`;
    }
    if (challenges.some((c) => c.scheme === "basic")) {
      this.mode = { scheme: "basic" };
      const header = await this.basicHeader();
      if (header === undefined) throw await this.needCredentials(scopes);
      if (sent?.startsWith("Basic ")) throw await this.refused(401);
      return header;
    }
    throw new WorkError(
      `registry ${this.opts.host} asks for authentication (401) without a Basic or Bearer challenge` +
        (wwwAuthenticate ? `: ${wwwAuthenticate.slice(0, 200)}` : ""),
    );
  }

  /** The error for a request still refused after answering the challenge (401 again, or 403). */
  async deniedError(scopes: string[], status: number): Promise<WorkError> {
    const creds = await this.opts.credentials();
    if (!creds) return this.needCredentials(scopes);
    if (this.mode?.scheme === "basic" && status === 401) return this.refused(status);
    const what = describeScopes(scopes);
    return new WorkError(
      `registry ${this.opts.host} denied ${describeCredentials(creds)} access${what ? ` to ${what}` : ""} (${status})`,
    );
  }

  private async basicHeader(): Promise<string | undefined> {
    const creds = await this.opts.credentials();
    return creds && "password" in creds ? basicAuthorization(creds.username, creds.password) : undefined;
  }

  private async token(
    realm: string,
    service: string | undefined,
    scopes: string[],
    force: boolean,
  ): Promise<string> {
    const key = tokenKey(realm, service, scopes);
    const cached = this.tokens.get(key);
    if (!force && cached && cached.expiresAt > this.now()) return cached.token;
    let pending = this.pending.get(key);
    if (!pending) {
      // Concurrent requests for the same scopes share one token request.
      pending = this.fetchToken(realm, service, scopes).finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    return pending;
  }

  private async fetchToken(realm: string, service: string | undefined, scopes: string[]): Promise<string> {
    const creds = await this.opts.credentials();
    const res = await this.opts.requestToken(tokenRequest(realm, service, scopes, creds));
    if (res.status === 401 || res.status === 403) {
      throw creds ? await this.refused(res.status) : await this.needCredentials(scopes);
    }
    if (res.status >= 500 || res.status === 429) {
      throw new TransientError(`token service ${realm} answered ${res.status}`, res.retryAfterMs);
    }
    if (res.status !== 200) throw new WorkError(`token service ${realm} answered ${res.status}`);
    const { token, seconds } = parseTokenAnswer(realm, res.body);
    const key = tokenKey(realm, service, scopes);
    // Renew a little before the service's deadline, so a token never expires in flight.
    const lifetime = seconds - Math.min(30, seconds / 2);
    this.tokens.set(key, { token, expiresAt: this.now() + lifetime * 1000 });
    return token;
  }

  private async refused(status: number): Promise<WorkError> {
    const creds = await this.opts.credentials();
    const who = creds ? describeCredentials(creds) : "anonymous user";
    return new WorkError(`registry ${this.opts.host} refused the credentials of ${who} (${status})`);
  }

  private async needCredentials(scopes: string[]): Promise<WorkError> {
    const what = describeScopes(scopes);
    const host = this.opts.host;
    const why =
      this.mode?.scheme === "bearer" && what
        ? `registry ${host} refused anonymous access to ${what} (it does not exist or requires authentication)`
        : `registry ${host} requires authentication${what ? ` for ${what}` : ""}`;
    return new WorkError(
      `${why}; log in with "docker login ${host}" or pass --username and --password-stdin`,
    );
  }
}

/** Tokens are cached per realm, service and set of scopes. */
function tokenKey(realm: string, service: string | undefined, scopes: string[]): string {
  return [realm, service ?? "", ...[...scopes].sort()].join("\n");
}

function tokenRequest(
  realm: string,
  service: string | undefined,
  scopes: string[],
  creds: Credentials | undefined,
): TokenHttpRequest {
  if (creds && "identityToken" in creds) {
    // OAuth2 refresh-token grant, as docker does with an identity token.
    const form = new URLSearchParams({ grant_type: "refresh_token", client_id: "bundle" });
    form.set("refresh_token", creds.identityToken);
    if (service) form.set("service", service);
    if (scopes.length > 0) form.set("scope", scopes.join(" "));
    return {
      method: "POST",
      url: realm,
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form.toString(),
    };
  }
  const url = new URL(realm);
  if (service) url.searchParams.set("service", service);
  for (const scope of scopes) url.searchParams.append("scope", scope);
  const headers: Record<string, string> = {};
  if (creds) {
    url.searchParams.set("account", creds.username);
    headers.authorization = basicAuthorization(creds.username, creds.password);
  }
  return { method: "GET", url: url.toString(), headers };
}

function parseTokenAnswer(realm: string, body: Buffer): { token: string; seconds: number } {
  let answer: { token?: unknown; access_token?: unknown; expires_in?: unknown };
  try {
    answer = JSON.parse(body.toString("utf8")) as typeof answer;
  } catch {
    throw new WorkError(`token service ${realm} did not answer JSON`);
  }
  const token = typeof answer.token === "string" && answer.token ? answer.token : answer.access_token;
  if (typeof token !== "string" || token === "") throw new WorkError(`token service ${realm} gave no token`);
  const expires = Number(answer.expires_in);
  return { token, seconds: Number.isFinite(expires) && expires > 0 ? expires : DEFAULT_TOKEN_SECONDS };
}

/** Our scopes plus those the challenge names (space-separated, e.g. for a cross-repository mount). */
function mergeScopes(ours: string[], challenged: string | undefined): string[] {
  const all = new Set(ours);
  for (const s of (challenged ?? "").split(" ")) if (s) all.add(s);
  return [...all];
}

/** `repository a/b (pull, push)` for messages. */
function describeScopes(scopes: string[]): string {
  return scopes
    .map((s) => /^repository:(.+):([a-z,*]+)$/.exec(s))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `repository ${m[1]} (${(m[2] ?? "").split(",").join(", ")})`)
    .join(" and ");
}

/**
 * RFC 7235 challenges: `Bearer realm="https://a/token",service="reg",scope="repository:x:pull"`.
 * Several challenges may share one header (`Basic realm="x", Bearer realm="y"`).
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  const re =
    /\s*(?:([A-Za-z][\w!#$%&'*+.^`|~-]*)(?=\s+[^\s=,]|\s*$|\s*,)|([\w!#$%&'*+.^`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*))\s*,?/gy;
  let current: Challenge | undefined;
  for (let m = re.exec(header); m !== null && m[0] !== ""; m = re.exec(header)) {
    if (m[1] !== undefined) {
      current = { scheme: m[1].toLowerCase(), params: {} };
      out.push(current);
    } else if (current && m[2] !== undefined) {
      const raw = m[3] ?? "";
      current.params[m[2].toLowerCase()] = raw.startsWith('"')
        ? raw.slice(1, -1).replace(/\\(.)/g, "$1")
        : raw;
    }
  }
  return out;
}
