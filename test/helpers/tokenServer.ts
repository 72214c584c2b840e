import { spawn, type ChildProcess } from "node:child_process";
import { createSign, randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { httpRequest, type Credentials } from "./http.js";
import { freePort } from "./ports.js";
import { selfSignedCert } from "./keys.js";

/**
 * A Docker token service (the `realm` of a `Bearer` challenge) and a Distribution registry
 * configured with `auth: token` that trusts it: the registry verifies our JWTs (RS256, with
 * the signing certificate in the `x5c` header) against a self-signed certificate made with
 * openssl and given to it as `rootcertbundle`.
 */
export interface TokenServerOptions {
  users: Credentials[];
  /** Grant `pull` to requests without credentials; default false. */
  anonymousPull?: boolean;
  /** Lifetime the tokens announce; default 300 s. */
  expiresInSeconds?: number;
  /** Answer with `access_token` instead of `token`. */
  accessTokenField?: boolean;
  /** OAuth2 refresh tokens (docker's identity tokens) accepted by POST, and whose they are. */
  refreshTokens?: Record<string, string>;
}

export interface TokenRequestLog {
  method: string;
  account?: string;
  scopes: string[];
  /** Whether valid credentials came with it. */
  authenticated: boolean;
  /** 200, or 401 for wrong credentials. */
  status: number;
}

export interface TokenServer {
  /** The realm: "http://127.0.0.1:PORT/token". */
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate the registry must trust. */
  certFile: string;
  requests: TokenRequestLog[];
  stop(): Promise<void>;
}

export const TOKEN_SERVICE = "bundle-test-registry";
export const TOKEN_ISSUER = "bundle-test-token-issuer";

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const dir = await mkdtemp(path.join(tmpdir(), "token-server-"));
  const { key, cert, certFile } = await selfSignedCert(dir, "bundle test token issuer");
  const certDer = pemBody(cert);
  const requests: TokenRequestLog[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const answer = issue(req, Buffer.concat(chunks).toString("utf8"), opts, key, certDer);
      requests.push(answer.log);
      res.writeHead(answer.log.status, { "content-type": "application/json" });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("token server has no port");
  let stopped: Promise<void> | undefined;
  return {
    realm: `http://127.0.0.1:${address.port}/token`,
    service: TOKEN_SERVICE,
    issuer: TOKEN_ISSUER,
    certFile,
    requests,
    stop: () =>
      (stopped ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }).then(() => rm(dir, { recursive: true, force: true }))),
  };
}

interface Answer {
  log: TokenRequestLog;
  body: object;
}

/** GET with optional Basic credentials, or POST of an OAuth2 refresh-token grant. */
function issue(
  req: http.IncomingMessage,
  form: string,
  opts: TokenServerOptions,
  key: string,
  certDer: string,
): Answer {
  const params =
    req.method === "POST" ? new URLSearchParams(form) : new URL(req.url ?? "/", "http://token").searchParams;
  const scopes = params
    .getAll("scope")
    .flatMap((s) => s.split(" "))
    .filter(Boolean);
  const log: TokenRequestLog = { method: req.method ?? "", scopes, authenticated: false, status: 200 };
  const refused = { log: { ...log, status: 401 }, body: { details: "incorrect username or password" } };
  const creds = basicCredentials(req.headers.authorization);
  if (req.method === "POST") {
    const user = opts.refreshTokens?.[params.get("refresh_token") ?? ""];
    if (params.get("grant_type") !== "refresh_token" || user === undefined) return refused;
    log.account = user;
    log.authenticated = true;
  } else if (creds) {
    log.account = creds.username;
    const known = opts.users.some((u) => u.username === creds.username && u.password === creds.password);
    if (!known) return { ...refused, log: { ...refused.log, account: creds.username } };
    log.authenticated = true;
  }
  const access = scopes.map(parseScope).flatMap((s) => {
    if (!s) return [];
    const actions = log.authenticated
      ? s.actions
      : opts.anonymousPull
        ? s.actions.filter((a) => a === "pull")
        : [];
    return actions.length > 0 ? [{ type: s.type, name: s.name, actions }] : [];
  });
  const expiresIn = opts.expiresInSeconds ?? 300;
  const token = signJwt(key, certDer, {
    iss: TOKEN_ISSUER,
    sub: log.account ?? "",
    aud: TOKEN_SERVICE,
    exp: Math.floor(Date.now() / 1000) + expiresIn,
    nbf: Math.floor(Date.now() / 1000) - 10,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    access,
  });
  const body = opts.accessTokenField
    ? { access_token: token, expires_in: expiresIn }
    : { token, expires_in: expiresIn, issued_at: new Date().toISOString() };
  return { log, body };
}

function parseScope(scope: string): { type: string; name: string; actions: string[] } | undefined {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first < 0 || last <= first) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope.slice(last + 1).split(","),
  };
}

function basicCredentials(header: string | undefined): Credentials | undefined {
  if (!header?.startsWith("Basic ")) return undefined;
  const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? undefined : { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function signJwt(key: string, certDer: string, claims: object): string {
  const header = { typ: "JWT", alg: "RS256", x5c: [certDer] };
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = createSign("RSA-SHA256").update(signingInput).sign(key);
  return `${signingInput}.${b64url(signature)}`;
}

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString("base64url");
}

/** The base64 DER inside a PEM certificate, as x5c wants it. */
function pemBody(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
}

// --- a registry with auth: token ---------------------------------------------------------

export interface TokenRegistry {
  host: string;
  url: string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Distribution with `auth: token` trusting `tokens`; storage in a temp dir removed by stop(). */
export async function startTokenRegistry(tokens: TokenServer): Promise<TokenRegistry> {
  const dir = await mkdtemp(path.join(tmpdir(), "token-registry-"));
  const port = await freePort();
  const configFile = path.join(dir, "config.yml");
  await writeFile(configFile, registryConfig(dir, port, tokens));
  const child = spawn("docker-registry", ["serve", configFile], { stdio: ["ignore", "ignore", "pipe"] });
  running.add(child);
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-4096)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    running.delete(child);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForChallenge(url, child, () => stderr);
  } catch (err) {
    await stop();
    throw err;
  }
  return { host: `127.0.0.1:${port}`, url, stop };
}

function registryConfig(dir: string, port: number, tokens: TokenServer): string {
  return [
    "version: 0.1",
    "log:",
    "  level: warn",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${JSON.stringify(path.join(dir, "data"))}`,
    "http:",
    `  addr: 127.0.0.1:${port}`,
    "  secret: token-registry-secret",
    "auth:",
    "  token:",
    `    realm: ${JSON.stringify(tokens.realm)}`,
    `    service: ${tokens.service}`,
    `    issuer: ${tokens.issuer}`,
    `    rootcertbundle: ${JSON.stringify(tokens.certFile)}`,
    "",
  ].join("\n");
}

async function waitForChallenge(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}):\n${stderr()}`);
    const status = await httpRequest(`${url}/v2/`).then(
      (r) => r.status,
      () => undefined,
    );
    if (status === 401) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`token registry did not answer at ${url}:\n${stderr()}`);
}
