/**
 * From command-line flags to registry stores: TLS settings, credentials (Docker's config, or
 * `--username` with `--password-stdin` for one registry), `--mirror` for pulls, retries.
 * One client per registry, so tokens and connections are shared by every image.
 */
import { RegistryClient, type RegistryClientOptions } from "../registry/client.js";
import {
  dockerConfigCredentials,
  explicitCredentials,
  readPassword,
  type CredentialSource,
} from "../registry/credentials.js";
import { resolveEndpoint } from "../registry/endpoint.js";
import type { HttpTimeouts } from "../registry/http.js";
import { parseByteSize } from "../util/format.js";
import type { RetryOptions } from "../util/retry.js";
import { MirroredSource, RegistryStore } from "../store/registry.js";
import type { ImageSource } from "../store/types.js";
import { InputError } from "../util/errors.js";

/** `--connect-timeout`, `--response-timeout` (seconds), `--min-rate` (a size a second), `--rate-window` (seconds). */
export interface HttpFlags {
  connectTimeout?: string;
  responseTimeout?: string;
  minRate?: string;
  rateWindow?: string;
}

export interface RegistryFlags extends HttpFlags {
  insecure?: boolean;
  caFile?: string;
  username?: string;
  passwordStdin?: boolean;
  mirror?: string[];
}

export class RegistryAccess {
  private readonly stores = new Map<string, RegistryStore>();

  constructor(
    private readonly options: RegistryClientOptions,
    /** Registry host → mirror URL. */
    private readonly mirrors: Map<string, string>,
    private readonly storeOptions: { verifyBlobs?: boolean } = {},
  ) {}

  /** The store for a registry given as `host[:port]` or a URL. */
  store(registry: string): RegistryStore {
    let store = this.stores.get(registry);
    if (!store) {
      store = new RegistryStore(new RegistryClient(registry, this.options), this.storeOptions);
      this.stores.set(registry, store);
    }
    return store;
  }

  /** The credentials of every registry, by host: Helm repositories take theirs from here too. */
  get credentials(): CredentialSource | undefined {
    const c = this.options.credentials;
    return typeof c === "function" ? c : undefined;
  }

  /** The client of `host`'s `--mirror` (an `oci://` chart's registry, say), if it has one. */
  mirrorClient(host: string): RegistryClient | undefined {
    const mirror = this.mirrors.get(resolveEndpoint(host).host);
    return mirror ? this.store(mirror).client : undefined;
  }

  /** Where to pull images of `host` from: its mirror first when `--mirror` names one. */
  source(host: string): ImageSource {
    const mirror = this.mirrors.get(host);
    return mirror ? new MirroredSource(this.store(mirror), this.store(host)) : this.store(host);
  }
}

/**
 * Builds the access from flags. `loginHosts` are the registries `--username` may apply to: the
 * site's registry at upload and deploy; at prepare the one registry the images come from.
 */
export async function registryAccess(
  flags: RegistryFlags,
  loginHosts: string[],
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void,
  storeOptions: { verifyBlobs?: boolean } = {},
): Promise<RegistryAccess> {
  let credentials: CredentialSource = dockerConfigCredentials();
  if (flags.username !== undefined || flags.passwordStdin) {
    if (!flags.username || !flags.passwordStdin) {
      throw new InputError(
        "--username and --password-stdin go together (the password is read from standard input)",
      );
    }
    const hosts = [...new Set(loginHosts.map((h) => resolveEndpoint(h).host))];
    if (hosts.length !== 1) {
      throw new InputError(
        `--username applies to one registry, but this run uses ${hosts.length || "no"} (${hosts.join(", ")}); ` +
          "log in to each with docker login instead",
      );
    }
    const password = await readPassword();
    credentials = explicitCredentials(
      hosts[0] as string,
      { username: flags.username, password },
      credentials,
    );
  }
  const options: RegistryClientOptions = {
    credentials,
    ...(flags.insecure ? { insecure: true } : {}),
    ...(flags.caFile ? { caFile: flags.caFile } : {}),
    timeouts: httpTimeouts(flags),
    retry: { ...envRetry(), ...(onRetry ? { onRetry } : {}) },
  };
  return new RegistryAccess(options, parseMirrors(flags.mirror ?? []), storeOptions);
}

/** `BUNDLE_RETRIES`: how often transient faults are retried (tests set few, to fail fast). */
export function envRetry(): RetryOptions {
  const retries = process.env.BUNDLE_RETRIES === undefined ? undefined : Number(process.env.BUNDLE_RETRIES);
  return retries !== undefined && Number.isInteger(retries) ? { retries, baseDelayMs: 100 } : {};
}

/** The HTTP limits the flags set; what they leave unset keeps DEFAULT_TIMEOUTS. */
export function httpTimeouts(flags: HttpFlags): HttpTimeouts {
  return {
    ...(flags.connectTimeout !== undefined
      ? { connectMs: parseSeconds(flags.connectTimeout, "--connect-timeout") }
      : {}),
    ...(flags.responseTimeout !== undefined
      ? { responseMs: parseSeconds(flags.responseTimeout, "--response-timeout") }
      : {}),
    ...(flags.minRate !== undefined
      ? { minBytesPerSecond: flags.minRate.trim() === "0" ? 0 : parseByteSize(flags.minRate, "--min-rate") }
      : {}),
    ...(flags.rateWindow !== undefined
      ? { rateWindowMs: parseSeconds(flags.rateWindow, "--rate-window") }
      : {}),
  };
}

/** Seconds, fractions allowed (tests wait 0.5 s, not 30). */
function parseSeconds(text: string, flag: string): number {
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text.trim()) || !(seconds > 0) || seconds > 86_400)
    throw new InputError(`${flag} ${text}: write seconds, e.g. 30 (more than 0, at most 86400)`);
  return Math.round(seconds * 1000);
}

/** `--mirror docker.io=http://127.0.0.1:5001` (repeatable). */
export function parseMirrors(list: string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const item of list) {
    const eq = item.indexOf("=");
    if (eq <= 0 || eq === item.length - 1) {
      throw new InputError(
        `--mirror ${item}: expected SRC=URL, e.g. --mirror docker.io=http://127.0.0.1:5001`,
      );
    }
    map.set(resolveEndpoint(item.slice(0, eq)).host, item.slice(eq + 1));
  }
  return map;
}
