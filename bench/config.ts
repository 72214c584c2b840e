/** The benchmark's knobs, all from the environment so `npm run bench` needs no arguments. */
import os from "node:os";
import path from "node:path";
import { CLI } from "../test/helpers/cli.js";

export interface BenchConfig {
  /** Number of multi-arch images in the main set. */
  images: number;
  /** Distinct blob bytes of the main set (both platforms, shared layers counted once). */
  totalBytes: number;
  /** Size of the one layer of the large-layer case; 0 skips that case. */
  bigBytes: number;
  /** Number of small images of the scale case (bench/scale.ts); 0 skips it. */
  many: number;
  /** Where the JSON results go. */
  resultsPath: string;
  /** Parent folder of the bench's working folder (layouts and bundles). */
  workRoot: string;
  /** Runs of the floor and of bundle for each prepare and upload row; the row holds their medians. */
  repeat: number;
  /** Pass the children's output through instead of capturing it. */
  verbose: boolean;
  /** The bundle executable (a JS file run by this Node), default this checkout's build. */
  bundleCli: string;
}

export const MB = 1024 * 1024;
export const DEFAULT_TOTAL_MB = 600;
export const DEFAULT_BIG_MB = 1024;
export const DEFAULT_IMAGES = 20;
export const DEFAULT_MANY = 1000;

export const ENV_HELP = `Environment:
  BENCH_SCALE=F       multiply the default sizes (${DEFAULT_TOTAL_MB} MB set, ${DEFAULT_BIG_MB} MB layer) by F, e.g. 0.05 for a quick run
  BENCH_TOTAL_MB=N    distinct blob MB of the image set (overrides BENCH_SCALE for the set)
  BENCH_BIG_MB=N      size of the single large layer (overrides BENCH_SCALE; 0 skips that case)
  BENCH_IMAGES=N      number of multi-arch images (default ${DEFAULT_IMAGES})
  BENCH_MANY=N        small multi-arch images of the scale case (default ${DEFAULT_MANY}; 0 skips it)
  BENCH_RESULTS=FILE  where to write the JSON results (default ./bench-results.json)
  BENCH_WORKDIR=DIR   parent of the working folder (default the system temp folder)
  BENCH_REPEAT=N      run the floor and bundle N times (alternating) for each prepare and upload row and report the medians (default 1)
  BENCH_VERBOSE=1     show the output of skopeo and bundle
  BENCH_BUNDLE_CLI=F  the bundle CLI to measure (a .js file; default this checkout's dist/bin/bundle.js)`;

export function readConfig(env: NodeJS.ProcessEnv = process.env): BenchConfig {
  const scale = number(env, "BENCH_SCALE", 1, { min: 0, integer: false });
  const totalMb = number(env, "BENCH_TOTAL_MB", DEFAULT_TOTAL_MB * scale, { min: 1, integer: false });
  const bigMb = number(env, "BENCH_BIG_MB", DEFAULT_BIG_MB * scale, { min: 0, integer: false });
  return {
    images: number(env, "BENCH_IMAGES", DEFAULT_IMAGES, { min: 1, integer: true }),
    many: number(env, "BENCH_MANY", DEFAULT_MANY, { min: 0, integer: true }),
    totalBytes: Math.round(totalMb * MB),
    bigBytes: Math.round(bigMb * MB),
    resultsPath: path.resolve(env.BENCH_RESULTS || "bench-results.json"),
    workRoot: path.resolve(env.BENCH_WORKDIR || os.tmpdir()),
    repeat: number(env, "BENCH_REPEAT", 1, { min: 1, integer: true }),
    verbose: env.BENCH_VERBOSE === "1" || env.BENCH_VERBOSE === "true",
    bundleCli: path.resolve(env.BENCH_BUNDLE_CLI || CLI),
  };
}

function number(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  { min, integer }: { min: number; integer: boolean },
): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new Error(
      `${name}=${raw}: expected ${integer ? "an integer" : "a number"} ≥ ${min}\n\n${ENV_HELP}`,
    );
  }
  return value;
}
