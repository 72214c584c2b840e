/**
 * What a git URL says, read the way git reads it: the password it carries (which must stay in
 * memory) and the transport git would pick for it (which decides whether a submodule may use it).
 */
import { InputError } from "../util/errors.js";

/** `scheme://` then the authority's user info up to the first `@`, as git's credential.c cuts it. */
const USERINFO = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#@]*)@/;

export interface SplitGitUrl {
  /** The URL without its password (`https://user@host/repo.git`): safe to store and print. */
  url: string;
  /** The user name as git would send it (percent-decoded); "" when the URL names none. */
  username: string;
  /** Percent-decoded, as git decodes it; never printed, stored, or put in a process's arguments. */
  password?: string;
}

/** Takes the password out of `https://user:secret@host/…`; a URL without one comes back as it is. */
export function splitGitUrl(written: string): SplitGitUrl {
  const m = USERINFO.exec(written);
  const colon = m?.[2]?.indexOf(":") ?? -1;
  if (!m || colon < 0) return { url: written, username: m ? decode(m[2]!) : "" };
  const user = m[2]!.slice(0, colon);
  const url = `${m[1]}${user === "" ? "" : `${user}@`}${written.slice(m[0].length)}`;
  const scheme = m[1]!.slice(0, -3).toLowerCase();
  // Only git's http transport asks a credential helper; ssh and the rest would drop it silently.
  if (scheme !== "http" && scheme !== "https")
    throw new InputError(
      `${url}: a password in a ${scheme}:// URL is never used by git; use a key or a credential helper`,
    );
  const password = decode(m[2]!.slice(colon + 1));
  if ([...password].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f))
    throw new InputError(`${url}: the password in this URL holds a control character`);
  return { url, username: decode(user), password };
}

/** Any `scheme://user:password@` in `text` shown as `scheme://user@`: for messages quoting input. */
export function redactUrlPassword(text: string): string {
  return text.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#@:\s]*):[^/?#@\s]*@/g, "$1@");
}

/** `https://host:8443` for `https://user@host:8443/repo.git`, as git names the origin to a credential helper. */
export function gitOrigin(url: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(?:[^/?#@]*@)?([^/?#]*)/.exec(url);
  return m ? `${m[1]}://${decode(m[2]!)}` : "";
}

/**
 * The protocol name git's `protocol.<name>.allow` would check for `url` (transport.c, connect.c):
 * `<name>::…` is a remote helper, `file://` and plain paths are `file`, `ssh://` and `host:path`
 * are `ssh`, any other `scheme://` is that scheme.
 */
export function gitProtocol(url: string): string {
  const helper = /^([A-Za-z][A-Za-z0-9+.-]*)::/.exec(url);
  if (helper) return helper[1]!.toLowerCase();
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase();
  if (scheme === "git+ssh" || scheme === "ssh+git") return "ssh";
  if (scheme) return scheme;
  const colon = url.indexOf(":");
  const slash = url.indexOf("/");
  const local = colon < 0 || (slash >= 0 && slash < colon) || /^[A-Za-z]:[/\\]/.test(url);
  return local ? "file" : "ssh";
}

/** Invalid escapes stay as written, as git's url_decode leaves them. */
function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
