/**
 * `bundle upload`, the offline side: its flags and help, and the handler that pushes a bundle's
 * images and charts to the site's registry and its files to the file server.
 */
import type { Command } from "commander";
import type { BundleContents } from "../../bundle/contents.js";
import { formatBytes, table } from "../../util/format.js";
import type { Output } from "../output.js";
import type { RegistryFlags } from "../registries.js";
import {
  checkSignature,
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

interface UploadFlags extends RegistryFlags, ValueFlags {
  registry?: string;
  fileserver?: string;
  tokenFile?: string;
  continueOnError?: boolean;
  publicKey?: string;
}

export function define(program: Command, out: LazyOutput): void {
  const upload = program
    .command("upload")
    .description(
      "offline side: push the bundle's images (with their signatures, SBOMs and attestations) and charts (Helm OCI artifacts, REG/<prefix>/charts/<name>:<version>) to the private registry and its files to the file server",
    )
    .argument("<DIR>", "a prepared bundle (folder or archive)")
    .option(
      "--registry <REG>",
      "the private registry: host[:port] or http(s)://host[:port] (needed when the bundle has images; without it charts are not pushed)",
    )
    .option(
      "--fileserver <URL>",
      "base URL of the file server, e.g. http://10.0.0.5:8003 (needed when the bundle has files)",
    )
    .option("--token-file <FILE>", "bearer token for the file server's uploads")
    .option("--continue-on-error", "keep going past a failed item and list every failure at the end")
    .option(
      "--public-key <FILE>",
      "refuse a bundle whose lock is not signed by this ed25519 public key (PEM)",
    );
  withHttpLimits(withValues(withRegistryAccess(upload)));
  example(
    upload,
    "bundle upload ./bundle-out/openwhisk --registry 10.0.0.5:5000 --fileserver http://10.0.0.5:8003 --token-file token",
    "helm pull oci://10.0.0.5:5000/teleinfra/charts/openwhisk --version 1.0.0   # a chart it pushed",
  );
  upload.action((dir: string, opts: UploadFlags) =>
    withBundle(dir, (bundle) => runUpload(bundle, opts, out())),
  );
}

async function runUpload(bundle: BundleContents, flags: UploadFlags, out: Output): Promise<void> {
  await checkSignature(bundle, flags.publicKey, out);
  const { registryAccess } = await import("../registries.js");
  const { resolveEndpoint } = await import("../../registry/endpoint.js");
  const host = flags.registry ? resolveEndpoint(flags.registry).host : undefined;
  const access = flags.registry ? await registryAccess(flags, [flags.registry], retryLogger(out)) : undefined;
  const fileserver = await fileServer(flags);
  const { upload } = await import("../../stages/upload.js");
  const result = await upload({
    bundle,
    ...(host ? { registryHost: host } : {}),
    ...(access && flags.registry ? { target: access.store(flags.registry) } : {}),
    ...(fileserver && flags.fileserver ? { fileserver, fileserverUrl: flags.fileserver } : {}),
    fileserverToken: flags.tokenFile !== undefined,
    valueOptions: { set: flags.set ?? [], valuesFiles: flags.values ?? [] },
    continueOnError: flags.continueOnError ?? false,
    out,
  }).finally(() => fileserver?.close());
  const { imageTable } = await import("../../stages/transfer.js");
  const { lock } = bundle;
  const files = result.files;
  out.result(
    {
      ok: true,
      name: lock.name,
      bytesMoved: result.bytesMoved,
      images: result.images,
      charts: result.charts,
      files,
    },
    () => [
      ...(lock.images.length
        ? table(["IMAGE", "PLATFORMS", "SIZE", "MIRROR"], imageTable(lock.images, host))
        : []),
      ...result.charts.map((c) => `chart ${c.name} → ${c.mirror} (${c.digest})`),
      ...(files.sent.length + files.skipped.length
        ? [
            `files: ${files.sent.length} sent, ${files.skipped.length} already on ${flags.fileserver}/${lock.name}/`,
          ]
        : []),
      `bundle "${lock.name}" uploaded (${formatBytes(result.bytesMoved)} sent)`,
    ],
  );
}
