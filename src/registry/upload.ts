/**
 * Blob uploads. Small blobs go in one PUT; large ones in PATCH chunks, each a bounded slice
 * streamed from the source, so no blob is ever held in memory. When a chunk fails on the way,
 * the registry is asked how much it has (GET on the upload URL, `Range: 0-N`) and the upload
 * goes on from there; if the session itself is lost, the upload starts over.
 */
import { Readable } from "node:stream";
import type { Descriptor } from "../oci/types.js";
import { WorkError } from "../util/errors.js";
import { writeFileRange } from "../util/fileRange.js";
import { Attempts, TransientError } from "../util/retry.js";
import { repositoryScope } from "./auth.js";
import { unexpectedStatus } from "./errors.js";
import { header } from "./http.js";
import type { Exchange, RequestBody, Transport } from "./transport.js";

/**
 * Reads blob bytes from an offset, with `file` when the source keeps the blob as one (the store
 * layer's `blobFile`): the upload then reads it into buffers it reuses.
 */
export type BlobOpener = ((offset: number) => Promise<Readable>) & {
  readonly file?: () => Promise<string>;
};

export interface UploadTuning {
  /** Blobs up to this size go in one PUT. */
  monolithicMaxBytes: number;
  /** Size of each PATCH of a chunked upload. */
  chunkBytes: number;
}

/**
 * A large blob goes up in one streamed PATCH: Distribution saves its hash state at every chunk,
 * so 32 MiB chunks made a 1 GB upload half again as slow. A PATCH cut off is still resumed from
 * the offset the registry reports. The CLI uses these very values, so tests of the client do too.
 */
export const DEFAULT_TUNING: UploadTuning = { monolithicMaxBytes: 32 << 20, chunkBytes: 2 ** 40 };

interface Upload {
  t: Transport;
  repo: string;
  desc: Descriptor;
  open: BlobOpener;
  progress: (upTo: number) => void;
  what: string;
  scopes: string[];
}

/** Where the registry's upload session is, and how many bytes it holds. */
interface Session {
  location: string;
  offset: number;
  /** The closing PUT went out: its fault may mean the blob is stored already. */
  finishing?: boolean;
}

/** The registry no longer knows the upload: the next attempt starts a new one. */
class SessionLost extends TransientError {
  override name = "SessionLost";
}

const OCTET = "application/octet-stream";

export async function uploadBlob(
  t: Transport,
  where: { repo: string; name: string },
  desc: Descriptor,
  open: BlobOpener,
  onBytes: ((n: number) => void) | undefined,
  tuning: UploadTuning,
): Promise<void> {
  const up: Upload = {
    t,
    repo: where.repo,
    desc,
    open,
    progress: highWater(onBytes),
    what: `upload blob ${desc.digest} of ${where.name} to registry ${t.endpoint.host}`,
    scopes: [repositoryScope(where.repo, ["pull", "push"])],
  };
  const attempts = new Attempts(t.retry, up.what);
  const state: Attempted = { tried: false, confirmed: 0 };
  await t.retrying(up.what, () => tryUpload(up, state, tuning, attempts), attempts);
}

/** What earlier attempts of an upload left: the session, if it goes on, and the bytes it held. */
interface Attempted {
  session?: Session;
  tried: boolean;
  confirmed: number;
}

/** One attempt: a new session, or the last one from where the registry says it stands. */
async function tryUpload(up: Upload, st: Attempted, tuning: UploadTuning, attempts: Attempts) {
  const monolithic = up.desc.size <= tuning.monolithicMaxBytes;
  try {
    if (st.session === undefined) {
      // A lost answer to the final PUT leaves the blob stored: look before sending it all again.
      if (st.tried && (await blobExists(up))) return;
      st.tried = true;
      st.session = await start(up);
    } else {
      await refreshSession(up, st.session);
      // The registry took more bytes since the last fault: the link works, count anew.
      if (st.session.offset > st.confirmed) {
        st.confirmed = st.session.offset;
        attempts.progressed();
      }
    }
    checkStored(up, monolithic ? await putWhole(up, st.session) : await putChunks(up, st.session, tuning));
  } catch (err) {
    // Chunks go on from what the registry holds; a whole PUT, or a lost session, starts over.
    if (monolithic || err instanceof SessionLost || st.session?.finishing) st.session = undefined;
    throw err;
  }
}

async function blobExists(up: Upload): Promise<boolean> {
  const res = await up.t.send({
    method: "HEAD",
    url: `/v2/${up.repo}/blobs/${up.desc.digest}`,
    scopes: up.scopes,
  });
  return res.status === 200;
}

async function start(up: Upload): Promise<Session> {
  const res = await up.t.send({ method: "POST", url: `/v2/${up.repo}/blobs/uploads/`, scopes: up.scopes });
  if (res.status !== 202) throw unexpectedStatus(`${up.what}: starting the upload`, res);
  return { location: nextLocation(up, res, undefined), offset: 0 };
}

async function putWhole(up: Upload, session: Session): Promise<Exchange> {
  const bytes = await openBytes(up, 0);
  try {
    return await up.t.send({
      method: "PUT",
      url: withDigest(session.location, up.desc.digest),
      scopes: up.scopes,
      headers: { "content-type": OCTET, "content-length": String(up.desc.size) },
      body: bytes.slice(0, up.desc.size),
    });
  } finally {
    bytes.close();
  }
}

/** PATCHes what the session lacks, then closes it; a fault in the closing PUT starts over. */
async function putChunks(up: Upload, session: Session, tuning: UploadTuning): Promise<Exchange> {
  await sendChunks(up, session, tuning.chunkBytes);
  session.finishing = true;
  return up.t.send({
    method: "PUT",
    url: withDigest(session.location, up.desc.digest),
    scopes: up.scopes,
    headers: { "content-length": "0" },
  });
}

/** PATCHes the rest of the blob from `session.offset`, one bounded slice of one source stream each. */
async function sendChunks(up: Upload, session: Session, chunkBytes: number): Promise<void> {
  if (session.offset >= up.desc.size) return;
  const bytes = await openBytes(up, session.offset);
  try {
    while (session.offset < up.desc.size) {
      const from = session.offset;
      const length = Math.min(chunkBytes, up.desc.size - from);
      const res = await up.t.send({
        method: "PATCH",
        url: session.location,
        scopes: up.scopes,
        headers: {
          "content-type": OCTET,
          "content-length": String(length),
          "content-range": `${from}-${from + length - 1}`,
        },
        body: bytes.slice(from, length),
      });
      // 416: the registry holds a different amount than we think; the status request sorts it out.
      if (res.status === 416) throw new TransientError(`${up.what}: registry disagrees on the upload offset`);
      if (res.status !== 202)
        throw unexpectedStatus(`${up.what}: sending bytes ${from}-${from + length - 1}`, res);
      session.location = nextLocation(up, res, session.location);
      session.offset = from + length;
      const held = rangeEnd(header(res, "range"));
      if (held !== undefined && held !== session.offset) {
        session.offset = held;
        throw new TransientError(
          `${up.what}: registry holds ${held} bytes after a chunk ending at ${from + length}`,
        );
      }
    }
  } finally {
    bytes.close();
  }
}

/** Consecutive slices of the blob, from where the upload stands, as request bodies. */
interface BlobSlices {
  slice(from: number, length: number): RequestBody;
  close(): void;
}

/**
 * The blob's file read into reused buffers when the source keeps one (a bundle's layout), else
 * one stream from `offset` cut into slices.
 */
async function openBytes(up: Upload, offset: number): Promise<BlobSlices> {
  const file = await up.open.file?.();
  if (file !== undefined) {
    const range = { file, size: up.desc.size, what: up.what, progress: up.progress };
    return {
      slice: (from, length) => (to) => writeFileRange({ ...range, from, length }, to),
      close: () => undefined,
    };
  }
  const source = await up.open(offset);
  const slicer = new Slicer(source, up.what);
  return {
    slice: (from, length) =>
      Readable.from(slicer.take(from, length, from + length === up.desc.size, up.progress), {
        objectMode: false,
      }),
    close: () => source.destroy(),
  };
}

/** Asks the registry how many bytes the session holds. A lost session fails transiently: start over. */
async function refreshSession(up: Upload, session: Session): Promise<void> {
  const res = await up.t.send({ method: "GET", url: session.location, scopes: up.scopes });
  if (res.status === 404 || res.status === 400) {
    throw new SessionLost(
      `${up.what}: the registry lost the upload session (HTTP ${res.status}), starting over`,
    );
  }
  if (res.status !== 204 && res.status !== 202 && res.status !== 200) {
    throw unexpectedStatus(`${up.what}: asking for the upload's status`, res);
  }
  session.location = nextLocation(up, res, session.location);
  session.offset = rangeEnd(header(res, "range")) ?? 0;
}

function checkStored(up: Upload, res: Exchange): void {
  if (res.status === 404) {
    throw new SessionLost(`${up.what}: the registry lost the upload session (HTTP 404), starting over`);
  }
  if (res.status !== 201) throw unexpectedStatus(up.what, res);
  const stored = header(res, "docker-content-digest");
  if (stored !== undefined && stored !== up.desc.digest) {
    throw new WorkError(`${up.what}: the registry stored it as ${stored}`);
  }
}

/** The next request goes to the Location the last answer gave, which may be relative. */
function nextLocation(up: Upload, res: Exchange, previous: string | undefined): string {
  const location = header(res, "location");
  if (!location) {
    if (previous) return previous;
    throw new WorkError(`${up.what}: the registry gave no upload Location`);
  }
  return new URL(location, res.url).toString();
}

/** Appends `digest=` to an upload URL that may already carry a query (`?_state=…`), keeping it as is. */
export function withDigest(location: string, digest: string): string {
  const url = new URL(location);
  const param = `digest=${encodeURIComponent(digest)}`;
  url.search = url.search.length > 1 ? `${url.search}&${param}` : `?${param}`;
  return url.toString();
}

/** `Range: 0-N` of an upload means N+1 bytes held; Distribution says `0-0` for an empty upload. */
export function rangeEnd(value: string | undefined): number | undefined {
  const m = /^(?:bytes=)?0-(\d+)$/.exec(value?.trim() ?? "");
  if (!m) return undefined;
  const last = Number(m[1]);
  return last === 0 ? 0 : last + 1;
}

/** Progress that never counts a byte twice, however often an upload starts over. */
function highWater(onBytes: ((n: number) => void) | undefined): (upTo: number) => void {
  let reported = 0;
  return (upTo) => {
    if (onBytes && upTo > reported) onBytes(upTo - reported);
    reported = Math.max(reported, upTo);
  };
}

/**
 * Cuts consecutive slices from one stream: each `take` yields exactly `length` bytes and
 * keeps what it read beyond them for the next slice.
 */
export class Slicer {
  private readonly it: AsyncIterator<unknown>;
  private rest: Buffer | undefined;

  constructor(
    source: Readable,
    private readonly what: string,
  ) {
    this.it = source[Symbol.asyncIterator]();
  }

  /**
   * Yields `length` bytes; `progress` gets the absolute end position, `from` being where the
   * slice starts. For the blob's `last` slice the source must end there, and it is made to
   * end before the last bytes go out: a source that checks its digest at its end (a verified
   * download) then fails the request before the registry has the whole blob.
   */
  async *take(from: number, length: number, last: boolean, progress: (upTo: number) => void) {
    let remaining = length;
    while (remaining > 0) {
      let chunk = this.rest ?? (await this.next(from + length - remaining));
      this.rest = undefined;
      if (chunk.length > remaining) {
        this.rest = chunk.subarray(remaining);
        chunk = chunk.subarray(0, remaining);
      }
      remaining -= chunk.length;
      if (remaining === 0 && last) await this.expectEnd(from + length);
      yield chunk;
      progress(from + length - remaining);
    }
  }

  private async next(at: number): Promise<Buffer> {
    const r = await this.it.next();
    if (r.done) throw new WorkError(`${this.what}: the source ended at byte ${at}, short of the blob's size`);
    return Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
  }

  private async expectEnd(size: number): Promise<void> {
    const more = (this.rest?.length ?? 0) > 0 || !(await this.it.next()).done;
    if (more) throw new WorkError(`${this.what}: the source has more than the blob's ${size} bytes`);
  }
}
