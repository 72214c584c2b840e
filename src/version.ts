import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * The package's folder (package.json, schema/): two up from this module, whether it runs from
 * dist/src (tsc) or from dist/bin (the esbuild build `npm run build` makes the published CLI,
 * chunks beside the entry). The standalone file replaces this module (scripts/build-standalone.mjs).
 */
export const PACKAGE_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Whether this module runs inside the standalone single file, which is then the tool itself. */
export const STANDALONE_FILE = false;

/** The package's version, read once from package.json. */
export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(`${PACKAGE_ROOT}package.json`, "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
})();
