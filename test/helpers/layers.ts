import { createCipheriv, createHash, type Hash } from "node:crypto";
import { createWriteStream } from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { constants as zlibConstants, createGzip, gzipSync } from "node:zlib";

/**
 * Deterministic image layers: the bytes depend only on the seed (and size), so the same seed
 * always gives the same digest and tests can predict and share blobs.
 */
export interface LayerBase {
  /** "sha256:..." of the compressed bytes, i.e. the blob digest. */
  digest: string;
  /** Size of the compressed bytes. */
  size: number;
  /** "sha256:..." of the uncompressed tar, as listed in the config's rootfs.diff_ids. */
  diffId: string;
}

/** A layer either held in memory (small) or written to a file (large, for benchmarks). */
export type Layer = LayerBase & ({ bytes: Buffer } | { file: string });

/** 2024-01-01T00:00:00Z: every tar entry gets this mtime, so tar bytes do not depend on the clock. */
export const FIXED_MTIME = 1_704_067_200;

const SMALL_PAYLOAD_BYTES = 4_096;
const CHUNK_BYTES = 1 << 20;

export function sha256Digest(data: Buffer | string): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

/** A short, path-safe name for a seed (seeds may contain "/" or "@"). */
export function seedId(seed: string): string {
  return createHash("sha256").update(seed).digest("hex").slice(0, 12);
}

/** A small gzipped tar: a folder with the seed as text and a few KB of seeded random bytes. */
export function makeLayer(seed: string): Layer {
  const dir = `data/${seedId(seed)}`;
  const text = Buffer.from(`layer seed: ${seed}\n`);
  const payload = seededBytes(seed).next(SMALL_PAYLOAD_BYTES);
  const tar = Buffer.concat([
    tarHeader(`data/`, 0, "5", 0o755),
    tarHeader(`${dir}/`, 0, "5", 0o755),
    ...tarFile(`${dir}/seed.txt`, text),
    ...tarFile(`${dir}/payload.bin`, payload),
    TAR_END,
  ]);
  // Node's gzip writes mtime 0 and a fixed OS byte in the header, so this is deterministic.
  const bytes = gzipSync(tar, { level: 6 });
  return { digest: sha256Digest(bytes), size: bytes.length, diffId: sha256Digest(tar), bytes };
}

/**
 * A large layer of incompressible seeded data, streamed to `dir` while both digests are
 * computed, so a 300 MB layer never sits in memory.
 */
export async function makeLargeLayer(seed: string, sizeBytes: number, dir: string): Promise<Layer> {
  const file = path.join(dir, `${seedId(seed)}-${sizeBytes}.tar.gz`);
  const tarHash = createHash("sha256");
  const gzHash = createHash("sha256");
  let size = 0;
  await pipeline(
    largeTar(seed, sizeBytes, tarHash),
    // Random data does not compress: stored deflate blocks are what zlib would end up with
    // anyway, at a third of the time of level 1 (2.4 s instead of 7 s for 300 MB).
    createGzip({ level: zlibConstants.Z_NO_COMPRESSION }),
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        gzHash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(file),
  );
  return { digest: "sha256:" + gzHash.digest("hex"), size, diffId: "sha256:" + tarHash.digest("hex"), file };
}

async function* largeTar(seed: string, sizeBytes: number, tarHash: Hash): AsyncGenerator<Buffer> {
  const emit = (chunk: Buffer): Buffer => (tarHash.update(chunk), chunk);
  yield emit(tarHeader("data/", 0, "5", 0o755));
  yield emit(tarHeader(`data/${seedId(seed)}.bin`, sizeBytes, "0", 0o644));
  const random = seededBytes(`large:${seed}`);
  for (let left = sizeBytes; left > 0; left -= CHUNK_BYTES) {
    yield emit(random.next(Math.min(CHUNK_BYTES, left)));
  }
  yield emit(tarPadding(sizeBytes));
  yield emit(TAR_END);
}

/** AES-256-CTR keystream keyed by the seed: fast, incompressible and reproducible. */
function seededBytes(seed: string): { next(length: number): Buffer } {
  const key = createHash("sha256").update(seed).digest();
  const cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  return { next: (length) => cipher.update(Buffer.alloc(length)) };
}

// --- a minimal ustar writer: enough for regular files and folders -------------------------

const TAR_END = Buffer.alloc(1024);

function tarFile(name: string, content: Buffer): Buffer[] {
  return [tarHeader(name, content.length, "0", 0o644), content, tarPadding(content.length)];
}

function tarPadding(size: number): Buffer {
  return Buffer.alloc((512 - (size % 512)) % 512);
}

function tarHeader(name: string, size: number, type: "0" | "5", mode: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, "utf8");
  writeOctal(header, mode, 100, 8);
  writeOctal(header, 0, 108, 8); // uid
  writeOctal(header, 0, 116, 8); // gid
  writeOctal(header, size, 124, 12);
  writeOctal(header, FIXED_MTIME, 136, 12);
  header.write(type, 156, 1, "latin1");
  header.write("ustar\u000000", 257, 8, "latin1");
  header.write("root", 265, 32, "latin1");
  header.write("root", 297, 32, "latin1");
  // The checksum is computed with its own field read as eight spaces.
  header.fill(" ", 148, 156);
  const sum = header.reduce((total, byte) => total + byte, 0);
  header.write(sum.toString(8).padStart(6, "0") + "\u0000 ", 148, 8, "latin1");
  return header;
}

function writeOctal(header: Buffer, value: number, offset: number, length: number): void {
  header.write(value.toString(8).padStart(length - 1, "0") + "\u0000", offset, length, "latin1");
}
