/** `bundle lint`: everything prepare checks about a definition, without touching the network. */
import { formatImageRef } from "../config/imageRef.js";
import { formatMirror } from "../config/mirror.js";
import { loadDefinition, missingValues, siteValuesUsed, type LoadOptions } from "../config/load.js";
import { destPath, type Definition } from "../config/model.js";
import { DefinitionError } from "../util/errors.js";

export interface LintSummary {
  name: string;
  file: string;
  images: { ref: string; mirror: string; platforms: string[] }[];
  git: { url: string; revision: string; archive: string }[];
  files: { url: string; path: string; sha256: string | null }[];
  templates: string[];
  releases: { name: string; chart: string; namespace: string }[];
  siteValuesToBind: string[];
}

export async function lint(file: string, opts: LoadOptions): Promise<LintSummary> {
  const def = await loadDefinition(file, opts);
  const missing = missingValues(def);
  if (missing.length > 0) throw new DefinitionError(missing);
  return summarize(def);
}

export function summarize(def: Definition): LintSummary {
  return {
    name: def.name,
    file: def.file,
    images: def.images.map((i) => ({
      ref: (i.source === "docker" ? "docker-daemon:" : "") + formatImageRef(i.ref),
      mirror: formatMirror(i.mirror),
      platforms: i.platforms,
    })),
    git: def.git.map((g) => ({
      url: g.url,
      revision: g.revision.kind === "commit" ? g.revision.commit : g.revision.ref,
      archive: g.archive,
    })),
    files: def.files.map((f) => ({ url: f.url, path: f.path, sha256: f.sha256 ?? null })),
    templates: def.templates.map((t) => destPath(t.dest)),
    releases: def.releases.map((r) => ({ name: r.name, chart: r.chart, namespace: r.namespace })),
    siteValuesToBind: siteValuesUsed(def),
  };
}
