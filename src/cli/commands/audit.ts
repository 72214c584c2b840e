/**
 * `bundle audit`: its flags and help, and the handler that lists what a bundle would still fetch
 * from outside the site (exit 1 if anything).
 */
import type { Command } from "commander";
import type { BundleContents } from "../../bundle/contents.js";
import type { Output } from "../output.js";
import { example, withBundle, type LazyOutput } from "../shared.js";

interface AuditFlags {
  registry?: string;
  fileserver?: string;
  helm?: string;
}

export function define(program: Command, out: LazyOutput): void {
  const audit = program
    .command("audit")
    .description(
      "list everything a bundle would still fetch from outside the site at install time (exit 1 if any)",
    )
    .argument("<DIR>", "a prepared bundle (folder or archive)")
    .option("--registry <REG>", "the site's registry, counted as inside the site")
    .option("--fileserver <URL>", "the site's file server, counted as inside the site")
    .option(
      "--helm <PATH>",
      "render each release with this helm, as deploy does, and judge what it renders (default: helm on PATH; without one, the chart files are read)",
    );
  example(
    audit,
    "bundle audit ./bundle-out/openwhisk --registry 10.0.0.5:5000 --fileserver http://10.0.0.5:8003",
  );
  audit.action((dir: string, opts: AuditFlags) => withBundle(dir, (bundle) => runAudit(bundle, opts, out())));
}

async function runAudit(bundle: BundleContents, flags: AuditFlags, out: Output): Promise<void> {
  const { formatAuditFindings } = await import("../../audit/index.js");
  const { audit } = await import("../../stages/audit.js");
  const { helmOnPath } = await import("../../stages/deploy.js");
  const { resolveEndpoint } = await import("../../registry/endpoint.js");
  const helm = flags.helm ?? (await helmOnPath());
  const { findings, mode } = await audit(bundle, {
    ...(flags.registry ? { registryHost: resolveEndpoint(flags.registry).host } : {}),
    ...(flags.fileserver ? { fileserverUrl: flags.fileserver } : {}),
    ...(helm ? { helm } : {}),
  });
  out.info(
    mode === "rendered"
      ? `audit: each release rendered with ${helm} as deploy renders it, and the files the file server serves`
      : "audit: the chart files read as they are (no helm here: give --helm PATH to audit what the charts render)",
  );
  out.result({ ok: findings.length === 0, mode, findings }, () =>
    findings.length === 0
      ? ["nothing in the bundle reaches outside the site"]
      : [formatAuditFindings(findings).trimEnd(), `${findings.length} references reach outside the site`],
  );
  if (findings.length > 0) process.exitCode = 1;
}
