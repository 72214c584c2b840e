/**
 * The sha256 of every served file, kept in a sidecar folder under root (META_DIR) that is
 * never served. An upload records the digest it verified; a file placed by other means is
 * hashed once, on first need, and recorded. Each record carries the inode, size and mtime it
 * was taken from: a file changed or replaced since no longer matches its record and is hashed
 * again, so a stale record can never name the wrong bytes.
 */
import { createHash } from "node:crypto";
import { createReadStream, type Stats } from "node:fs";
import { mkdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { writeAtomic } from "../util/cas.js";
import { META_DIR } from "./paths.js";

interface DigestRecord {
  path: string;
  ino: number;
  size: number;
  mtimeMs: number;
  sha256: string;
}

/** The fields that tell one version of a file from another (rename keeps all three). */
export type FileVersion = Pick<Stats, "ino" | "size" | "mtimeMs">;

export function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

/** A file that kept changing while it was hashed (being copied in, say): try again later. */
export class FileChanging extends Error {
  override name = "FileChanging";
}

export class DigestStore {
  private readonly dir: string;
  /** One hashing job per file at a time, however many requests ask. */
  private readonly hashing = new Map<string, Promise<string>>();

  constructor(root: string) {
    this.dir = path.join(root, META_DIR);
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Records what an upload verified; `version` is the stat of the bytes that were checked. */
  async record(rel: string, version: FileVersion, sha256: string): Promise<void> {
    const rec: DigestRecord = {
      path: rel,
      ino: version.ino,
      size: version.size,
      mtimeMs: version.mtimeMs,
      sha256,
    };
    await writeAtomic(this.recordFile(rel), JSON.stringify(rec));
  }

  /** The recorded digest, when the record was taken from exactly this version of the file. */
  async lookup(rel: string, version: FileVersion): Promise<string | undefined> {
    const text = await readFile(this.recordFile(rel), "utf8").catch(() => undefined);
    if (text === undefined) return undefined;
    try {
      const rec = JSON.parse(text) as DigestRecord;
      return rec.path === rel && sameVersion(rec, version) ? rec.sha256 : undefined;
    } catch {
      return undefined; // a damaged record is as good as none: the file is hashed again
    }
  }

  /** The digest of `file` (real path; `rel` its path under root) as `version` has it. */
  async digestOf(rel: string, file: string, version: FileVersion): Promise<string> {
    const known = await this.lookup(rel, version);
    if (known !== undefined) return known;
    const key = `${rel}\0${version.ino}:${version.size}:${version.mtimeMs}`;
    let job = this.hashing.get(key);
    if (!job) {
      job = this.hashAndRecord(rel, file, version).finally(() => this.hashing.delete(key));
      this.hashing.set(key, job);
    }
    return job;
  }

  private async hashAndRecord(rel: string, file: string, version: FileVersion): Promise<string> {
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
    const sha256 = hash.digest("hex");
    // Only a file that stayed the same version from start to end has this digest.
    if (!sameVersion(version, await stat(file))) throw new FileChanging(`${rel} changed while it was hashed`);
    await this.record(rel, version, sha256);
    return sha256;
  }

  /** Record files are named by the hash of the path: flat, and safe for any file name. */
  private recordFile(rel: string): string {
    return path.join(this.dir, `${createHash("sha256").update(rel).digest("hex")}.json`);
  }
}
