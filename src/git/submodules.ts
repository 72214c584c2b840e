/**
 * Submodules: each one's recorded commit is fetched into the superproject's cache repository,
 * so that writeArchive finds every object in one place. Their URLs come from .gitmodules at the
 * superproject's commit; relative ones (`../other.git`) resolve against the superproject's URL
 * as git resolves them. Nested submodules are followed.
 */
import { createHash } from "node:crypto";
import { InputError } from "../util/errors.js";
import { checkUrl } from "./cache.js";
import { gitAt } from "./exec.js";
import { ensureCommit, type Remote } from "./fetch.js";
import { listTree } from "./tree.js";

export async function fetchSubmodules(
  repoDir: string,
  superUrl: string,
  commit: string,
  seen = new Set<string>(),
): Promise<void> {
  const git = gitAt(repoDir);
  const links = (await listTree(git, commit)).filter((e) => e.type === "commit");
  if (links.length === 0) return;
  const urls = await submoduleUrls(repoDir, commit);
  for (const link of links) {
    const written = urls.get(link.path);
    if (written === undefined)
      throw new InputError(`${superUrl} at ${commit}: submodule ${link.path} has no url in .gitmodules`);
    const url = resolveSubmoduleUrl(superUrl, written);
    checkUrl(url);
    if (seen.has(link.oid)) continue;
    seen.add(link.oid);
    await ensureCommit(repoDir, submoduleRemote(url), link.oid);
    await fetchSubmodules(repoDir, url, link.oid, seen);
  }
}

/** Fetched by URL rather than a named remote; a full fetch keeps its refs apart from the superproject's. */
function submoduleRemote(url: string): Remote {
  const ns = `refs/bundle/modules/${createHash("sha256").update(url).digest("hex").slice(0, 16)}`;
  return { name: url, url, fullRefspecs: [`+refs/heads/*:${ns}/heads/*`, `+refs/tags/*:${ns}/tags/*`] };
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

/** `./x` and `../x` relative to the superproject's URL; `git@host:org/a` + `../b` → `git@host:org/b`. */
export function resolveSubmoduleUrl(superUrl: string, url: string): string {
  if (!/^\.\.?\//.test(url)) return url;
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
  return `${base}${sep}${rest}`;
}
