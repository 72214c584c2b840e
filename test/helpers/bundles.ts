/** Small pieces several bundle tests share: the standard images as a definition, file hashing. */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { ExecutionContext } from "ava";
import { seedStandardImages, type StandardImages } from "./images.js";
import { startRegistry } from "./registry.js";
import { tempFiles } from "./cli.js";
import type { Lock } from "../../src/bundle/lock.js";

/** The four standard images as a native definition's `images:` list (single-arch ones allowed so). */
export function standardImageLines(images: StandardImages): string[] {
  return [
    "images:",
    `  - ${images.ociIndex.ref}`,
    `  - ${images.dockerList.ref}`,
    `  - ref: ${images.singleOci.ref}`,
    "    platforms: [linux/amd64]",
    `  - ref: ${images.singleDocker.ref}`,
    "    allowMissingPlatforms: true",
  ];
}

/**
 * A source registry holding the standard images and a folder `demo` with a definition of them,
 * both gone when the test ends; `out` is where a test prepares the bundle.
 */
export async function standardBed(
  t: ExecutionContext,
): Promise<{ images: StandardImages; dir: string; out: string }> {
  const source = await startRegistry();
  t.teardown(() => source.stop());
  const images = await seedStandardImages(source);
  const { dir, cleanup } = await tempFiles(
    { "bundle.yml": ["name: demo", ...standardImageLines(images)].join("\n") },
    "demo",
  );
  t.teardown(cleanup);
  return { images, dir, out: path.join(dir, "out") };
}

/** The sha256 of a file in hex, streamed: the independent check of what a bundle wrote. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Flips every bit of the byte at `offset` of `file`, in place: damage a digest must catch. */
export async function flipByte(file: string, offset: number): Promise<void> {
  const fh = await open(file, "r+");
  try {
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, offset);
    one[0] = (one[0] ?? 0) ^ 0xff;
    await fh.write(one, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

/** A whole lock that carries nothing; `fields` fill in what a test needs. */
export function emptyLock(fields: Partial<Lock> = {}): Lock {
  return {
    lockVersion: 1,
    name: "demo",
    tool: { name: "bundle", version: "0.1.0" },
    platforms: ["linux/amd64"],
    images: [],
    git: [],
    files: [],
    charts: [],
    releases: [],
    templates: [],
    values: "templates/values.json",
    siteValues: [],
    ...fields,
  };
}

/** Every file under `dir` with its bytes and mode, to compare before and after. */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const abs = path.join(dir, r);
      if (e.isDirectory()) await walk(r);
      else
        out[r] = `${(await stat(abs)).mode.toString(8)} ${createHash("sha256")
          .update(await readFile(abs))
          .digest("hex")}`;
    }
  };
  await walk("");
  return out;
}
