/**
 * A prepared bundle as one file (SPEC.md "The prepared bundle"): an uncompressed tar (the blobs
 * are compressed already) whose first member, `bundle-index.json`, lists every other member with
 * its size, its sha256 when the lock or the blob's name gives it, and the byte offset of its data
 * inside the tar. A reader lists the archive and seeks to any member without reading the rest;
 * any tar tool still extracts it. Optionally split into parts (`FILE.000`, `FILE.001`, …) for
 * media with a file-size limit; the reader joins them transparently.
 *
 * The tar layout is computed before anything is written (a header is one 512-byte block, plus a
 * PAX extension for a long path), so the index can give offsets; then every file is streamed
 * into `FILE.partial` (or `FILE.NNN.partial`) and renamed when whole.
 */
import { createHash } from "node:crypto";
import { createReadStream, type Stats } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { Header, Pax } from "tar";
import { LOCK_FILE, lockedFiles, parseLock, readLock, type Lock, type LockedBytes } from "./lock.js";
import { InputError, WorkError } from "../util/errors.js";
import { readAll } from "../util/streams.js";
import { writeChunk } from "../util/cas.js";

export const ARCHIVE_INDEX = "bundle-index.json";
export const ARCHIVE_FORMAT = "bundle-archive";
export const ARCHIVE_VERSION = 1;
const BLOCK = 512;
/**
 * Pack reads each file into one buffer it reuses and writes each piece at once (util/cas.ts
 * `writeChunk`): no piece is allocated, so none waits for a collection. With a read stream's
 * fresh 64 KiB pieces batched into 256 KiB writes through the threadpool, packing 315 MB took
 * 0.85 s and peaked at 83 MB (with 1 MiB pieces and 4 MiB batches, 1.6 s and 139 MB).
 */
const PACK_PIECE = 256 << 10;
/**
 * Member reads in 256 KiB pieces: upload streams up to 8 blobs at once out of the archive, each
 * through a hash and an HTTP body; with 1 MiB pieces held at each stage the benchmark's upload
 * from an archive peaked at 156 MB, with 256 KiB at 127 MB (same speed).
 */
const READ_BUFFER = 256 << 10;

export interface Member {
  /** Bundle path with `/` separators, e.g. `images/blobs/sha256/<hex>`, `files/app.tar.gz`. */
  path: string;
  size: number;
  /** Byte offset of the member's data in the whole (joined) archive. */
  offset: number;
  mode: number;
  /** Hex sha256 when known: from the blob's name or the lock. */
  sha256?: string;
}

export interface ArchiveIndex {
  format: typeof ARCHIVE_FORMAT;
  version: typeof ARCHIVE_VERSION;
  /** Every member after the index itself, in tar order (the lock first). */
  members: Member[];
  /** Bytes of the whole archive, end-of-archive blocks included. */
  totalBytes: number;
}

export interface ReadOptions {
  start?: number;
  /**
   * Last byte to read (inclusive), for a range read; part of a member cannot be checked against
   * its sha256, so a read with `end` is never checked.
   */
  end?: number;
  check?: boolean;
}

export interface BundleArchive {
  /** The archive as named (`FILE`, even when it is split into `FILE.000`, …). */
  readonly file: string;
  readonly index: Member[];
  readonly lock: Lock;
  /**
   * A member's bytes, streamed from its offset (across split parts). When its sha256 is known the
   * stream fails at the end, naming the member, if the bytes do not match. `start` skips bytes
   * (they are still hashed, so the check holds). `check: false` leaves the hashing to a caller
   * that hashes the bytes itself (verify), so they are not hashed twice.
   */
  read(memberPath: string, opts?: ReadOptions): Readable;
  has(memberPath: string): boolean;
  member(memberPath: string): Member | undefined;
  close(): Promise<void>;
}

/** Whether `file` begins as a bundle archive does: the tar header of `bundle-index.json`. */
export async function startsAsArchive(file: string): Promise<boolean> {
  const fh = await open(file, "r").catch(() => undefined);
  if (!fh) return false;
  try {
    const head = Buffer.alloc(ARCHIVE_INDEX.length + 1);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return bytesRead === head.length && head.equals(Buffer.from(`${ARCHIVE_INDEX}\0`));
  } finally {
    await fh.close();
  }
}

/** Whether `file` names a bundle archive (whole or split) rather than a bundle folder. */
export async function isArchive(file: string): Promise<boolean> {
  const s = await stat(file).catch(() => undefined);
  if (s?.isFile()) return true;
  if (s) return false;
  return (await stat(`${file}.000`).catch(() => undefined))?.isFile() ?? false;
}

// ---------------------------------------------------------------------------------------------
// Writing

interface Planned {
  member: Member;
  abs: string;
  header: Buffer;
  mtime: number;
}

/** Top-level names never packed: work folders and files of the stages. */
const SKIP_TOP = new Set(["deploy", ".docker-export", ARCHIVE_INDEX]);

function skipped(rel: string): boolean {
  const parts = rel.split("/");
  if (SKIP_TOP.has(parts[0] ?? "")) return true;
  return parts.some((p) => p === ".partial" || p.endsWith(".partial") || p.includes(".tmp-"));
}

async function walk(dir: string, rel: string, out: { rel: string; abs: string; stats: Stats }[]) {
  const entries = await readdir(path.join(dir, rel), { withFileTypes: true });
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (skipped(r)) continue;
    const abs = path.join(dir, r);
    if (e.isDirectory()) await walk(dir, r, out);
    else if (e.isFile()) out.push({ rel: r, abs, stats: await stat(abs) });
    else throw new WorkError(`${abs}: only regular files and folders can be packed`);
  }
}

/** Order: lock, images/oci-layout, images/index.json, blobs, then files/, charts/, templates/, the rest. */
function rank(rel: string): number {
  if (rel === LOCK_FILE) return 0;
  if (rel === "images/oci-layout") return 1;
  if (rel === "images/index.json") return 2;
  if (rel.startsWith("images/")) return 3;
  if (rel.startsWith("files/")) return 4;
  if (rel.startsWith("charts/")) return 5;
  if (rel.startsWith("templates/")) return 6;
  return 7;
}

/** Header block(s) of one member: a PAX extension first when the path does not fit ustar. */
function headerFor(p: string, size: number, mode: number, mtime: number): Buffer {
  const data = { path: p, size, mode, mtime: new Date(mtime * 1000), type: "File" as const, uid: 0, gid: 0 };
  const h = new Header(data);
  h.encode();
  if (!h.block) throw new WorkError(`cannot encode a tar header for ${p}`);
  if (!h.needPax) return h.block;
  const pax = new Pax({ path: p, size, mtime: new Date(mtime * 1000) }).encode();
  return Buffer.concat([pax, h.block]);
}

const padding = (n: number) => (BLOCK - (n % BLOCK)) % BLOCK;

function sha256Of(rel: string, known: Map<string, LockedBytes>): string | undefined {
  const m = /^images\/blobs\/sha256\/([0-9a-f]{64})$/.exec(rel);
  return m?.[1] ?? known.get(rel)?.sha256;
}

/**
 * Writes the bundle folder `dir` as one tar `file` (or parts `file.000`, … of at most
 * `splitBytes` each). Streamed: memory stays flat, and nothing but the archive is written.
 */
export async function packBundle(
  dir: string,
  file: string,
  opts: { splitBytes?: number } = {},
): Promise<{ files: string[]; bytes: number }> {
  const lock = await readLock(dir);
  const split = opts.splitBytes;
  if (split !== undefined && (!Number.isInteger(split) || split < BLOCK))
    throw new InputError(`split size must be a whole number of at least ${BLOCK} bytes`);
  const planned = await planMembers(dir, file, lockedFiles(lock));
  const { indexBytes, total } = layOutIndex(planned);
  // The index takes the lock's mtime, not the clock's: packing the same bundle twice gives the same bytes.
  const now = planned.find((p) => p.member.path === LOCK_FILE)?.mtime ?? 0;
  const indexHeader = headerFor(ARCHIVE_INDEX, indexBytes.length, 0o644, now);
  if (indexHeader.length !== BLOCK) throw new WorkError("archive index header is not one block");

  const sink = new PartSink(file, split);
  try {
    await sink.write(indexHeader);
    await sink.write(indexBytes);
    await sink.write(Buffer.alloc(padding(indexBytes.length)));
    const piece = Buffer.allocUnsafe(PACK_PIECE);
    for (const p of planned) await writeMember(sink, p, piece);
    await sink.write(Buffer.alloc(2 * BLOCK));
    if (sink.bytes !== total)
      throw new WorkError(`archive layout error: wrote ${sink.bytes}, planned ${total}`);
    const files = await sink.finish();
    return { files, bytes: total };
  } catch (err) {
    await sink.abort();
    throw err;
  }
}

/** Every file of the bundle but the archive itself, in archive order, with its header and member entry. */
async function planMembers(dir: string, file: string, known: Map<string, LockedBytes>): Promise<Planned[]> {
  const found: { rel: string; abs: string; stats: Stats }[] = [];
  await walk(dir, "", found);
  const outAbs = path.resolve(file);
  const entries = found
    .filter((f) => !path.resolve(f.abs).startsWith(outAbs))
    .sort((a, b) => rank(a.rel) - rank(b.rel) || (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return entries.map((e) => {
    const mode = e.stats.mode & 0o777;
    const mtime = Math.floor(e.stats.mtimeMs / 1000);
    const sha256 = sha256Of(e.rel, known);
    return {
      abs: e.abs,
      mtime,
      header: headerFor(e.rel, e.stats.size, mode, mtime),
      member: { path: e.rel, size: e.stats.size, offset: 0, mode, ...(sha256 ? { sha256 } : {}) },
    };
  });
}

/**
 * Sets every member's offset and returns the index and the archive's size. The index's own size
 * moves every offset after it: iterate until its block count is stable.
 */
function layOutIndex(planned: Planned[]): { indexBytes: Buffer; total: number } {
  for (let guess = 0, round = 0; ; round++) {
    let pos = BLOCK + guess + padding(guess);
    for (const p of planned) {
      pos += p.header.length;
      p.member.offset = pos;
      pos += p.member.size + padding(p.member.size);
    }
    const total = pos + 2 * BLOCK;
    const index: ArchiveIndex = {
      format: ARCHIVE_FORMAT,
      version: ARCHIVE_VERSION,
      members: planned.map((p) => p.member),
      totalBytes: total,
    };
    const indexBytes = Buffer.from(`${JSON.stringify(index)}\n`);
    const blocks = (n: number) => Math.ceil(n / BLOCK);
    if (blocks(indexBytes.length) === blocks(guess) && indexBytes.length <= guess) {
      // Pad with spaces to the guessed length, so the offsets and totalBytes hold exactly.
      return { indexBytes: Buffer.concat([indexBytes, Buffer.alloc(guess - indexBytes.length, " ")]), total };
    }
    if (round > 20) throw new WorkError("cannot lay out the archive index");
    guess = Math.max(indexBytes.length, guess);
  }
}

/** One member: its header, at most its planned bytes (a file that changed meanwhile fails), padding. */
async function writeMember(sink: PartSink, p: Planned, piece: Buffer): Promise<void> {
  await sink.write(p.header);
  let n = 0;
  const input = await open(p.abs, "r");
  try {
    // One byte more than planned is asked for, so that a file grown meanwhile shows.
    for (let read = -1; read !== 0 && n <= p.member.size; n += read) {
      read = (await input.read(piece, 0, Math.min(piece.length, p.member.size + 1 - n), null)).bytesRead;
      if (n + read <= p.member.size) await sink.write(piece.subarray(0, read));
    }
  } finally {
    await input.close();
  }
  if (n !== p.member.size)
    throw new WorkError(`${p.abs} changed while it was packed: ${p.member.size} bytes expected, ${n} read`);
  await sink.write(Buffer.alloc(padding(n)));
}

/** Writes bytes into `file.partial`, or into `file.NNN.partial` parts of `split` bytes each. */
class PartSink {
  bytes = 0;
  private handle: FileHandle | undefined;
  private inPart = 0;
  private readonly parts: string[] = [];

  constructor(
    private readonly file: string,
    private readonly split: number | undefined,
  ) {}

  private partName(i: number): string {
    return this.split === undefined ? this.file : `${this.file}.${String(i).padStart(3, "0")}`;
  }

  async write(buf: Buffer): Promise<void> {
    let rest = buf;
    while (rest.length > 0) {
      let handle = this.handle;
      if (!handle || (this.split !== undefined && this.inPart >= this.split)) handle = await this.nextPart();
      const room = this.split === undefined ? rest.length : this.split - this.inPart;
      const piece = rest.subarray(0, Math.min(room, rest.length));
      await writeChunk(handle.fd, piece);
      this.inPart += piece.length;
      this.bytes += piece.length;
      rest = rest.subarray(piece.length);
    }
  }

  private async nextPart(): Promise<FileHandle> {
    await this.handle?.close();
    const name = `${this.partName(this.parts.length)}.partial`;
    await mkdir(path.dirname(path.resolve(name)), { recursive: true });
    const handle = await open(name, "w");
    this.handle = handle;
    this.parts.push(this.partName(this.parts.length));
    this.inPart = 0;
    return handle;
  }

  async finish(): Promise<string[]> {
    await this.handle?.close();
    this.handle = undefined;
    // Drop what an earlier archive of the same name left: the whole file, or surplus parts.
    await removeArchive(this.file);
    for (const p of this.parts) await rename(`${p}.partial`, p);
    return [...this.parts];
  }

  async abort(): Promise<void> {
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    for (const p of this.parts) await rm(`${p}.partial`, { force: true });
  }
}

/** Removes `file` and its parts `file.000`, `file.001`, …. */
async function removeArchive(file: string): Promise<void> {
  await rm(file, { force: true });
  const dir = path.dirname(path.resolve(file));
  const base = path.basename(file);
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const n of names)
    if (n.startsWith(`${base}.`) && /^\d{3,}$/.test(n.slice(base.length + 1)))
      await rm(path.join(dir, n), { force: true });
}

// ---------------------------------------------------------------------------------------------
// Reading

interface Part {
  file: string;
  /** Where the part starts in the joined archive. */
  start: number;
  size: number;
}

async function findParts(file: string): Promise<Part[]> {
  const whole = await stat(file).catch(() => undefined);
  if (whole?.isFile()) return [{ file, start: 0, size: whole.size }];
  const parts: Part[] = [];
  let start = 0;
  for (let i = 0; ; i++) {
    const name = `${file}.${String(i).padStart(3, "0")}`;
    const s = await stat(name).catch(() => undefined);
    if (!s?.isFile()) break;
    parts.push({ file: name, start, size: s.size });
    start += s.size;
  }
  if (parts.length === 0) throw new InputError(`${file}: no such bundle archive (nor ${file}.000)`);
  return parts;
}

/** Reads `length` bytes from `offset` of the joined parts, streamed. */
async function* readRange(parts: Part[], offset: number, length: number): AsyncGenerator<Buffer> {
  let pos = offset;
  const end = offset + length;
  for (const part of parts) {
    if (pos >= end) return;
    const partEnd = part.start + part.size;
    if (pos >= partEnd) continue;
    const last = Math.min(end, partEnd);
    for await (const chunk of createReadStream(part.file, {
      start: pos - part.start,
      end: last - part.start - 1,
      highWaterMark: READ_BUFFER,
    }))
      yield chunk as Buffer;
    pos = last;
  }
}

async function readBytes(parts: Part[], offset: number, length: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of readRange(parts, offset, length)) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Opens a bundle archive (whole or split) by its index: nothing else is read until asked. */
export async function openArchive(file: string): Promise<BundleArchive> {
  const parts = await findParts(file);
  const last = parts[parts.length - 1];
  const available = last ? last.start + last.size : 0;
  const head = await readBytes(parts, 0, BLOCK);
  const notOurs = () =>
    new InputError(`${file} is not a bundle archive (its first member is not ${ARCHIVE_INDEX})`);
  if (head.length < BLOCK) throw notOurs();
  const header = new Header(head, 0);
  if (!header.cksumValid || header.path !== ARCHIVE_INDEX || header.size === undefined) throw notOurs();
  const indexBytes = await readBytes(parts, BLOCK, header.size);
  let data: unknown;
  try {
    data = JSON.parse(indexBytes.toString("utf8"));
  } catch {
    throw new InputError(`${file}: ${ARCHIVE_INDEX} is not valid JSON (the archive is damaged)`);
  }
  const head0 = data as { format?: unknown; version?: unknown } | null;
  if (head0?.format !== ARCHIVE_FORMAT || head0.version !== ARCHIVE_VERSION)
    throw new InputError(
      `${file}: archive format ${String(head0?.format)} v${String(head0?.version)} is not supported`,
    );
  const { checkIndexData } = await import("./parse.js");
  const index = checkIndexData(data, `${ARCHIVE_INDEX} in ${file}`);
  const members = new Map(index.members.map((m) => [m.path, m]));
  for (const m of index.members) {
    if (m.offset < BLOCK)
      throw new InputError(
        `${ARCHIVE_INDEX} in ${file}: member ${m.path}: offset ${m.offset} lies in the index`,
      );
    if (m.offset + m.size > available)
      throw new WorkError(
        `${file} is truncated: member ${m.path} needs bytes up to ${m.offset + m.size}, ` +
          `the archive has ${available}`,
      );
  }
  if (available < index.totalBytes)
    throw new WorkError(`${file} is truncated: ${index.totalBytes} bytes expected, ${available} found`);

  const read = (memberPath: string, opts: ReadOptions = {}): Readable => {
    const m = members.get(memberPath);
    if (!m) throw new WorkError(`${file} holds no member ${memberPath}`);
    const whole = opts.end === undefined;
    const checked = opts.check === false || !whole ? { ...m, sha256: undefined } : m;
    const stop = whole ? m.size : Math.min(m.size, (opts.end ?? 0) + 1);
    return Readable.from(checkedRange(file, parts, checked, opts.start ?? 0, stop), { objectMode: false });
  };
  const lockMember = members.get(LOCK_FILE);
  if (!lockMember) throw new InputError(`${file} holds no ${LOCK_FILE}: it is not a prepared bundle`);
  const lockText = await readAll(read(LOCK_FILE), SMALL_MEMBER);
  const lock = await parseLock(lockText.toString("utf8"), `${LOCK_FILE} in ${file}`);
  // The lock, not the index, says what each member's bytes must be: every read checks them.
  const known = lockedFiles(lock);
  for (const m of index.members) {
    const sha256 = sha256Of(m.path, known);
    if (sha256) m.sha256 = sha256;
  }
  return {
    file,
    index: index.members,
    lock,
    read,
    has: (p) => members.has(p),
    member: (p) => members.get(p),
    close: () => Promise.resolve(),
  };
}

async function* checkedRange(
  file: string,
  parts: Part[],
  m: Omit<Member, "sha256"> & { sha256?: string | undefined },
  start: number,
  stop = m.size,
): AsyncGenerator<Buffer> {
  const hash = m.sha256 ? createHash("sha256") : undefined;
  // Without a known sha256 there is nothing to check: skip straight to `start`.
  let pos = hash ? 0 : start;
  let got = 0;
  for await (const chunk of readRange(parts, m.offset + pos, stop - pos)) {
    hash?.update(chunk);
    got += chunk.length;
    const from = pos < start ? Math.min(start - pos, chunk.length) : 0;
    pos += chunk.length;
    if (from < chunk.length) yield from === 0 ? chunk : chunk.subarray(from);
  }
  const expected = stop - (hash ? 0 : start);
  if (got !== expected)
    throw new WorkError(`member ${m.path} of ${file} is truncated: ${expected} bytes expected, ${got} read`);
  if (hash) {
    const actual = hash.digest("hex");
    if (actual !== m.sha256)
      throw new WorkError(`member ${m.path} of ${file} is corrupt: sha256 ${actual}, expected ${m.sha256}`);
  }
}

/** What `readMember` holds in memory at most, as a bundle folder's `readFile`. */
const SMALL_MEMBER = 64 << 20;

/** A member's whole bytes, checked; for small members (index.json, manifests, the lock). */
export function readMember(archive: BundleArchive, memberPath: string): Promise<Buffer> {
  return readAll(archive.read(memberPath), SMALL_MEMBER);
}
