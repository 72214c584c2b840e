/**
 * The real helm (3.17.3, installed by scripts/install-deps.sh into .tools/bin) and the one
 * stand-in the tests allow: a cluster. `helm upgrade --install` cannot reach one here, so the
 * wrapper runs the real `helm template` with the arguments `upgrade --install` received and
 * keeps what it rendered; every other helm command goes to the real helm unchanged. With
 * CLUSTER_FAIL set in its environment, an install fails with that message and exit 3, as helm
 * does when the cluster times out.
 */
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { REPO } from "./cli.js";

export const HELM = path.join(REPO, ".tools/bin/helm");

if (!existsSync(HELM)) throw new Error(`${HELM} is missing: run scripts/install-deps.sh`);

export interface Install {
  args: string[];
  rendered: string;
}

export interface ClusterStandIn {
  /** Give this as --helm. */
  helm: string;
  /** Each `helm upgrade --install` so far, in order. */
  installs(): Promise<Install[]>;
}

export async function clusterStandIn(dir: string): Promise<ClusterStandIn> {
  const record = path.join(dir, "installs");
  await mkdir(record, { recursive: true });
  const helm = path.join(dir, "helm");
  await writeFile(
    helm,
    [
      "#!/bin/sh",
      "# A cluster stand-in: helm upgrade --install renders with the real helm template.",
      'if [ "$1" = upgrade ] && [ "$2" = --install ]; then',
      "  shift 2",
      `  n=$(ls "${record}" | wc -l); call="${record}/$(printf %03d "$n")"; mkdir -p "$call"`,
      `  printf '%s\\n' "$@" > "$call/args"`,
      '  if [ -n "$CLUSTER_FAIL" ]; then : > "$call/rendered.yaml"; echo "$CLUSTER_FAIL" >&2; exit 3; fi',
      `  exec "${HELM}" template "$@" > "$call/rendered.yaml"`,
      "fi",
      `exec "${HELM}" "$@"`,
      "",
    ].join("\n"),
  );
  await chmod(helm, 0o755);
  return {
    helm,
    installs: async () =>
      Promise.all(
        (await readdir(record)).sort().map(async (call) => ({
          args: (await readFile(path.join(record, call, "args"), "utf8")).trimEnd().split("\n"),
          rendered: await readFile(path.join(record, call, "rendered.yaml"), "utf8"),
        })),
      ),
  };
}

/**
 * Every container image of rendered objects, read off the `image:` lines (not through a YAML
 * parser: an independent reading of what deploy's proof parses, and one that takes the chart
 * lines a strict YAML parser refuses).
 */
export function renderedImages(rendered: string): string[] {
  return [...rendered.matchAll(/^\s*(?:-\s+)?image:\s*"?([^"\s]+)"?\s*$/gm)].map((m) => m[1] ?? "");
}

/** The runtime images a rendered RUNTIMES_MANIFEST env names, as `prefix/name:tag` with the runtimes registry. */
export function renderedRuntimeImages(rendered: string): string[] {
  const out = new Set<string>();
  for (const m of rendered.matchAll(
    /name: RUNTIMES_MANIFEST\n\s+value: (".*")\n\s+- name: CONFIG_whisk_containerFactory_runtimesRegistry_url\n\s+value: "(.*)"/g,
  )) {
    const manifest = JSON.parse(JSON.parse(m[1] ?? '""') as string) as {
      runtimes: Record<string, { image: { registry?: string; prefix: string; name: string; tag: string } }[]>;
      blackboxes?: { registry?: string; prefix: string; name: string; tag: string }[];
    };
    const images = [
      ...Object.values(manifest.runtimes)
        .flat()
        .map((k) => k.image),
      ...(manifest.blackboxes ?? []),
    ];
    for (const i of images) {
      const registry = (i.registry || m[2] || "").replace(/\/+$/, "");
      out.add(`${registry ? `${registry}/` : ""}${i.prefix}/${i.name}:${i.tag}`);
    }
  }
  return [...out];
}
