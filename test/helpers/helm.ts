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
import { parseAllDocuments } from "yaml";
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

/** Every container image of rendered objects: containers, init and ephemeral containers. */
export function renderedImages(rendered: string): string[] {
  const out: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node === null || typeof node !== "object") return;
    for (const [key, value] of Object.entries(node)) {
      if (/^(containers|initContainers|ephemeralContainers)$/.test(key) && Array.isArray(value)) {
        for (const c of value as { image?: unknown }[]) if (typeof c.image === "string") out.push(c.image);
      } else walk(value);
    }
  };
  for (const doc of parseAllDocuments(rendered)) walk(doc.toJS());
  return out;
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
