/**
 * Image references, parsed and normalised once (the grammar of distribution/reference):
 * `redis` → `docker.io/library/redis:latest`, `localhost:5000/a/b@sha256:…` keeps its port
 * and digest. Everything downstream works with `ImageRef`, never with raw strings.
 */
import { InputError } from "../util/errors.js";

export interface ImageRef {
  /** Registry host with optional port, `docker.io` for Docker Hub. */
  readonly registry: string;
  /** Repository path, e.g. `library/redis`. */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

export const DOCKER_HUB = "docker.io";
const HUB_ALIASES = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const DOMAIN =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$/;

/** Whether `name` is a repository path by the distribution grammar (`teleinfra/redis`), without a host. */
export function isRepositoryPath(name: string): boolean {
  return name.length <= 255 && name.split("/").every((c) => PATH_COMPONENT.test(c));
}

/** Whether `tag` is a tag by the distribution grammar. */
export function isTag(tag: string): boolean {
  return TAG.test(tag);
}

/** Parses `ref`, or throws an InputError that says what part is wrong. */
export function parseImageRef(ref: string): ImageRef {
  const fail = (why: string): never => {
    throw new InputError(`invalid image reference "${ref}": ${why}`);
  };
  if (ref.trim() !== ref || ref === "") fail("empty or surrounded by spaces");

  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) fail(`digest "${digest}" is not sha256: followed by 64 lowercase hex digits`);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(`tag "${tag}" may hold only letters, digits, '_', '.', '-' (at most 128)`);
  }

  const { registry, path } = splitRegistry(rest);
  if (!DOMAIN.test(registry)) fail(`registry "${registry}" is not a host name with an optional port`);
  const components = path.split("/");
  for (const c of components) {
    if (!PATH_COMPONENT.test(c)) {
      fail(`repository part "${c}" must be lowercase letters and digits, separated by '.', '_', '__' or '-'`);
    }
  }
  const isHub = HUB_ALIASES.has(registry);
  const repository = isHub && components.length === 1 ? `library/${path}` : path;
  if (!tag && !digest) tag = "latest";
  return {
    registry: isHub ? DOCKER_HUB : registry,
    repository,
    ...(tag ? { tag } : {}),
    ...(digest ? { digest } : {}),
  };
}

/** A first component with a '.', a ':' or `localhost` is a registry host (Docker's rule). */
function splitRegistry(name: string): { registry: string; path: string } {
  const slash = name.indexOf("/");
  const first = slash < 0 ? "" : name.slice(0, slash);
  if (
    slash >= 0 &&
    (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("["))
  ) {
    return { registry: first, path: name.slice(slash + 1) };
  }
  return { registry: DOCKER_HUB, path: name };
}

/** The fully qualified form: `docker.io/library/redis:4.0`, `host:5000/a/b@sha256:…`. */
export function formatImageRef(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

/** The last component of the repository path: `wurstmeister/kafka` → `kafka`. */
export function lastSegment(ref: ImageRef): string {
  const parts = ref.repository.split("/");
  return parts[parts.length - 1] ?? ref.repository;
}
