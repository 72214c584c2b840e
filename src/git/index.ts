/**
 * Git items of a bundle: fetch a pinned commit into a clone cache, write it as a reproducible
 * `.tar.gz`, copy a chart folder out of it.
 */
export { fetchCommit, type FetchOptions, type FetchResult } from "./commit.js";
export type { FetchSource } from "./fetch.js";
export { archivePrefix, writeArchive, type ArchiveOptions, type ArchiveResult } from "./tarball.js";
export { copyChart } from "./chart.js";
export { cacheName } from "./cache.js";
