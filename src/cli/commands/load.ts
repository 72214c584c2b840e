/**
 * `bundle load`: its flags and help, and the handler that loads a bundle's images for this
 * machine's platform into the Docker daemon, for single hosts without a registry.
 */
import type { Command } from "commander";
import { InputError } from "../../util/errors.js";
import { table } from "../../util/format.js";
import type { Output } from "../output.js";
import { collect, docker, example, type LazyOutput } from "../shared.js";

interface LoadFlags {
  docker?: boolean;
  image?: string[];
  tagAs: string;
  registry?: string;
}

export function define(program: Command, out: LazyOutput): void {
  const load = program
    .command("load")
    .description(
      "single hosts without a registry: load a bundle's images for this machine's platform into the Docker daemon",
    )
    .argument("<DIR>", "a prepared bundle (folder or archive)")
    .option("--docker", "load into the Docker daemon (DOCKER_HOST, else /var/run/docker.sock)")
    .option("--image <REF>", "load only this image (repeatable), e.g. redis:4.0", collect)
    .option(
      "--tag-as <NAMING>",
      "tag images with their source reference (source) or their mirror name (mirror)",
      "source",
    )
    .option(
      "--registry <REG>",
      "with --tag-as mirror: the registry host the charts name, put in front of the mirror name",
    );
  example(
    load,
    "bundle load ./bundle-out/openwhisk --docker",
    "bundle load ./bundle-out/openwhisk --docker --tag-as mirror --registry 10.0.0.5:5000",
  );
  load.action((dir: string, opts: LoadFlags) => runLoad(dir, opts, out()));
}

async function runLoad(dir: string, flags: LoadFlags, out: Output): Promise<void> {
  if (!flags.docker)
    throw new InputError("bundle load needs --docker (the only place it loads into for now)");
  if (flags.tagAs !== "source" && flags.tagAs !== "mirror") {
    throw new InputError(`--tag-as ${flags.tagAs}: expected source or mirror`);
  }
  const { loadIntoDocker } = await import("../../stages/load.js");
  const { resolveEndpoint } = await import("../../registry/endpoint.js");
  const result = await loadIntoDocker(dir, {
    docker: (await docker()).client,
    tagAs: flags.tagAs,
    ...(flags.image?.length ? { images: flags.image } : {}),
    ...(flags.registry ? { registry: resolveEndpoint(flags.registry).host } : {}),
  });
  out.result({ ok: true, ...result }, () => [
    ...table(
      ["IMAGE", "TAG", "IMAGE ID", "DONE"],
      result.images.map((i) => [i.ref, i.tag ?? "(untagged)", i.imageId.slice(0, 19), i.action]),
    ),
    `${result.images.length} images for ${result.platform} are in the Docker daemon`,
  ]);
}
