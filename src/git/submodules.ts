/**
 * Submodules: each one's recorded commit is fetched into the superproject's cache repository,
 * so that writeArchive finds every object in one place. Their URLs come from .gitmodules at the
 * superproject's commit; relative ones (`../other.git`) resolve against the superproject's URL
 * as git resolves them. Nested submodules are followed.
 */
import { createHash } from "node:crypto";
import { gitProtocol, redactUrlPassword, splitGitUrl } from "../config/gitUrl.js";
import { InputError } from "../util/errors.js";
import { checkUrl } from "./cache.js";
import { gitAt } from "./exec.js";
import { ensureCommit, urlAccess, type Remote } from "./fetch.js";
import { listTree } from "./tree.js";

/** Fetches the submodules of `top` at `commit`, and theirs, into the cache repository. */
export async function fetchSubmodules(repoDir: string, top: Remote, commit: string): Promise<void> {
  await fetchLinks(repoDir, top, commit, gitProtocol(top.url) === "file", new Set());
}

async function fetchLinks(
  repoDir: string,
  parent: Remote,
  commit: string,
  topIsLocal: boolean,
  seen: Set<string>,
): Promise<void> {
  const git = gitAt(repoDir);
  const links = (await listTree(git, commit)).filter((e) => e.type === "commit");
  if (links.length === 0) return;
  const urls = await submoduleUrls(repoDir, commit);
  for (const link of links) {
    const written = urls.get(link.path);
    if (written === undefined)
      throw new InputError(`${parent.url} at ${commit}: submodule ${link.path} has no url in .gitmodules`);
    const remote = submoduleRemote(
      parent,
      `${parent.url} at ${commit}: submodule ${link.path}`,
      written,
      topIsLocal,
    );
    if (seen.has(link.oid)) continue;
    seen.add(link.oid);
    await ensureCommit(repoDir, remote, link.oid);
    await fetchLinks(repoDir, remote, link.oid, topIsLocal, seen);
  }
}

/**
 * Where a submodule is fetched from, if git's defaults for submodules would fetch it at all:
 * https, http, ssh and git always; `file` (and plain paths) only when the top repository is local
 * itself (git's protocol.file.allow=user); `ext::`, other remote helpers and schemes never.
 * Fetched by URL rather than a named remote; a full fetch keeps its refs apart from the parent's.
 */
function submoduleRemote(parent: Remote, label: string, written: string, topIsLocal: boolean): Remote {
  const resolved = resolveSubmoduleUrl(parent.url, written);
  const asWritten = redactUrlPassword(written);
  if (resolved === undefined)
    throw new InputError(`${label}: url ${asWritten} climbs above its parent's host`);
  checkUrl(resolved);
  const { url, username, password } = splitGitUrl(resolved);
  const shown = resolved === written ? asWritten : `${asWritten} (${url})`;
  const why = refusal(gitProtocol(url), topIsLocal);
  if (why) throw new InputError(`${label}: url ${shown} refused: ${why}`);
  const ns = `refs/bundle/modules/${createHash("sha256").update(url).digest("hex").slice(0, 16)}`;
  // A relative URL on the parent's origin gets the parent's password, as git would send it.
  const auth = password === undefined ? parent.access.auth : urlAccess(url, username, password).auth;
  return {
    name: url,
    url,
    fullRefspecs: [`+refs/heads/*:${ns}/heads/*`, `+refs/tags/*:${ns}/tags/*`],
    // Outside a local top, git itself refuses `user`-only protocols too (an insteadOf to file://).
    access: { ...(auth ? { auth } : {}), fromUser: topIsLocal },
  };
}

function refusal(protocol: string, topIsLocal: boolean): string | undefined {
  if (["https", "http", "ssh", "git"].includes(protocol)) return undefined;
  if (protocol === "file")
    return topIsLocal
      ? undefined
      : "a local repository is fetched only for a top repository that is local too";
  if (protocol === "ext") return "ext:: runs a command; git never allows it for submodules";
  return `protocol ${protocol} is not one of https, http, ssh, git`;
}

/** Submodule path → URL as written in .gitmodules at `commit`. */
async function submoduleUrls(repoDir: string, commit: string): Promise<Map<string, string>> {
  let out = "";
  try {
    const re = "^submodule\\..*\\.(path|url)$";
    out = await gitAt(repoDir).raw(["config", "-z", "--blob", `${commit}:.gitmodules`, "--get-regexp", re]);
  } catch {
    return new Map(); // no .gitmodules, or nothing in it
  }
  const byName = new Map<string, { path?: string; url?: string }>();
  for (const record of out.split("\0")) {
    const nl = record.indexOf("\n");
    const key = record.slice(0, nl);
    const m = /^submodule\.(.*)\.(path|url)$/.exec(key);
    if (nl < 0 || !m) continue;
    const sub = byName.get(m[1]!) ?? {};
    sub[m[2] as "path" | "url"] = record.slice(nl + 1);
    byName.set(m[1]!, sub);
  }
  const urls = new Map<string, string>();
  for (const sub of byName.values()) if (sub.path && sub.url) urls.set(sub.path, sub.url);
  return urls;
}

/**
 * `./x` and `../x` relative to the superproject's URL; `git@host:org/a` + `../b` → `git@host:org/b`.
 * Undefined when `../` climbs above the host of a `scheme://host/…` URL.
 */
export function resolveSubmoduleUrl(superUrl: string, url: string): string | undefined {
  if (!/^\.\.?\//.test(url)) return url;
  const root = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*\//.exec(superUrl)?.[0];
  let base = superUrl.replace(/\/+$/, "");
  let rest = url;
  let sep = "/";
  for (;;) {
    if (rest.startsWith("./")) rest = rest.slice(2);
    else if (rest.startsWith("../")) {
      const cut = Math.max(base.lastIndexOf("/"), base.lastIndexOf(":"));
      sep = base[cut] ?? "/";
      base = base.slice(0, Math.max(cut, 0));
      rest = rest.slice(3);
    } else break;
  }
  const resolved = `${base}${sep}${rest}`;
  return root === undefined || resolved.startsWith(root) ? resolved : undefined;
}
