/**
 * `bundle audit`: with a helm at hand, each release is prepared as deploy prepares it (overlays,
 * generated mirror overrides, the definition's values files) and rendered with `helm template`;
 * what the rendered objects run and fetch is judged, so files that never render report nothing
 * and runtime manifests are read as the invoker reads them. The files the file server serves
 * are read as text either way. Without helm, the chart files are read as they are.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { BundleContents } from "../bundle/contents.js";
import { auditBundle, type AuditFinding } from "../audit/index.js";
import { ImageJudge } from "../audit/references.js";
import { readRendered } from "../audit/rendered.js";
import { makeSite } from "../audit/site.js";
import { readFile } from "node:fs/promises";
import { bundleValues } from "./upload.js";
import { helmArgs, prepareRelease, renderChart } from "./deploy.js";

export interface AuditRun {
  findings: AuditFinding[];
  /** `rendered` with helm, `files` without. */
  mode: "rendered" | "files";
}

export async function audit(
  bundle: BundleContents,
  opts: { registryHost?: string; fileserverUrl?: string; helm?: string },
): Promise<AuditRun> {
  const site = makeSite(opts);
  const siteOpts = { registryHost: site.registryHost, fileserverUrl: site.fileserverUrl };
  if (!opts.helm || bundle.lock.releases.length === 0)
    return { findings: await auditBundle(bundle, siteOpts), mode: "files" };
  const lock = bundle.lock;
  const judge = new ImageJudge(lock, site);
  const values = await bundleValues(bundle, siteOpts);
  const work = await mkdtemp(path.join(os.tmpdir(), "bundle-audit-"));
  const findings: AuditFinding[] = [];
  try {
    for (const release of lock.releases) {
      const p = await prepareRelease(lock, release, values, path.join(work, release.name), {
        bundle,
        registryHost: site.registryHost,
      });
      const rendered = path.join(p.dir, "rendered.yaml");
      await renderChart(opts.helm, helmArgs("template", p, { timeout: "10m" }), rendered, release.name);
      const view = readRendered(await readFile(rendered, "utf8"), `release ${release.name}`, site);
      const at = (object: string, where: string) => `release ${release.name}: ${object} ${where}`;
      for (const i of view.images) {
        const why = judge.judge(i.image);
        if (why)
          findings.push({
            kind: "image",
            file: at(i.object, `container ${i.container}`),
            line: 0,
            text: i.image,
            why,
          });
      }
      for (const f of view.fetches)
        findings.push({ kind: f.kind, file: at(f.object, f.where), line: 0, text: f.text, why: f.why });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const unique = [...new Map(findings.map((f) => [JSON.stringify([f.file, f.kind, f.text]), f])).values()];
  return {
    findings: [...unique, ...(await auditBundle(bundle, { ...siteOpts, charts: false }))],
    mode: "rendered",
  };
}
