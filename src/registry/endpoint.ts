/**
 * Where a registry answers: `--registry` and image references name a registry as `host[:port]`
 * or a URL, and SPEC.md fixes which scheme each form means.
 */
import { DOCKER_HUB } from "../config/imageRef.js";
import { InputError } from "../util/errors.js";

export interface RegistryEndpoint {
  /** The registry as image references write it: `127.0.0.1:5000`, `docker.io`. */
  host: string;
  /** Scheme, host and port, no trailing slash: `http://127.0.0.1:5000`, `https://registry-1.docker.io`. */
  baseUrl: string;
}

const HUB_ALIASES = new Set([DOCKER_HUB, "index.docker.io", "registry-1.docker.io"]);
const HUB_API = "https://registry-1.docker.io";
const HOST_PORT = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/;

/** `127.0.0.1:5000`, `http://reg.lan`, `docker.io`: the endpoint, or an InputError saying why not. */
export function resolveEndpoint(registry: string): RegistryEndpoint {
  const written = registry.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(written)?.[1]?.toLowerCase();
  if (scheme === undefined) return fromBareHost(written);
  if (scheme !== "http" && scheme !== "https") {
    throw new InputError(`registry "${registry}": only http:// and https:// URLs are allowed`);
  }
  return fromUrl(registry, written);
}

function fromBareHost(host: string): RegistryEndpoint {
  if (!HOST_PORT.test(host)) {
    throw new InputError(`registry "${host}" is neither host[:port] nor an http:// or https:// URL`);
  }
  const lower = host.toLowerCase();
  if (HUB_ALIASES.has(lower)) return { host: DOCKER_HUB, baseUrl: HUB_API };
  // A registry on the same machine is the usual test and bootstrap case, and rarely has TLS.
  const scheme = isLoopback(hostname(lower)) ? "http" : "https";
  return { host: lower, baseUrl: `${scheme}://${lower}` };
}

function fromUrl(registry: string, written: string): RegistryEndpoint {
  let url: URL;
  try {
    url = new URL(written);
  } catch {
    throw new InputError(`registry "${registry}" is not a valid URL`);
  }
  // Registries live at the root: the API is always /v2/ on the host.
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash || url.username) {
    throw new InputError(
      `registry "${registry}": give only scheme, host and port (the API is always at /v2/)`,
    );
  }
  if (HUB_ALIASES.has(url.hostname) && url.port === "") return { host: DOCKER_HUB, baseUrl: HUB_API };
  return { host: url.host, baseUrl: `${url.protocol}//${url.host}` };
}

/** The host without its port; IPv6 keeps its brackets. */
function hostname(hostPort: string): string {
  if (hostPort.startsWith("[")) return hostPort.slice(0, hostPort.indexOf("]") + 1);
  const colon = hostPort.lastIndexOf(":");
  return colon < 0 ? hostPort : hostPort.slice(0, colon);
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "[::1]" || host === "::1" || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/** Origin of a URL (`http://h:p`): credentials go only to the registry's own origin. */
export function sameOrigin(a: string | URL, b: string | URL): boolean {
  return new URL(a).origin === new URL(b).origin;
}
