/**
 * What lies inside the site: its registry, its file server (the main node), loopback, and
 * in-cluster names. Everything else is outside, and an install that reaches it fails offline.
 */
import { InputError } from "../util/errors.js";

/** Placeholders used when the audit is not told the site's registry or file server. */
export const PLACEHOLDER_REGISTRY = "site-registry.invalid:5000";
export const PLACEHOLDER_FILESERVER = "http://site-fileserver.invalid:8003";

export interface Site {
  /** IMG_REPO: `host[:port]` of the site's registry. */
  registryHost: string;
  /** The file server's base URL (without the bundle name). */
  fileserverUrl: string;
  /** Lower-cased host names that belong to the site (registry, file server). */
  hosts: Set<string>;
  /** For each of those hosts, the ports the site serves there: another port has nothing of the site. */
  ports: Map<string, Set<number>>;
}

export function makeSite(opts: { registryHost?: string; fileserverUrl?: string }): Site {
  const registryHost = (opts.registryHost ?? PLACEHOLDER_REGISTRY).replace(/\/+$/, "");
  const fileserverUrl = opts.fileserverUrl ?? PLACEHOLDER_FILESERVER;
  let fileserverHost: string;
  try {
    fileserverHost = new URL(fileserverUrl).hostname;
  } catch {
    throw new InputError(`--fileserver ${fileserverUrl}: expected a URL such as http://10.0.0.5:8003`);
  }
  if (!/^[^/\s]+$/.test(registryHost)) {
    throw new InputError(`--registry ${registryHost}: expected host[:port], e.g. 10.0.0.5:5000`);
  }
  const registryName = hostnameOf(registryHost);
  const fileserverName = normalizeHost(fileserverHost);
  const ports = new Map<string, Set<number>>([
    [registryName, new Set()],
    [fileserverName, new Set()],
  ]);
  ports.get(registryName)?.add(portOf(`https://${registryHost}`));
  ports.get(registryName)?.add(portOf(`http://${registryHost}`));
  ports.get(fileserverName)?.add(portOf(fileserverUrl));
  return { registryHost, fileserverUrl, hosts: new Set([registryName, fileserverName]), ports };
}

/** A URL's port, or its scheme's default (80 for http, 443 for https); -1 when it has none. */
export function portOf(url: string): number {
  try {
    const u = new URL(url);
    if (u.port) return Number(u.port);
    return u.protocol === "https:" ? 443 : u.protocol === "http:" ? 80 : -1;
  } catch {
    return -1;
  }
}

/**
 * When `url` names a host of the site on a port the site does not serve there, what the site
 * does serve (`the site serves 10.0.0.5 on port 8003`); undefined otherwise.
 */
export function wrongPort(url: string, hostname: string, site: Site): string | undefined {
  const ports = site.ports.get(normalizeHost(hostname));
  const port = portOf(url);
  if (!ports || port < 0 || ports.has(port)) return undefined;
  return `the site serves ${hostname} on port ${[...ports].sort((a, b) => a - b).join(" and ")}, not ${port}`;
}

/** `host:5000` → `host`, `[::1]:5000` → `::1`, lower-cased. */
export function hostnameOf(hostPort: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hostPort);
  if (bracketed) return normalizeHost(bracketed[1] ?? "");
  const colon = hostPort.indexOf(":");
  // More than one ':' without brackets is a bare IPv6 address.
  if (colon >= 0 && hostPort.indexOf(":", colon + 1) < 0) return normalizeHost(hostPort.slice(0, colon));
  return normalizeHost(hostPort);
}

function normalizeHost(host: string): string {
  return host
    .toLowerCase()
    .replace(/^\[|\]$/g, "")
    .replace(/\.$/, "");
}

/**
 * Inside the site: the registry's and the file server's hosts, loopback, Kubernetes service
 * names (`*.svc`, `*.cluster.local`) and single-label names (an in-cluster service or a node).
 */
export function isInsideSite(hostname: string, site: Site): boolean {
  const h = normalizeHost(hostname);
  if (h === "" || site.hosts.has(h)) return true;
  if (h === "localhost" || h.endsWith(".localhost") || h === "::1" || h === "0.0.0.0") return true;
  if (/^127\.\d+\.\d+\.\d+$/.test(h)) return true;
  if (h.endsWith(".svc") || h.endsWith(".cluster.local")) return true;
  return !h.includes(".") && !h.includes(":");
}
