/**
 * The one typed model both definition formats load into. Stages see only this; they never
 * know whether a definition was written in the native format or the Telego dialect.
 */
import type { ImageRef } from "./imageRef.js";
import type { SourcePos } from "../util/errors.js";

/** `os/arch` or `os/arch/variant`, e.g. `linux/arm64`. */
export type Platform = string;

export const DEFAULT_PLATFORMS: readonly Platform[] = ["linux/amd64", "linux/arm64"];

/**
 * Values bound only at upload and deploy, from `--registry` and `--fileserver`.
 * They are never known at prepare, so templates that use them stay templates in the bundle.
 */
export const SITE_VALUES = ["IMG_REPO", "MAIN_NODE_IP", "FILESERVER_URL"] as const;
export type SiteValueName = (typeof SITE_VALUES)[number];

/** A template value: what YAML and JSON can hold. */
export type Value = string | number | boolean | null | Value[] | { [key: string]: Value };
export type Values = { [key: string]: Value };

export type MirrorNaming = "last-segment" | "full-path";

export interface MirrorConfig {
  /** Path prefix on the private registry, `teleinfra` as Telego does; may be empty. */
  prefix: string;
  /** `last-segment` keeps Telego's `prefix/<name>`; `full-path` keeps the whole path to avoid collisions. */
  naming: MirrorNaming;
}

/** Where an image lands on the private registry, without the registry host (bound at upload). */
export interface MirrorName {
  repository: string;
  tag?: string;
  digest?: string;
}

export interface ImageItem {
  ref: ImageRef;
  /** `registry` pulls over the network; `docker` exports from the local Docker daemon. */
  source: "registry" | "docker";
  platforms: Platform[];
  /** When true, a platform the source lacks is recorded as missing instead of failing prepare. */
  allowMissingPlatforms: boolean;
  mirror: MirrorName;
  at: SourcePos;
}

export type GitRevision = { kind: "commit"; commit: string } | { kind: "ref"; ref: string };

export interface GitItem {
  /** As written, less its password: `https://user@host/repo.git` at most. */
  url: string;
  /** The URL's password, taken out by splitGitUrl: handed to git by a credential helper, never stored. */
  password?: string;
  revision: GitRevision;
  /** File name under `files/`, `<repo>.tar.gz` unless the definition says otherwise. */
  archive: string;
  submodules: boolean;
  at: SourcePos;
}

export interface UrlItem {
  url: string;
  /** Lowercase hex; absent until the user pins it (prepare prints what it found). */
  sha256?: string;
  /** Path under the bundle's `files/`. */
  path: string;
  extract: boolean;
  at: SourcePos;
}

/**
 * Folders of a git archive whose npm dependencies are installed at prepare and carried as one
 * `.tar.gz` of `<dir>/node_modules/…` (and each folder's package-lock.json), so the site needs
 * no npm registry for them.
 */
export interface NpmItem {
  /** The archive (under `files/`) of the git item whose tree holds the folders. */
  git: string;
  /** Folders inside that tree, `/`-separated, each with a package.json; `.` is the top. */
  dirs: NpmDir[];
  /** Path under the bundle's `files/`, ending in `.tar.gz`. */
  path: string;
  at: SourcePos;
}

export interface NpmDir {
  /** Normalized, `/`-separated, no leading `./`; `.` for the tree's top. */
  dir: string;
  /** The package.json's file name in the folder: `package.json` unless the definition names another. */
  packageJson: string;
  at: SourcePos;
}

export type ChartSource =
  { kind: "git"; archive: string; path: string } | { kind: "local"; dir: string } | RemoteChartSource;

/**
 * A packaged chart fetched at prepare: from a Helm repository (`index.yaml` plus a `.tgz`) or an
 * OCI registry (Helm ≥ 3.8). Always an exact version; a pin, when given, must match the bytes.
 */
export type RemoteChartSource =
  | { kind: "repo"; url: string; chart: string; version: string; sha256?: string }
  | { kind: "oci"; ref: string; version: string; digest?: string };

export interface ChartItem {
  /** Folder name under the bundle's `charts/`. */
  name: string;
  source: ChartSource;
  at: SourcePos;
}

/** Where a rendered template goes: a file the file server serves, or a file inside a chart. */
export type TemplateDest = { kind: "file"; path: string } | { kind: "chart"; chart: string; path: string };

export interface TemplateItem {
  /** Handlebars for the native format; `${var}` for Telego filemaps. */
  syntax: "handlebars" | "dollar";
  text: string;
  /** Where `text` came from, so errors inside it point at the right file and line. */
  origin: SourcePos;
  dest: TemplateDest;
  /** File mode, e.g. 0o644. */
  mode: number;
  at: SourcePos;
}

export interface ReleaseItem {
  name: string;
  chart: string;
  namespace: string;
  /** Bundle paths (`files/…` or `charts/<name>/…`) of values files, applied in order. */
  valuesFiles: string[];
  at: SourcePos;
}

export interface Definition {
  name: string;
  /** Absolute path of the definition file and its folder. */
  file: string;
  dir: string;
  platforms: Platform[];
  values: Values;
  /** For Telego's `${name}`: values that are themselves templates, expanded where used. */
  valueOrigins: Record<string, SourcePos>;
  mirror: MirrorConfig;
  images: ImageItem[];
  git: GitItem[];
  files: UrlItem[];
  npm: NpmItem[];
  charts: ChartItem[];
  templates: TemplateItem[];
  releases: ReleaseItem[];
}

/** Renders a template destination as a bundle path: `files/x.yml` or `charts/openwhisk/x.json`. */
export function destPath(dest: TemplateDest): string {
  return dest.kind === "file" ? `files/${dest.path}` : `charts/${dest.chart}/${dest.path}`;
}

/** The inverse of destPath. */
export function parseDestPath(bundlePath: string): TemplateDest {
  const [top, second = "", ...rest] = bundlePath.split("/");
  return top === "files"
    ? { kind: "file", path: [second, ...rest].join("/") }
    : { kind: "chart", chart: second, path: rest.join("/") };
}
