/**
 * `bundle serve --registry-port`: opens the bundles (folders or archives, read in place), starts
 * the registry over them, and says what the site's nodes need to pull from it: a registry
 * without TLS is refused by containerd and Docker unless each node is told it is plain HTTP.
 */
import { readFile } from "node:fs/promises";
import os from "node:os";
import { openBundle, type BundleContents } from "../bundle/contents.js";
import { InputError, WorkError } from "../util/errors.js";
import { fsReason } from "../util/files.js";
import { plural } from "../util/format.js";
import { RegistryCatalog } from "./catalog.js";
import { startRegistryServer, type RegistryServer } from "./registry.js";

export interface BundleRegistryOptions {
  /** Bundle folders or archives; a later one (an update bundle) over an earlier one (its base). */
  bundles: string[];
  host: string;
  port: number;
  tlsCert?: string;
  tlsKey?: string;
  log: (line: string) => void;
}

export interface BundleRegistry {
  server: RegistryServer;
  /** `host:port` as the nodes name it, for `--registry` and the snippets. */
  address: string;
  /** What `serve` prints: where it serves, and the site's configuration for it. */
  notice: string[];
}

export async function startBundleRegistry(opts: BundleRegistryOptions): Promise<BundleRegistry> {
  if (opts.bundles.length === 0)
    throw new InputError("--registry-port: name the bundles to serve (folders or archives)");
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined))
    throw new InputError("--tls-cert and --tls-key go together");
  const tls = opts.tlsCert && opts.tlsKey ? await readTls(opts.tlsCert, opts.tlsKey) : undefined;
  const bundles: BundleContents[] = [];
  for (const b of opts.bundles) bundles.push(await openBundle(b));
  const catalog = await RegistryCatalog.open(bundles, (line) => opts.log(`warning: ${line}`));
  const server = await startRegistryServer({
    catalog,
    host: opts.host,
    port: opts.port,
    ...(tls ? { tls } : {}),
    log: opts.log,
  }).catch((err: NodeJS.ErrnoException) => {
    throw new WorkError(`cannot listen on ${opts.host}:${opts.port}: ${listenReason(err)}`);
  });
  const address = `${nodeHost(opts.host)}:${server.port}`;
  const images = bundles.reduce((n, b) => n + b.lock.images.length, 0);
  const charts = bundles.reduce((n, b) => n + b.lock.charts.filter((c) => c.archive && c.mirror).length, 0);
  const what = `${plural(images, "image")}${charts > 0 ? ` and ${plural(charts, "chart")}` : ""}`;
  const head =
    `registry: ${plural(bundles.length, "bundle")} (${what} in ` +
    `${repositories(catalog.repositories().length)}) at ${server.url}, read-only`;
  return { server, address, notice: [head, ...siteSnippets(address, tls !== undefined)] };
}

function repositories(n: number): string {
  return `${n} ${n === 1 ? "repository" : "repositories"}`;
}

async function readTls(certFile: string, keyFile: string) {
  const read = (file: string, flag: string) =>
    readFile(file).catch((err: unknown) => {
      throw new InputError(`${flag} ${file}: cannot read it: ${fsReason(err)}`);
    });
  return { cert: await read(certFile, "--tls-cert"), key: await read(keyFile, "--tls-key") };
}

function listenReason(err: NodeJS.ErrnoException): string {
  if (err.code === "EADDRINUSE") return "the port is in use";
  if (err.code === "EACCES") return "ports below 1024 need privileges";
  // A certificate and key that do not belong together, or are not PEM.
  return err.code ?? err.message;
}

/** The host the nodes reach: the listening address, or for a wildcard this machine's first IPv4. */
function nodeHost(host: string): string {
  if (host !== "0.0.0.0" && host !== "::") return host.includes(":") ? `[${host}]` : host;
  const external = Object.values(os.networkInterfaces())
    .flat()
    .find((a) => a && a.family === "IPv4" && !a.internal);
  return external?.address ?? "MAIN_NODE_IP";
}

/**
 * containerd's `hosts.toml` and Docker's `daemon.json` for a plain-HTTP registry; with TLS, where
 * each wants the CA when the certificate is not from one the nodes trust.
 */
export function siteSnippets(address: string, tls: boolean): string[] {
  if (tls)
    return [
      `With a certificate the nodes do not trust, give them its CA: containerd reads ` +
        `/etc/containerd/certs.d/${address}/ca.crt (with ca = "ca.crt" in hosts.toml there), ` +
        `Docker /etc/docker/certs.d/${address}/ca.crt.`,
      `Deploy against it: bundle deploy BUNDLE --registry https://${address}`,
    ];
  return [
    `Plain HTTP: each node must be told so before it pulls from ${address}.`,
    `containerd (Kubernetes nodes): /etc/containerd/certs.d/${address}/hosts.toml, with ` +
      `config_path = "/etc/containerd/certs.d" under [plugins."io.containerd.grpc.v1.cri".registry] in /etc/containerd/config.toml:`,
    "",
    ...hostsToml(address).map((l) => (l ? `    ${l}` : l)),
    "",
    "Docker: /etc/docker/daemon.json, then restart dockerd:",
    "",
    `    ${JSON.stringify({ "insecure-registries": [address] })}`,
    "",
    `Deploy against it: bundle deploy BUNDLE --registry http://${address}`,
  ];
}

/** containerd's hosts.toml for the plain-HTTP registry at `address`. */
export function hostsToml(address: string): string[] {
  return [
    `server = "http://${address}"`,
    "",
    `[host."http://${address}"]`,
    `  capabilities = ["pull", "resolve"]`,
  ];
}
