/**
 * `bundle serve`: the CLI's side of the file server (and of the registry over bundles). Reads
 * the token file, checks the flags, starts the servers, and on SIGINT/SIGTERM (or `signal`)
 * closes them gracefully: running uploads finish, then the process may exit.
 */
import { readFile, stat } from "node:fs/promises";
import { InputError, WorkError } from "../util/errors.js";
import { DEFAULT_HOST, DEFAULT_PORT, startFileServer, type FileServer } from "./server.js";
import { fsReason } from "../util/files.js";
import { startBundleRegistry, type BundleRegistry, type BundleRegistryOptions } from "./serveRegistry.js";

/** Served when --root is not given: a folder of its own, never the whole working directory. */
export const DEFAULT_ROOT = "bundle-files";

export interface ServeOptions {
  root?: string;
  port?: number;
  host?: string;
  /** File holding the upload token; without one, uploads are refused. */
  tokenFile?: string;
  maxUploadBytes?: number;
  /** Stops the server like SIGTERM does; for callers other than the CLI (tests). */
  signal?: AbortSignal;
  /** Access log and notices; default stderr. */
  log?: (line: string) => void;
  /** Called once the server listens. */
  onListening?: (server: FileServer) => void;
  /** The registry over bundles (`--registry-port`), on the same host. */
  registry?: Omit<BundleRegistryOptions, "host" | "log">;
  /** false: the registry alone, no file server. */
  files?: boolean;
  /** Called once the registry listens. */
  onRegistry?: (registry: BundleRegistry) => void;
}

/**
 * Runs the file server, the registry over bundles beside it (`registry`), or the registry alone
 * (`files: false`), until SIGINT, SIGTERM or `signal`; resolves once they have closed.
 */
export async function serve(opts: ServeOptions): Promise<void> {
  const log = opts.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const port = opts.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new InputError(`--port ${port}: not a TCP port (0-65535)`);
  const token = opts.tokenFile === undefined ? undefined : await readTokenFile(opts.tokenFile, log);
  const registry = opts.registry
    ? await startBundleRegistry({ ...opts.registry, host: opts.host ?? DEFAULT_HOST, log })
    : undefined;
  try {
    if (registry) for (const line of registry.notice) log(line);
    if (registry) opts.onRegistry?.(registry);
    if (opts.files === false) return await stopRequested(opts.signal);
    await serveFiles({ ...opts, port, token, log });
  } finally {
    await registry?.server.close();
  }
}

async function serveFiles(
  opts: ServeOptions & { port: number; token: string | undefined; log: (line: string) => void },
) {
  const { token, log } = opts;
  const root = opts.root ?? DEFAULT_ROOT;
  const server = await listen({ ...opts, root });
  log(
    `serving ${root} at ${server.url}; uploads ${token ? "need the token of --token-file" : "are off (no --token-file)"}`,
  );
  opts.onListening?.(server);
  await stopRequested(opts.signal);
  log("closing: waiting for running uploads");
  await server.close();
}

async function listen(opts: ServeOptions & { root: string; port: number; token: string | undefined }) {
  try {
    return await startFileServer({
      root: opts.root,
      host: opts.host ?? DEFAULT_HOST,
      port: opts.port,
      ...(opts.token ? { token: opts.token } : {}),
      ...(opts.maxUploadBytes !== undefined ? { maxUploadBytes: opts.maxUploadBytes } : {}),
      ...(opts.log ? { log: opts.log } : {}),
    });
  } catch (err) {
    throw explainStartError(err as NodeJS.ErrnoException, opts);
  }
}

function explainStartError(err: NodeJS.ErrnoException, opts: { root: string; host?: string; port: number }) {
  const where = `${opts.host ?? DEFAULT_HOST}:${opts.port}`;
  if (err.syscall === "listen") {
    if (err.code === "EADDRINUSE") return new WorkError(`cannot listen on ${where}: the port is in use`);
    if (err.code === "EACCES")
      return new WorkError(`cannot listen on ${where}: ports below 1024 need privileges`);
    return new WorkError(`cannot listen on ${where}: ${err.code ?? err.message}`);
  }
  // The root could not be created or read (permissions, a file in the way, read-only).
  if (err.path) return new WorkError(`cannot use --root ${opts.root}: ${err.code} on ${err.path}`);
  return err;
}

function stopRequested(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      signal?.removeEventListener("abort", stop);
      resolve();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    if (signal?.aborted) stop();
    signal?.addEventListener("abort", stop);
  });
}

/**
 * The token in `file`, surrounding whitespace dropped. A token file others can read is
 * reported (like ssh does for keys), since anyone who reads it can upload.
 */
export async function readTokenFile(file: string, warn?: (line: string) => void): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new InputError(`--token-file ${file}: cannot read it: ${fsReason(err)}`);
  }
  const token = text.trim();
  if (!token) throw new InputError(`--token-file ${file}: the file is empty`);
  if (/\s/.test(token)) throw new InputError(`--token-file ${file}: a token is one line without spaces`);
  const mode = (await stat(file)).mode;
  if (warn && (mode & 0o004) !== 0)
    warn(
      `warning: --token-file ${file} is readable by every user (mode ${(mode & 0o777).toString(8)}); chmod o-r it`,
    );
  return token;
}

/** Kept here for callers of the server module; the parser lives with the other formats. */
export { parseByteSize } from "../util/format.js";
