/**
 * `bundle deploy`, the offline side: its flags and help, and the handler that checks the site's
 * mirrors, proves each release's images and runs helm for each release (or prints the commands).
 */
import type { Command } from "commander";
import type { BundleContents } from "../../bundle/contents.js";
import type { Output } from "../output.js";
import type { RegistryFlags } from "../registries.js";
import {
  collect,
  example,
  fileServer,
  retryLogger,
  withBundle,
  withHttpLimits,
  withRegistryAccess,
  withValues,
  type LazyOutput,
  type ValueFlags,
} from "../shared.js";

interface DeployFlags extends RegistryFlags, ValueFlags {
  registry?: string;
  fileserver?: string;
  dryRun?: boolean;
  helm?: string;
  kubeContext?: string;
  kubeconfig?: string;
  atomic?: boolean;
  timeout: string;
  workDir?: string;
  strict?: boolean;
  skipLint?: string[];
}

export function define(program: Command, out: LazyOutput): void {
  const deploy = program
    .command("deploy")
    .description(
      "offline side: check the mirrors hold everything, point every chart image at its mirror, render each release with helm template and prove every image it runs is on the registry, then helm upgrade --install each release",
    )
    .argument("<DIR>", "a prepared bundle (folder or archive)")
    .option(
      "--registry <REG>",
      "the private registry, needed when the bundle has images: host[:port] or http(s)://host[:port]",
    )
    .option("--fileserver <URL>", "base URL of the file server, needed when the bundle has files")
    .option(
      "--dry-run",
      "prepare, lint, render and prove each release, print each helm command; install nothing",
    )
    .option("--helm <PATH>", "the helm executable (default: helm on PATH)")
    .option("--kube-context <NAME>", "passed to helm")
    .option("--kubeconfig <FILE>", "passed to helm")
    .option("--atomic", "passed to helm: roll back a failed release")
    .option("--timeout <DURATION>", "passed to helm --timeout", "10m")
    .option(
      "--work-dir <DIR>",
      "where the final charts and values files go (default DIR/deploy; ./bundle-deploy for an archive)",
    )
    .option(
      "--strict",
      "fetches from outside the site in the rendered charts stop the deploy (default: warnings)",
    )
    .option(
      "--skip-lint <RULE>",
      "do not apply this OpenWhisk rule (repeatable): scheduler-elasticsearch, kafka-sasl, limits-notation, elasticsearch-major, registry-name-slash",
      collect,
    );
  withHttpLimits(withValues(withRegistryAccess(deploy)));
  example(
    deploy,
    "bundle deploy ./bundle-out/openwhisk --registry 10.0.0.5:5000 --fileserver http://10.0.0.5:8003 --dry-run",
  );
  deploy.action((dir: string, opts: DeployFlags) =>
    withBundle(dir, (bundle) => runDeploy(bundle, opts, out())),
  );
}

async function runDeploy(bundle: BundleContents, flags: DeployFlags, out: Output): Promise<void> {
  const { registryAccess } = await import("../registries.js");
  const { resolveEndpoint } = await import("../../registry/endpoint.js");
  const access = flags.registry ? await registryAccess(flags, [flags.registry], retryLogger(out)) : undefined;
  const fileserver = await fileServer(flags);
  const { deploy, shellQuote } = await import("../../stages/deploy.js");
  const result = await deploy({
    bundle,
    ...(flags.registry && access
      ? { registryHost: resolveEndpoint(flags.registry).host, registry: access.store(flags.registry) }
      : {}),
    ...(fileserver && flags.fileserver ? { fileserver, fileserverUrl: flags.fileserver } : {}),
    valueOptions: { set: flags.set ?? [], valuesFiles: flags.values ?? [] },
    dryRun: flags.dryRun ?? false,
    timeout: flags.timeout,
    ...(flags.helm ? { helm: flags.helm } : {}),
    ...(flags.kubeContext ? { kubeContext: flags.kubeContext } : {}),
    ...(flags.kubeconfig ? { kubeconfig: flags.kubeconfig } : {}),
    ...(flags.atomic ? { atomic: true } : {}),
    ...(flags.workDir ? { workDir: flags.workDir } : {}),
    ...(flags.strict ? { strict: true } : {}),
    ...(flags.skipLint ? { skipLint: flags.skipLint } : {}),
    out,
  }).finally(() => fileserver?.close());
  out.result(
    { ok: true, name: result.lock.name, dryRun: flags.dryRun ?? false, releases: result.releases },
    () =>
      result.releases.length === 0
        ? [`${result.lock.name}: no releases to deploy`]
        : result.releases.map((r) =>
            flags.dryRun
              ? r.command.map(shellQuote).join(" ")
              : `release ${r.name} deployed in namespace ${r.namespace}` +
                (r.proof ? ` (${r.proof.images} images proved on the site registry)` : ""),
          ),
  );
}
