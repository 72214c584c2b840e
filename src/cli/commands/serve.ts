/**
 * `bundle serve`: its flags and help, and the handler that runs the file server, the registry over
 * bundles, or both.
 */
import type { Command } from "commander";
import path from "node:path";
import { InputError } from "../../util/errors.js";
import type { Output } from "../output.js";
import { example, type LazyOutput } from "../shared.js";

interface ServeFlags {
  root: string;
  port: string;
  host: string;
  tokenFile?: string;
  maxUploadSize: string;
  registryPort?: string;
  fileserver: boolean;
  tlsCert?: string;
  tlsKey?: string;
}

export function define(program: Command, out: LazyOutput): void {
  const serve = program
    .command("serve")
    .argument("[bundles...]", "with --registry-port: bundle folders or archives whose images to serve")
    .description(
      "the static file server for the main node: GET/HEAD with Range and ETag, authenticated PUT uploads; " +
        "with --registry-port, also a read-only registry serving the bundles' images (and charts, as Helm OCI artifacts) under their mirror names",
    )
    .option("--root <DIR>", "folder to serve (bundles live in <DIR>/<bundle name>/)", "bundle-files")
    .option("--port <PORT>", "port to listen on", "8003")
    .option("--host <ADDR>", "address to listen on", "0.0.0.0")
    .option(
      "--token-file <FILE>",
      "bearer token that uploads must present (without one, uploads are refused)",
    )
    .option("--max-upload-size <SIZE>", "refuse larger uploads, e.g. 20G", "64G")
    .option(
      "--registry-port <PORT>",
      "also serve the OCI pull API of the bundles named (read in place; a later bundle's tags over an earlier's)",
    )
    .option("--no-fileserver", "with --registry-port: the registry alone, no file server")
    .option("--tls-cert <FILE>", "the registry's certificate (PEM): HTTPS instead of plain HTTP")
    .option("--tls-key <FILE>", "the registry's private key (PEM), with --tls-cert");
  example(
    serve,
    "bundle serve --root /srv/bundle --port 8003 --token-file /etc/bundle/token",
    "bundle serve --root /srv/bundle --registry-port 5000 /media/usb/openwhisk.tar /media/usb/openwhisk-update.tar",
    "bundle serve --no-fileserver --registry-port 5000 /media/usb/openwhisk",
  );
  serve.action((bundles: string[], opts: ServeFlags) => runServe(bundles, opts, out()));
}

/**
 * Runs the file server, the registry over bundles, or both, until SIGINT or SIGTERM, then lets
 * running uploads finish.
 */
async function runServe(bundles: string[], flags: ServeFlags, out: Output): Promise<void> {
  const port = Number(flags.port);
  if (!/^\d+$/.test(flags.port)) throw new InputError(`--port ${flags.port}: not a TCP port (0-65535)`);
  const registry = registryFlags(bundles, flags);
  const { serve, parseByteSize } = await import("../../fileserver/serve.js");
  await serve({
    ...(registry ? { registry } : {}),
    files: flags.fileserver,
    root: path.resolve(flags.root),
    host: flags.host,
    port,
    maxUploadBytes: parseByteSize(flags.maxUploadSize),
    ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}),
    log: (line) => out.info(line),
  });
}

function registryFlags(bundles: string[], flags: ServeFlags) {
  if (flags.registryPort === undefined) {
    const stray = bundles[0] ?? (flags.fileserver ? (flags.tlsCert ?? flags.tlsKey) : "--no-fileserver");
    if (stray !== undefined)
      throw new InputError(
        `${stray}: bundles, TLS and --no-fileserver are for the registry; add --registry-port PORT`,
      );
    return undefined;
  }
  const port = Number(flags.registryPort);
  if (!/^\d+$/.test(flags.registryPort) || port > 65535)
    throw new InputError(`--registry-port ${flags.registryPort}: not a TCP port (0-65535)`);
  return {
    bundles,
    port,
    ...(flags.tlsCert ? { tlsCert: flags.tlsCert } : {}),
    ...(flags.tlsKey ? { tlsKey: flags.tlsKey } : {}),
  };
}
