/**
 * The offline site a carried tool uploads to (test/standalone.test.ts, test/exe.test.ts): a file
 * server taking the token `tok`, and skopeo's word that the site's registry holds an image with
 * the source's digests.
 */
import type { ExecutionContext } from "ava";
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { startFileServer } from "../../src/fileserver/server.js";
import type { PushedImage } from "./images.js";
import { skopeoInspectRaw } from "./skopeo.js";

/** A file server under `root`/served; writes `tokenFile` with its token. Closed at teardown. */
export async function siteFileServer(t: ExecutionContext, root: string, tokenFile: string) {
  await writeFile(tokenFile, "tok\n");
  const server = await startFileServer({
    root: path.join(root, "served"),
    host: "127.0.0.1",
    port: 0,
    token: "tok",
    log: () => undefined,
  });
  t.teardown(() => server.close());
  return server;
}

/** The site's `repo:tag` holds `image`'s top manifest and each platform's, byte for byte. */
export async function assertSiteHolds(
  t: ExecutionContext,
  siteHost: string,
  repoTag: string,
  image: PushedImage,
): Promise<void> {
  const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
  const pushed = await skopeoInspectRaw(`${siteHost}/${repoTag}`);
  t.is(sha(pushed), image.digest, "the site holds the source's index digest");
  t.deepEqual(pushed, image.manifestBytes);
  const repo = repoTag.replace(/:[^:/]+$/, "");
  for (const p of image.platforms) {
    t.is(sha(await skopeoInspectRaw(`${siteHost}/${repo}@${p.digest}`)), p.digest, p.platform);
  }
}
