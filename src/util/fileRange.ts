import { open } from "node:fs/promises";
import type { Writable } from "node:stream";
import { WorkError } from "./errors.js";

/**
 * Pieces of 256 KiB, at most 4 of them on their way per file, taken from one pool for the whole
 * run: an upload reads gigabytes without allocating a buffer per piece.
 */
const PIECE = 256 << 10;
const IN_FLIGHT = 4;
const POOL_MAX = 32;
const pool: Buffer[] = [];

const take = (): Buffer => pool.pop() ?? Buffer.allocUnsafeSlow(PIECE);
const give = (buf: Buffer): void => {
  if (pool.length < POOL_MAX) pool.push(buf);
};

/** Bytes `[from, from + length)` of a file that must hold exactly `size` bytes. */
export interface FileRange {
  file: string;
  from: number;
  length: number;
  size: number;
  /** For messages: `upload blob sha256:… of x to registry y`. */
  what: string;
  /** The position reached, after each piece has been handed over. */
  progress?: (upTo: number) => void;
}

/**
 * Writes a file's range to `to`, reading into buffers that go back to the pool when `to` calls
 * back for their write (the bytes have left them: a socket has taken them). Node's ReadStream
 * allocates a fresh buffer for every piece instead, and the kernel hands each one new pages:
 * reading 315 MB of blobs that way cost 434 ms of CPU, against 75 ms into reused buffers, and an
 * upload of those blobs 2.43 → 2.04 s of CPU (medians of 6). A file of another size than `size` is
 * refused before its first byte is written.
 */
export async function writeFileRange(r: FileRange, to: Writable): Promise<void> {
  const handle = await open(r.file, "r");
  const slots = new Slots(to);
  try {
    const { size } = await handle.stat();
    if (size !== r.size) throw new WorkError(`${r.what}: ${r.file} holds ${size} bytes, the blob ${r.size}`);
    const end = r.from + r.length;
    for (let at = r.from; at < end;) {
      const buf = await slots.free();
      const { bytesRead } = await handle.read(buf, 0, Math.min(PIECE, end - at), at).catch((err: unknown) => {
        slots.release(buf);
        throw err;
      });
      if (bytesRead === 0) {
        slots.release(buf);
        throw new WorkError(`${r.what}: the source ended at byte ${at}, short of the blob's size`);
      }
      at += bytesRead;
      slots.write(buf, bytesRead);
      r.progress?.(at);
    }
    await slots.drained();
  } finally {
    slots.close();
    await handle.close();
  }
}

/** The buffers of one file's writes: at most IN_FLIGHT at once, each back in the pool when written. */
class Slots {
  private out = 0;
  private failed: Error | undefined;
  private wake: (() => void) | undefined;
  private readonly onClose = () => this.fail(new WorkError("the request closed before its body was sent"));

  constructor(private readonly to: Writable) {
    to.once("close", this.onClose);
  }

  async free(): Promise<Buffer> {
    while (this.out >= IN_FLIGHT && !this.failed) await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.failed) throw this.failed;
    this.out++;
    return take();
  }

  release(buf: Buffer): void {
    this.out--;
    give(buf);
    this.signal();
  }

  write(buf: Buffer, length: number): void {
    this.to.write(buf.subarray(0, length), (err) => {
      if (err) this.fail(err);
      this.release(buf);
    });
  }

  async drained(): Promise<void> {
    while (this.out > 0 && !this.failed) await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.failed) throw this.failed;
  }

  close(): void {
    this.to.off("close", this.onClose);
  }

  private fail(err: Error): void {
    this.failed ??= err;
    this.signal();
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
