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
  return {
    registryHost,
    fileserverUrl,
    hosts: new Set([hostnameOf(registryHost), normalizeHost(fileserverHost)]),
  };
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
