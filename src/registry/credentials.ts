/**
 * Registry credentials, found as the Docker client finds them (SPEC.md): explicit
 * `--username`/`--password-stdin` first, then `config.json`'s `credHelpers`, `credsStore` and
 * `auths`. Secrets stay in memory: helpers receive only the host on stdin, and no error here
 * quotes a secret.
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { DOCKER_HUB } from "../config/imageRef.js";
import { InputError, WorkError } from "../util/errors.js";

export type Credentials = PasswordCredentials | IdentityTokenCredentials;

export interface PasswordCredentials {
  username: string;
  password: string;
}

/** An OAuth2 refresh token from `docker login` against some registries (config's `identitytoken`). */
export interface IdentityTokenCredentials {
  username?: string;
  identityToken: string;
}

/** Looks up the credentials for a registry host (`127.0.0.1:5000`, `docker.io`). */
export type CredentialSource = (host: string) => Promise<Credentials | undefined>;

export const noCredentials: CredentialSource = () => Promise.resolve(undefined);

/** Docker Hub's key in config.json and for credential helpers. */
export const DOCKER_HUB_KEY = "https://index.docker.io/v1/";
const HUB_NAMES = new Set([DOCKER_HUB, "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY]);

/** Who the credentials are, for messages: never the secret. */
export function describeCredentials(c: Credentials): string {
  return c.username !== undefined && c.username !== "" ? `user "${c.username}"` : "the identity token";
}

/** `--username`/`--password-stdin` for `host`, taking precedence over anything configured for it. */
export function explicitCredentials(
  host: string,
  creds: PasswordCredentials,
  fallback: CredentialSource = noCredentials,
): CredentialSource {
  const key = normalizeHost(host);
  return (asked) => (normalizeHost(asked) === key ? Promise.resolve(creds) : fallback(asked));
}

/** For `--password-stdin`: everything on the stream, without the trailing newline. */
export async function readPassword(stream: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  const password = Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
  if (password === "") throw new InputError("--password-stdin: no password on standard input");
  return password;
}

export interface DockerConfigOptions {
  /** Folder of config.json; default `$DOCKER_CONFIG`, else `~/.docker`. */
  configDir?: string;
  /** Environment for the lookup and the helpers (PATH, DOCKER_CONFIG, HOME). Default process.env. */
  env?: NodeJS.ProcessEnv;
}

interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

/** Credentials from the Docker client's configuration; the file is read once, on first use. */
export function dockerConfigCredentials(opts: DockerConfigOptions = {}): CredentialSource {
  const env = opts.env ?? process.env;
  const file = path.join(
    opts.configDir ?? env.DOCKER_CONFIG ?? path.join(homedir(), ".docker"),
    "config.json",
  );
  let config: Promise<DockerConfig | undefined> | undefined;
  return async (host) => {
    config ??= readDockerConfig(file);
    const cfg = await config;
    return cfg ? lookup(cfg, host, env) : undefined;
  };
}

async function readDockerConfig(file: string): Promise<DockerConfig | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new InputError(`cannot read Docker configuration ${file}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== "object" || parsed === null) throw new Error("not a JSON object");
    return parsed as DockerConfig;
  } catch (err) {
    throw new InputError(`Docker configuration ${file} is not valid JSON: ${(err as Error).message}`);
  }
}

async function lookup(
  cfg: DockerConfig,
  host: string,
  env: NodeJS.ProcessEnv,
): Promise<Credentials | undefined> {
  const keys = configKeys(host);
  const helper = firstDefined(keys.map((k) => cfg.credHelpers?.[k])) ?? cfg.credsStore;
  if (helper) {
    const found = await fromHelper(helper, keys[0] ?? host, env);
    if (found) return found;
  }
  return fromAuths(cfg.auths ?? {}, keys);
}

/** The keys config.json may use for a host; Docker Hub's canonical key first. */
function configKeys(host: string): string[] {
  const h = normalizeHost(host);
  return h === DOCKER_HUB ? [DOCKER_HUB_KEY, DOCKER_HUB, "index.docker.io", "registry-1.docker.io"] : [h];
}

/** `https://reg:5000/v1/` and `reg:5000` are the same registry; all Hub names are `docker.io`. */
export function normalizeHost(key: string): string {
  if (HUB_NAMES.has(key)) return DOCKER_HUB;
  const host = key
    .replace(/^[a-z]+:\/\//i, "")
    .replace(/\/.*$/, "")
    .toLowerCase();
  return HUB_NAMES.has(host) ? DOCKER_HUB : host;
}

function fromAuths(auths: Record<string, AuthEntry>, keys: string[]): Credentials | undefined {
  const wanted = new Set(keys.map(normalizeHost));
  // Exact keys first, then entries written as URLs (`https://reg:5000`), as docker login may store them.
  const entry =
    firstDefined(keys.map((k) => auths[k])) ??
    Object.entries(auths).find(([k]) => wanted.has(normalizeHost(k)))?.[1];
  return entry ? fromAuthEntry(entry) : undefined;
}

function fromAuthEntry(entry: AuthEntry): Credentials | undefined {
  if (entry.identitytoken) {
    return { identityToken: entry.identitytoken, ...(entry.username ? { username: entry.username } : {}) };
  }
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (entry.username && entry.password !== undefined) {
    return { username: entry.username, password: entry.password };
  }
  return undefined;
}

/** `docker-credential-<name> get`: the server on stdin, `{Username, Secret}` on stdout. */
async function fromHelper(
  name: string,
  serverUrl: string,
  env: NodeJS.ProcessEnv,
): Promise<Credentials | undefined> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) {
    throw new InputError(`Docker configuration names an invalid credential helper "${name}"`);
  }
  const program = `docker-credential-${name}`;
  const { code, stdout, stderr } = await runHelper(program, serverUrl, env);
  if (code !== 0) {
    if (/credentials not found/i.test(stdout + stderr)) return undefined;
    // Helpers print their error, never the secret, on failure; cut it short all the same.
    const why = (stderr.trim() || stdout.trim()).slice(0, 200);
    throw new WorkError(
      `credential helper ${program} failed for ${serverUrl} (exit ${code})${why ? `: ${why}` : ""}`,
    );
  }
  return parseHelperAnswer(program, serverUrl, stdout);
}

function parseHelperAnswer(program: string, serverUrl: string, stdout: string): Credentials | undefined {
  let answer: { Username?: unknown; Secret?: unknown };
  try {
    answer = JSON.parse(stdout) as typeof answer;
  } catch {
    throw new WorkError(`credential helper ${program} gave no JSON for ${serverUrl}`);
  }
  if (typeof answer.Secret !== "string" || answer.Secret === "") return undefined;
  const username = typeof answer.Username === "string" ? answer.Username : "";
  // Docker's convention: the user "<token>" means the secret is an identity token.
  if (username === "<token>") return { identityToken: answer.Secret };
  return { username, password: answer.Secret };
}

interface HelperResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runHelper(program: string, input: string, env: NodeJS.ProcessEnv): Promise<HelperResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, ["get"], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (err) =>
      reject(
        new WorkError(
          `cannot run credential helper ${program}: ${(err as NodeJS.ErrnoException).code ?? err.message}`,
        ),
      ),
    );
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.on("error", () => undefined); // a helper that exits early must not crash us with EPIPE
    child.stdin.end(input);
  });
}

function firstDefined<T>(values: (T | undefined)[]): T | undefined {
  return values.find((v) => v !== undefined);
}
