/**
 * The bare floors the bench holds bundle against: the least a Node program has to do for the
 * same copy, and nothing else (no auth, retries, resume, progress, lock, hostile-input limits).
 *
 *   node dist/bench/floors.js prepare SOURCE_URL OUT REF...   every manifest and blob GET over
 *       keep-alive HTTP, sha256 as the bytes are written to a temp file, rename; a plan.json
 *       says which blobs and manifests belong to which image.
 *   node dist/bench/floors.js upload OUT TARGET_URL           per image, each blob as POST +
 *       monolithic PUT (a mount when another repository already received it), then the
 *       manifests, children before the tag.
 *
 * Blobs go 8 at a time and images 4 at a time, as bundle's defaults (src/stages/transfer.ts), so
 * the ratio measures the tool's overhead, not a different concurrency. Run as its own process so
 * GNU time gives its peak memory as for the tools.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import http, { type IncomingMessage } from "node:http";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import pLimit from "p-limit";
import { fullPathMirrorName } from "./verify.js";

const ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

interface Descriptor {
  digest: string;
  mediaType: string;
  size: number;
}

/** What prepare fetched for one image, for upload to push again. */
interface PlannedImage {
  repo: string;
  tag: string;
  mirror: string;
  /** Children first, the top manifest last. */
  manifests: Descriptor[];
  blobs: Descriptor[];
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const blobLimit = pLimit(8);
const imageLimit = pLimit(4);

function send(
  method: string,
  url: string,
  headers: Record<string, string | number> = {},
  body?: Buffer | NodeJS.ReadableStream,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, resolve);
    req.on("error", reject);
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else body.pipe(req);
  });
}

async function expect(res: IncomingMessage, status: number, what: string): Promise<IncomingMessage> {
  if (res.statusCode === status) return res;
  res.resume();
  throw new Error(`${what}: HTTP ${res.statusCode}`);
}

async function readAll(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const blobFile = (out: string, digest: string) => path.join(out, "blobs", digest.replace(":", "/"));

/** GET → sha256 while writing a temp file → check → rename. */
async function fetchTo(url: string, headers: Record<string, string>, out: string, digest: string) {
  const res = await expect(await send("GET", url, headers), 200, `GET ${url}`);
  const file = blobFile(out, digest);
  const temp = `${file}.${process.pid}.tmp`;
  const hash = createHash("sha256");
  res.on("data", (chunk: Buffer) => hash.update(chunk));
  await pipeline(res, createWriteStream(temp, { flags: "wx" }));
  if (`sha256:${hash.digest("hex")}` !== digest) throw new Error(`${url}: digest mismatch`);
  await rename(temp, file);
}

async function manifest(source: string, repo: string, ref: string, out: string): Promise<Descriptor> {
  const url = `${source}/v2/${repo}/manifests/${ref}`;
  const res = await expect(await send("GET", url, { accept: ACCEPT }), 200, `GET ${url}`);
  const bytes = await readAll(res);
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  await writeFile(blobFile(out, digest), bytes);
  return { digest, mediaType: String(res.headers["content-type"]), size: bytes.length };
}

async function prepareImage(source: string, ref: string, out: string, seen: Set<string>) {
  const [, repo = "", tag = ""] = /^[^/]+\/(.+):([^:/]+)$/.exec(ref) ?? [];
  const top = await manifest(source, repo, tag, out);
  const parsed = JSON.parse(await readFile(blobFile(out, top.digest), "utf8")) as {
    manifests?: Descriptor[];
  };
  const children = await Promise.all(
    (parsed.manifests ?? []).map((m) => manifest(source, repo, m.digest, out)),
  );
  const blobs: Descriptor[] = [];
  for (const child of children.length ? children : [top]) {
    const m = JSON.parse(await readFile(blobFile(out, child.digest), "utf8")) as {
      config: Descriptor;
      layers: Descriptor[];
    };
    blobs.push(m.config, ...m.layers);
  }
  await Promise.all(
    blobs.map((b) => {
      if (seen.has(b.digest)) return undefined;
      seen.add(b.digest);
      return blobLimit(() => fetchTo(`${source}/v2/${repo}/blobs/${b.digest}`, {}, out, b.digest));
    }),
  );
  const mirror = fullPathMirrorName(ref).replace(/:[^:/]+$/, "");
  return { repo, tag, mirror, manifests: [...children, top], blobs };
}

async function prepare(source: string, out: string, refs: string[]): Promise<void> {
  await mkdir(path.join(out, "blobs", "sha256"), { recursive: true });
  const seen = new Set<string>();
  const plan = await Promise.all(refs.map((ref) => imageLimit(() => prepareImage(source, ref, out, seen))));
  await writeFile(path.join(out, "plan.json"), JSON.stringify(plan));
}

/** The repository each blob was first pushed to, once the push is done: later ones mount it. */
const pushed = new Map<string, Promise<string>>();

async function pushBlob(target: string, out: string, repo: string, digest: string): Promise<void> {
  const first = pushed.get(digest);
  if (first) {
    const from = await first;
    const url = `${target}/v2/${repo}/blobs/uploads/?mount=${digest}&from=${from}`;
    (await expect(await send("POST", url), 201, `POST ${url}`)).resume();
    return;
  }
  const done = (async () => {
    const post = await expect(await send("POST", `${target}/v2/${repo}/blobs/uploads/`), 202, "POST");
    post.resume();
    const location = new URL(String(post.headers.location), target);
    location.searchParams.set("digest", digest);
    const file = blobFile(out, digest);
    const headers = { "content-type": "application/octet-stream", "content-length": (await stat(file)).size };
    const put = await send("PUT", location.toString(), headers, createReadStream(file));
    (await expect(put, 201, `PUT ${location}`)).resume();
    return repo;
  })();
  pushed.set(digest, done);
  await done;
}

async function uploadImage(target: string, out: string, image: PlannedImage): Promise<void> {
  await Promise.all(image.blobs.map((b) => blobLimit(() => pushBlob(target, out, image.mirror, b.digest))));
  for (const [i, m] of image.manifests.entries()) {
    const ref = i === image.manifests.length - 1 ? image.tag : m.digest;
    const url = `${target}/v2/${image.mirror}/manifests/${ref}`;
    const res = await send(
      "PUT",
      url,
      { "content-type": m.mediaType },
      await readFile(blobFile(out, m.digest)),
    );
    (await expect(res, 201, `PUT ${url}`)).resume();
  }
}

async function upload(out: string, target: string): Promise<void> {
  const plan = JSON.parse(await readFile(path.join(out, "plan.json"), "utf8")) as PlannedImage[];
  await Promise.all(plan.map((image) => imageLimit(() => uploadImage(target, out, image))));
}

const [command, a = "", b = "", ...rest] = process.argv.slice(2);
const work = command === "prepare" ? prepare(a, b, rest) : command === "upload" ? upload(a, b) : undefined;
if (!work) {
  console.error("usage: floors.js prepare SOURCE_URL OUT REF... | floors.js upload OUT TARGET_URL");
  process.exit(2);
}
work.then(
  () => agent.destroy(),
  (err: unknown) => {
    console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
