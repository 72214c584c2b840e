/**
 * Line by line: URLs to hosts outside the site, `git clone`s, package installs, and (for files
 * that are not plain YAML or JSON) `image:` lines. Comments are skipped: they do not run.
 */
import path from "node:path";
import type { ImageJudge } from "./references.js";
import { isInsideSite, wrongPort, type Site } from "./site.js";

export type FindingKind = "image" | "url" | "git-clone" | "package-registry";

/** A finding inside one file; `col` only orders findings that share a line. */
export interface LineFinding {
  kind: FindingKind;
  line: number;
  col: number;
  text: string;
  why: string;
}

export interface FileStyle {
  /** Which comments the file has: `#` (YAML, shell, …), `//` and `/* *\/` (JavaScript, …), or none (JSON). */
  comments: "hash" | "slash" | "none";
  /** A Helm template: `{{/* … *\/}}` are comments. */
  helm: boolean;
}

const HASH_EXT = new Set([
  ".yaml",
  ".yml",
  ".sh",
  ".bash",
  ".ksh",
  ".zsh",
  ".py",
  ".rb",
  ".pl",
  ".conf",
  ".cfg",
  ".ini",
  ".properties",
  ".toml",
  ".tpl",
  ".env",
  ".mk",
  ".txt",
  "",
]);
const SLASH_EXT = new Set([
  ".js",
  ".mjs",
  ".cjs",
  ".ts",
  ".java",
  ".go",
  ".groovy",
  ".gradle",
  ".scala",
  ".kt",
  ".c",
  ".h",
  ".cc",
  ".cpp",
  ".rs",
  ".jsonc",
  ".json5",
]);

/** The style of a bundle path (for a template, the path it renders to). */
export function styleOf(bundlePath: string): FileStyle {
  const base = path.posix.basename(bundlePath);
  const ext = path.posix.extname(base).toLowerCase();
  const helm = /^charts\/[^/]+\/(?:.*\/)?templates\//.test(bundlePath) || ext === ".tpl";
  if (/^(?:Dockerfile|Containerfile|Makefile)/i.test(base)) return { comments: "hash", helm };
  if (HASH_EXT.has(ext)) return { comments: "hash", helm };
  if (SLASH_EXT.has(ext)) return { comments: "slash", helm };
  return { comments: "none", helm };
}

/** Replaces every character of the matches, newlines excepted, with spaces: lines keep their numbers. */
function blank(text: string, re: RegExp): string {
  return text.replace(re, (m) => m.replace(/[^\n]/g, " "));
}

const HELM_COMMENT = /\{\{-?\s*\/\*[\s\S]*?\*\/\s*-?\}\}/g;
const BLOCK_COMMENT = /\/\*[\s\S]*?\*\//g;

/** Cuts a trailing `# comment`: a `#` at the start or after a space, outside quotes. */
export function stripHashComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      // An apostrophe inside a word (don't) opens no quote.
      if (c === "'" && i > 0 && /\w/.test(line[i - 1] ?? "")) continue;
      quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(line[i - 1] ?? ""))) {
      return line.slice(0, i);
    }
  }
  return line;
}

const URL_RE = /\b(?:https?|ftp|git|ssh):\/\/[^\s"'`<>]*/gi;
const SCP_GIT_RE = /\bgit@([\w.-]+):[\w./~-]+/g;
const GIT_COMMAND =
  /\bgit\s+(?:-{1,2}[\w-]+(?:[= ]\S+)?\s+)*(?:clone|fetch|pull|ls-remote|submodule\s+add)\b/;
/** What comes right before a URL that names a namespace or schema rather than something fetched. */
const NAMESPACE_CONTEXT =
  /(?:xmlns(?::[\w.-]+)?\s*=\s*\\?["']?|["']?\$(?:schema|id|ref)["']?\s*[:=]\s*["']?)$/;

/** Hosts whose URLs are identifiers (schemas, XML namespaces, licences), never fetched at install. */
const NON_FETCHED_HOSTS = new Set([
  "json-schema.org",
  "www.json-schema.org",
  "w3.org",
  "www.w3.org",
  "schemas.xmlsoap.org",
  "schemas.microsoft.com",
  "purl.org",
  "xmlns.com",
  "schema.org",
  "www.schema.org",
  "opensource.org",
  "www.opensource.org",
  "spdx.org",
]);
const LICENSE_URL = /^https?:\/\/(?:www\.)?(?:apache\.org|gnu\.org)\/licenses\b/i;

const PACKAGE_HOSTS = [
  "registry.npmjs.org",
  "registry.npmjs.com",
  "registry.yarnpkg.com",
  "npm.pkg.github.com",
  "pypi.org",
  "pypi.python.org",
  "files.pythonhosted.org",
  "deb.debian.org",
  "security.debian.org",
  "ftp.debian.org",
  "archive.ubuntu.com",
  "security.ubuntu.com",
  "ports.ubuntu.com",
  "dl-cdn.alpinelinux.org",
  "mirror.centos.org",
  "mirrors.fedoraproject.org",
  "download.fedoraproject.org",
  "repo.maven.apache.org",
  "repo1.maven.org",
  "plugins.gradle.org",
  "rubygems.org",
  "proxy.golang.org",
  "crates.io",
  "static.crates.io",
  "index.crates.io",
  "repo.packagist.org",
  "packagist.org",
  "conda.anaconda.org",
  "repo.anaconda.com",
];

function isPackageHost(host: string): boolean {
  return PACKAGE_HOSTS.some((h) => host === h || host.endsWith(`.${h}`));
}

const FLAGS = String.raw`(?:\s+-{1,2}[\w-]+(?:=\S+)?)*`;
const cmd = (tool: string, verbs: string) =>
  new RegExp(String.raw`\b(?:${tool})${FLAGS}\s+(?:${verbs})\b`, "g");

/** Commands that fetch packages from a public registry, and where they fetch from. */
const PACKAGE_COMMANDS: { re: RegExp; from: string }[] = [
  { re: cmd("npm", "install|i|ci|add|update|upgrade"), from: "registry.npmjs.org" },
  { re: cmd("yarn", "install|add"), from: "registry.yarnpkg.com" },
  { re: cmd("pnpm", "install|i|add"), from: "registry.npmjs.org" },
  {
    re: cmd(String.raw`pip[23]?(?:\.\d+)?|python[23]?(?:\.\d+)?\s+-m\s+pip`, "install|download"),
    from: "pypi.org",
  },
  { re: cmd("easy_install", String.raw`\S+`), from: "pypi.org" },
  {
    re: cmd("apt-get|apt", "install|update|upgrade|dist-upgrade|full-upgrade|build-dep|source|download"),
    from: "the Debian/Ubuntu package mirrors",
  },
  { re: cmd("apk", "add|update|upgrade|fetch"), from: "the Alpine package mirrors" },
  {
    re: cmd("yum|dnf|microdnf|tdnf", "install|update|upgrade|makecache|groupinstall|reinstall"),
    from: "the distribution's package mirrors",
  },
  { re: cmd("zypper", "install|in|refresh|ref|update|up"), from: "the openSUSE package mirrors" },
  { re: cmd("gem", "install"), from: "rubygems.org" },
  { re: cmd("go", String.raw`get|install|mod\s+download`), from: "proxy.golang.org" },
  { re: cmd("cargo", "install|fetch"), from: "crates.io" },
  { re: cmd("composer", "install|require|update"), from: "packagist.org" },
  { re: cmd("conda", "install"), from: "the Anaconda channels" },
];
/** Flags that keep a package command off the network, or point it at a registry we cannot judge. */
const OFFLINE_FLAGS = /\s(?:--offline|--no-index|--registry|--index-url|-i)(?:[\s=]|$)/;
const LOCAL_PACKAGE = /^(?:\.{0,2}\/|file:|~\/)|\.(?:deb|rpm|apk|whl|tgz|tar\.gz|gem|zip)$/;

interface UrlHit {
  text: string;
  col: number;
  host: string;
  /** Set when the host is the site's but the port is not one it serves. */
  wrongPort?: string;
}

/** The http(s) URLs of a line that point outside the site, plus whether the line held any URL at all. */
function urlsOf(code: string, gitLine: boolean, site: Site): { outside: UrlHit[]; any: boolean } {
  const outside: UrlHit[] = [];
  let any = false;
  for (const m of code.matchAll(URL_RE)) {
    any = true;
    let text = m[0];
    const scheme = text.slice(0, text.indexOf(":")).toLowerCase();
    if ((scheme === "git" || scheme === "ssh") && !gitLine) continue;
    const col = m.index;
    if (NAMESPACE_CONTEXT.test(code.slice(0, col))) continue;
    // A Helm expression or a shell variable: keep the URL only if its host is written out.
    const cut = text.search(/\{\{|\$/);
    if (cut >= 0) {
      text = text.slice(0, cut);
      if (!/^[a-z]+:\/\/(?:[^/?#@]*@)?[^/?#:@]+[/?#:]/i.test(text)) continue;
    }
    text = text.replace(/[.,;:!?)\]}>'"\\]+$/, "");
    const host = /^[a-z]+:\/\/(?:[^/?#@]*@)?(\[[^\]]+\]|[^/?#:]*)/i.exec(text)?.[1]?.toLowerCase() ?? "";
    const wrong = host === "" ? undefined : wrongPort(text, host, site);
    if (wrong) {
      outside.push({ text, col, host, wrongPort: wrong });
      continue;
    }
    if (host === "" || isInsideSite(host, site)) continue;
    if (NON_FETCHED_HOSTS.has(host) || LICENSE_URL.test(text)) continue;
    outside.push({ text, col, host });
  }
  if (gitLine) {
    for (const m of code.matchAll(SCP_GIT_RE)) {
      any = true;
      const host = (m[1] ?? "").toLowerCase();
      if (!isInsideSite(host, site)) outside.push({ text: m[0], col: m.index, host });
    }
  }
  return { outside, any };
}

function urlFinding(hit: UrlHit, line: number, gitLine: boolean, packageLine: boolean): LineFinding {
  const { text, col, host } = hit;
  if (hit.wrongPort) {
    return {
      kind: "url",
      line,
      col,
      text,
      why: `${hit.wrongPort}: nothing of the bundle is there; use the file server's URL`,
    };
  }
  if (gitLine || /^(?:git|ssh):/i.test(text) || text.startsWith("git@")) {
    return {
      kind: "git-clone",
      line,
      col,
      text,
      why:
        `clones from ${host} at install time; carry the commit as a git archive in the bundle (git:) ` +
        `and fetch it from the file server`,
    };
  }
  if (packageLine || isPackageHost(host)) {
    return {
      kind: "package-registry",
      line,
      col,
      text,
      why:
        `fetches packages from ${host} at install time; carry them in the bundle and install them from ` +
        `the file server or a package mirror inside the site`,
    };
  }
  const github =
    host === "raw.githubusercontent.com" || host === "github.com" || host.endsWith(".github.com");
  return {
    kind: "url",
    line,
    col,
    text,
    why: github
      ? `downloads from ${host} (GitHub) at install time; carry the file in the bundle (files:) and fetch it from the file server`
      : `${host} is outside the site (neither the registry nor the file server); carry what it serves in the bundle (files:) and fetch it from the file server`,
  };
}

/**
 * Package commands on a line: `any` when one is there at all, `findings` for those that reach a
 * public registry (not `--offline`, not only local files).
 */
function packageCommands(code: string, line: number): { any: boolean; findings: LineFinding[] } {
  // Exec form (`["npm", "install"]`) reads as a command once quotes and commas are spaces.
  const flat = code.replace(/["',[\]]/g, " ");
  const out: LineFinding[] = [];
  let any = false;
  for (const { re, from } of PACKAGE_COMMANDS) {
    for (const m of flat.matchAll(re)) {
      any = true;
      const rest = flat.slice(m.index);
      const segment = (rest.split(/&&|\|\||[;|)`]/)[0] ?? "").replace(/\s+/g, " ").trim();
      if (OFFLINE_FLAGS.test(` ${segment} `)) continue;
      const args = segment
        .slice(m[0].replace(/\s+/g, " ").length)
        .split(" ")
        .filter((a) => a !== "" && !a.startsWith("-"));
      if (args.length > 0 && args.every((a) => LOCAL_PACKAGE.test(a))) continue;
      const tool = segment.split(" ")[0] ?? "";
      out.push({
        kind: "package-registry",
        line,
        col: m.index,
        text: segment,
        why:
          `${tool} fetches packages from ${from} at install time; carry them in the bundle or point ` +
          `${tool} at a package mirror inside the site`,
      });
    }
  }
  return { any, findings: out };
}

const IMAGE_LINE = /^(\s*(?:-\s+)?["']?image["']?\s*:\s*)(.*)$/;

/** An `image:` line's value, unquoted; undefined for a block, a map or nothing. */
function imageValue(code: string): { value: string; col: number } | undefined {
  const m = IMAGE_LINE.exec(code);
  if (!m) return undefined;
  const raw = (m[2] ?? "").trim().replace(/,$/, "").trim();
  if (raw === "" || /^[|>{[&*!]/.test(raw)) return undefined;
  const value = /^(["'])(.*)\1$/.exec(raw)?.[2] ?? raw;
  return { value, col: (m[1] ?? "").length };
}

export interface ScanOptions {
  site: Site;
  /** Judges `image:` lines; without one, they are not looked for (files whose images were found by parsing them). */
  judge?: ImageJudge;
}

/** Every finding of `text`, a file of the given style, line by line. */
export function scanText(text: string, style: FileStyle, opts: ScanOptions): LineFinding[] {
  let body = text;
  if (style.helm) body = blank(body, HELM_COMMENT);
  if (style.comments === "slash") body = blank(body, BLOCK_COMMENT);
  const out: LineFinding[] = [];
  body.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trimStart();
    if (style.comments === "hash" && trimmed.startsWith("#")) return;
    if (style.comments === "slash" && trimmed.startsWith("//")) return;
    if (trimmed.startsWith("<!--")) return;
    const code = style.comments === "hash" ? stripHashComment(raw) : raw;
    const gitLine = GIT_COMMAND.test(code);
    const commands = packageCommands(code, line);
    const urls = urlsOf(code, gitLine, opts.site);
    for (const hit of urls.outside) out.push(urlFinding(hit, line, gitLine, commands.any));
    // A command whose line names a URL is judged by that URL (a site mirror, or the finding above).
    if (!urls.any) out.push(...commands.findings);
    if (opts.judge) {
      const image = imageValue(code);
      const why = image ? opts.judge.judge(image.value) : undefined;
      if (image && why) out.push({ kind: "image", line, col: image.col, text: image.value, why });
    }
  });
  return out;
}
