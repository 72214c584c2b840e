/** The overrides deploy generates from the chart and the lock: every carried image to its mirror. */
import test from "ava";
import path from "node:path";
import { parse } from "yaml";
import { generatedOverrides } from "../src/stages/deploy.js";
import type { Lock, LockImage } from "../src/bundle/lock.js";
import { REPO } from "./helpers/cli.js";

const chart = path.join(REPO, "test/fixtures/chart-openwhisk-like");

function image(ref: string, mirror: string): LockImage {
  return {
    ref,
    source: "registry",
    digest: `sha256:${"a".repeat(64)}`,
    mediaType: "application/vnd.oci.image.index.v1+json",
    size: 1,
    platforms: [],
    missingPlatforms: [],
    mirror,
    mirrorDigest: `sha256:${"a".repeat(64)}`,
    blobs: [],
    bytes: 0,
  };
}

test("carried images point at the site registry's mirror names; others stay as the chart has them", async (t) => {
  const lock = {
    images: [
      image("docker.io/openwhisk/controller:ef725a6", "teleinfra/controller:ef725a6"),
      image("docker.io/library/zookeeper:3.4", "teleinfra/zookeeper:3.4"),
    ],
  } as unknown as Lock;
  const o = await generatedOverrides(chart, lock, "10.0.0.5:5000");
  const values = parse(o.yaml) as Record<string, { imageName?: string; imageTag?: string }>;
  t.deepEqual(values.controller, { imageName: "10.0.0.5:5000/teleinfra/controller", imageTag: "ef725a6" });
  t.deepEqual(values.zookeeper, { imageName: "10.0.0.5:5000/teleinfra/zookeeper", imageTag: "3.4" });
  t.is(values.invoker, undefined, "an image the bundle does not carry is left alone");
});
