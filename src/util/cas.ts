/**
 * Content addressing in one place, as npm's cacache keeps its path.js and write.js: where a
 * digest lives in an image layout (`blobs/sha256/<hex>`, the only digest → path map), and how a
 * file is written so that a reader sees nothing, the old file or the whole new one (a temporary
 * name, then a rename).
 */
import { rename, rm, writeFile } from "node:fs/promises";
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { InputError } from "./errors.js";

/** The folder of a layout holding its blobs, relative to the layout. */
export const BLOBS_DIR = "blobs/sha256";

const DIGEST = /^sha256:([a-f0-9]{64})$/;

/** `blobs/sha256/<hex>` for `sha256:<hex>`; anything else is refused, never joined to a path. */
export function blobRel(digest: string): string {
  const hex = DIGEST.exec(digest)?.[1];
  if (hex === undefined) throw new InputError(`${JSON.stringify(digest)} is not a sha256 digest`);
  return `${BLOBS_DIR}/${hex}`;
}

/**
 * Writes a file under a temporary name, then renames it: readers see the old or the new file.
 * Streams (a source and its transforms) are written as they come; a failing one leaves nothing
 * under either name.
 */
export async function writeAtomic(
  file: string,
  data: string | Buffer | (NodeJS.ReadableStream | NodeJS.ReadWriteStream)[],
): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    if (Array.isArray(data)) await pipeline([...data, createWriteStream(tmp, { flags: "wx" })]);
    else await writeFile(tmp, data, { flag: "wx" });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
