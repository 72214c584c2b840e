/**
 * Finding an image's referrers at its source: for each subject (the image's top manifest and
 * each carried platform's), what the referrers API lists (or, without the API, the tag schema's
 * `sha256-<hex>` index), and cosign's `sha256-<hex>.sig`, `.att` and `.sbom` tags. Then the
 * referrers of those (a signature on an SBOM), level by level, as `oras copy --recursive` does.
 */
import { parseManifest } from "../oci/parse.js";
import { isImageManifest, isIndex } from "../oci/mediaTypes.js";
import { COSIGN_SUFFIXES, referrersTag } from "../oci/referrers.js";
import type { Descriptor } from "../oci/types.js";
import type { ImageLocation, ImageSource } from "../store/types.js";

/** One artifact to carry: which manifest it is about, its digest, and cosign's tag for it. */
export interface ReferrerRef {
  subject: string;
  digest: string;
  tag?: string;
}

export interface FoundReferrers {
  found: ReferrerRef[];
  /** Listed referrers of a kind no registry client can copy (not an OCI or Docker manifest). */
  skipped: Descriptor[];
}

/**
 * Levels below the image that are searched: the image's referrers, theirs (a signature on an
 * attestation) and one more. Content addressing rules out a true cycle, but cosign's tags are
 * only names, so a crafted tag could lead back up; a digest is also searched only once.
 */
const REFERRER_LEVELS = 3;

export async function findReferrers(
  source: ImageSource,
  from: ImageLocation,
  subjects: string[],
): Promise<FoundReferrers> {
  // One tag list instead of four questions per subject, where the repository has few tags.
  const tags = await source.listTags?.(from);
  const maybe = (tag: string) => tags === undefined || tags.has(tag);
  const searched = new Set(subjects);
  const found = new Map<string, ReferrerRef>();
  const skipped: Descriptor[] = [];
  let level = [...searched];
  for (let depth = 0; depth < REFERRER_LEVELS && level.length > 0; depth++) {
    const next = await referrersOf(source, from, level, maybe);
    skipped.push(...next.skipped);
    const fresh = next.found.filter((r) => !subjects.includes(r.digest));
    for (const r of fresh) found.set(`${r.digest} ${r.tag ?? r.subject}`, r);
    level = [...new Set(fresh.map((r) => r.digest))].filter((d) => !searched.has(d));
    for (const d of level) searched.add(d);
  }
  return { found: [...found.values()], skipped };
}

/** One level: what refers to each of `subjects`. */
async function referrersOf(
  source: ImageSource,
  from: ImageLocation,
  subjects: string[],
  maybe: (tag: string) => boolean,
): Promise<FoundReferrers> {
  const perSubject = await Promise.all(
    subjects.map(async (subject) => {
      const [listed, tagged] = await Promise.all([
        listedReferrers(source, from, subject, maybe),
        cosignReferrers(source, from, subject, maybe),
      ]);
      return { subject, listed, tagged };
    }),
  );
  const found: ReferrerRef[] = [];
  const skipped: Descriptor[] = [];
  for (const { subject, listed, tagged } of perSubject) {
    for (const d of listed) {
      if (!isIndex(d.mediaType) && !isImageManifest(d.mediaType)) skipped.push(d);
      else found.push({ subject, digest: d.digest });
    }
    found.push(...tagged);
  }
  return { found, skipped };
}

/** The referrers API's list, or the tag schema's index where the source has no API. */
async function listedReferrers(
  source: ImageSource,
  from: ImageLocation,
  subject: string,
  maybe: (tag: string) => boolean,
) {
  const api = await source.listReferrers?.(from, subject);
  if (api) return api;
  const at = { ...from, reference: referrersTag(subject) };
  if (!maybe(at.reference) || !(await source.headManifest(at))) return [];
  const index = await parseManifest(from.name, await source.getManifest(at));
  return "manifests" in index ? index.manifests : [];
}

async function cosignReferrers(
  source: ImageSource,
  from: ImageLocation,
  subject: string,
  maybe: (tag: string) => boolean,
): Promise<ReferrerRef[]> {
  const tags = COSIGN_SUFFIXES.map((s) => `${referrersTag(subject)}.${s}`).filter(maybe);
  const heads = await Promise.all(tags.map((tag) => source.headManifest({ ...from, reference: tag })));
  return tags.flatMap((tag, i) => {
    const head = heads[i];
    return head ? [{ subject, digest: head.digest, tag }] : [];
  });
}
