#!/usr/bin/env node
/**
 * Builds the self-contained `bundle`: one ES module, dist/standalone/bundle.mjs, with every
 * dependency inlined, that a plain `node` (20.19+) runs from a folder with no node_modules. This is
 * how the tool itself crosses the air gap.
 *
 *   npm run build:standalone            # or: node scripts/build-standalone.mjs [--minify] [--outfile F]
 *   node dist/standalone/bundle.mjs --help
 *
 * With `--cli` it builds the CLI `npm run build` makes instead (dist/bin/bundle.js and its chunks,
 * see buildCli): the same bundling, split at each dynamic import, reading its files from the package.
 *
 * It bundles the TypeScript sources directly (esbuild strips the types; `tsc` is not needed) with
 * src/cli/main.ts as the entry. What a single file needs besides plain bundling:
 *
 * - main.ts runs itself when realpath(process.argv[1]) equals fileURLToPath(import.meta.url). In
 *   the bundle import.meta.url is the bundle's own URL, so `node bundle.mjs …` (also through a
 *   symlink) still runs the CLI, and exactly once.
 * - src/version.ts finds package.json two folders up from import.meta.url, and
 *   src/config/schemaFiles.ts reads schema/*.schema.json there (and requires the validators
 *   *.schema.validate.cjs). Those paths do not exist next to a single file, so the build replaces
 *   both modules with ones holding the JSON inline (and STANDALONE_FILE true: this file is the tool). The sources
 *   stay as they are; the build fails if their exports change, rather than ship a stale stand-in.
 * - Dynamic import()s of internal modules and of dockerode are bundled like static ones (one file,
 *   no code splitting).
 * - CommonJS dependencies call require("fs") and use __dirname/__filename, which an ES module lacks:
 *   the banner defines them from import.meta.url.
 * - Node's built-in modules are taken with require() in the ES module build too (see
 *   builtinsByRequirePlugin): an ES import of node:http costs about 0.1 s of CPU at each start.
 * - `format: "cjs"` (scripts/build-exe.mjs: a Node single-executable application needs a CommonJS
 *   main script) drops main.ts's top-level await, which CommonJS lacks, and runs the CLI
 *   unconditionally; import.meta.url becomes the file's own URL (in an executable, its path).
 * - ssh2 (through dockerode → docker-modem) tries `cpu-features` and its own sshcrypto.node inside
 *   try/catch: both are stubbed with a module that throws, so ssh2 takes its pure-JS path and no
 *   native addon that happens to sit in some node_modules above the bundle gets loaded.
 */
import { build } from "esbuild";
import { chmodSync, readFileSync, rmSync, statSync } from "node:fs";
import { isBuiltin } from "node:module";
import path from "node:path";
import console from "node:console";
import process from "node:process";
import { fileURLToPath, URL } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const ENTRY = path.join(ROOT, "src/cli/main.ts");
const SCHEMAS = [
  "bundle.schema.json",
  "telego.schema.json",
  "bundle-lock.schema.json",
  "bundle-index.schema.json",
  "oci-index.schema.json",
  "oci-manifest.schema.json",
  "oci-config.schema.json",
  "docker-archive.schema.json",
  "chart-yaml.schema.json",
  "chart-lock.schema.json",
];

function parseArgs(argv) {
  const opts = { outfile: path.join(ROOT, "dist/standalone/bundle.mjs"), minify: false, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--minify") opts.minify = true;
    else if (arg === "--quiet" || arg === "-q") opts.quiet = true;
    else if (arg === "--cli") opts.cli = true;
    else if (arg === "--outfile" && argv[i + 1]) opts.outfile = path.resolve(argv[++i]);
    else {
      console.error(`usage: node scripts/build-standalone.mjs [--cli] [--minify] [--quiet] [--outfile FILE]`);
      process.exit(2);
    }
  }
  return opts;
}

/** The ajv standalone code `npm run schema` writes next to each schema (src/config/schemaFiles.ts). */
const validatorFile = (name) => name.replace(/\.json$/, ".validate.cjs");

const readJson = (rel) => JSON.parse(readFileSync(path.join(ROOT, rel), "utf8"));

/** Fails the build when a replaced module no longer has the shape its stand-in provides. */
function expectSource(file, patterns) {
  const text = readFileSync(file, "utf8");
  for (const re of patterns) {
    if (!re.test(text)) {
      throw new Error(
        `${path.relative(ROOT, file)} changed (no match for ${re}); update its stand-in in scripts/build-standalone.mjs`,
      );
    }
  }
}

/** Replaces the modules that read files relative to import.meta.url with inlined JSON. */
function inlineFilesPlugin(standaloneFile) {
  const versionFile = path.join(ROOT, "src/version.ts");
  const schemaFilesFile = path.join(ROOT, "src/config/schemaFiles.ts");
  expectSource(versionFile, [
    /export const VERSION\b/,
    /export const PACKAGE_ROOT\b/,
    /export const STANDALONE_FILE\b/,
  ]);
  expectSource(schemaFilesFile, [/export function schemaFile\(/, /export function schemaValidator\(/]);
  const stand = new Map([
    [
      versionFile,
      `/* inlined by scripts/build-standalone.mjs from package.json */\n` +
        `export const VERSION = ${JSON.stringify(readJson("package.json").version ?? "0.0.0")};\n` +
        `export const STANDALONE_FILE = ${JSON.stringify(standaloneFile)};\n` +
        `export const PACKAGE_ROOT = "";\n`,
    ],
    [
      schemaFilesFile,
      `/* inlined by scripts/build-standalone.mjs from schema/*.schema.json */\n` +
        `const files = {\n${SCHEMAS.map((n) => `  ${JSON.stringify(n)}: ${JSON.stringify(readJson(`schema/${n}`))},`).join("\n")}\n};\n` +
        `export function schemaFile(name) {\n` +
        `  const schema = files[name];\n` +
        `  if (!schema) throw new Error("no such schema file: " + name);\n` +
        `  return schema;\n}\n` +
        SCHEMAS.map(
          (n, i) =>
            `import validator${i} from ${JSON.stringify(path.join(ROOT, "schema", validatorFile(n)))};\n`,
        ).join("") +
        `const validators = {\n${SCHEMAS.map((n, i) => `  ${JSON.stringify(n)}: validator${i},`).join("\n")}\n};\n` +
        `export function schemaValidator(name) {\n` +
        `  const validator = validators[name];\n` +
        `  if (!validator) throw new Error("no such schema file: " + name);\n` +
        `  return validator;\n}\n`,
    ],
  ]);
  return {
    name: "inline-files",
    setup(b) {
      b.onLoad({ filter: /[\\/](version|schemaFiles)\.ts$/ }, (args) => {
        const contents = stand.get(path.resolve(args.path));
        return contents === undefined ? undefined : { contents, loader: "js" };
      });
    },
  };
}

/** Optional native addons: a module that throws, as if the addon were not installed. */
function stubNativePlugin() {
  return {
    name: "stub-native",
    setup(b) {
      b.onResolve({ filter: /^cpu-features$|\.node$/ }, (args) => ({
        path: args.path,
        namespace: "native-stub",
      }));
      b.onLoad({ filter: /.*/, namespace: "native-stub" }, (args) => ({
        contents: `throw new Error(${JSON.stringify(`native module ${args.path} is not part of the standalone bundle`)});`,
        loader: "js",
      }));
    },
  };
}

/**
 * Node's built-in modules through require(), not import: an ES module import of a built-in
 * builds its ES facade, which reads every export, lazy getters included, and node:http's
 * getters load Node's internal undici (about 0.1 s of CPU at every start, measured; got imports
 * node:http). require() returns the module object and leaves its getters alone.
 */
function builtinsByRequirePlugin() {
  return {
    name: "builtins-by-require",
    setup(b) {
      b.onResolve({ filter: /^[a-z_:/0-9]+$/ }, (args) =>
        // import() of a built-in stays a real import(): split into a chunk of its own, the
        // require() stand-in would offer only `default`.
        args.kind === "import-statement" && isBuiltin(args.path)
          ? { path: args.path, namespace: "builtin-require" }
          : undefined,
      );
      b.onLoad({ filter: /.*/, namespace: "builtin-require" }, (args) => ({
        contents: `module.exports = require(${JSON.stringify(args.path)});`,
        loader: "js",
      }));
    },
  };
}

/**
 * Dependencies a dependency imports at load time but this tool never uses: loaded on first use
 * instead. got imports http2-wrapper (and with it node:http2) for its `http2` option, which the
 * registry client never sets; loading them put a no-op prepare's first request ~15 ms later (medians of 15).
 */
const LAZY_DEPENDENCIES = /^http2-wrapper$/;

function lazyDependenciesPlugin() {
  return {
    name: "lazy-dependencies",
    setup(b) {
      b.onResolve({ filter: LAZY_DEPENDENCIES }, (args) =>
        args.namespace === "lazy-dependency"
          ? undefined
          : { path: args.path, namespace: "lazy-dependency", pluginData: { resolveDir: args.resolveDir } },
      );
      b.onLoad({ filter: /.*/, namespace: "lazy-dependency" }, (args) => ({
        // esbuild turns this require() into a call that evaluates the module then, not at start.
        contents:
          `let real;\n` +
          `const load = () => (real ??= require(${JSON.stringify(args.path)}));\n` +
          `module.exports = new Proxy({}, {\n` +
          `  get: (_, key) => (key === "__esModule" ? undefined : load()[key]),\n` +
          `});\n`,
        resolveDir: args.pluginData.resolveDir,
        loader: "js",
      }));
    },
  };
}

/**
 * For the CommonJS build: main.ts without its hashbang (the executable's main script is not a
 * file node is asked to run) and with the CLI run unconditionally, without top-level await.
 */
function runMainPlugin() {
  const mainFile = ENTRY;
  const tail = /\n\/\/ Run when executed as a program[^\n]*\n[\s\S]*$/;
  expectSource(mainFile, [/^#!.*\n/, tail, /export async function run\(argv: string\[\]\)/]);
  return {
    name: "run-main",
    setup(b) {
      b.onLoad({ filter: /[\\/]cli[\\/]main\.ts$/ }, (args) => {
        if (path.resolve(args.path) !== mainFile) return undefined;
        const text = readFileSync(mainFile, "utf8")
          .replace(/^#!.*\n/, "")
          .replace(
            tail,
            `\nvoid run(process.argv.slice(2)).then((code) => {\n  process.exitCode = code;\n});\n`,
          );
        return { contents: text, loader: "ts" };
      });
    },
  };
}

// Keep the hashbang first: esbuild carries main.ts's `#!/usr/bin/env node` over before the banner.
const BANNER = [
  `import { createRequire as __bundleCreateRequire } from "node:module";`,
  `import { fileURLToPath as __bundleFileURLToPath } from "node:url";`,
  `import { dirname as __bundleDirname } from "node:path";`,
  `const require = __bundleCreateRequire(import.meta.url);`,
  `const __filename = __bundleFileURLToPath(import.meta.url);`,
  `const __dirname = __bundleDirname(__filename);`,
].join("\n");

/** CommonJS has require, __filename and __dirname; import.meta.url is derived from __filename. */
const CJS_BANNER = `const __bundleImportMetaUrl = require("node:url").pathToFileURL(__filename).href;`;

/** opts.format: "esm" (default, dist/standalone/bundle.mjs) or "cjs" (the executables' main script). */
export async function buildStandalone(opts) {
  const started = Date.now();
  const cjs = opts.format === "cjs";
  const result = await build({
    ...common(opts),
    outfile: opts.outfile,
    format: cjs ? "cjs" : "esm",
    splitting: false,
    banner: { js: cjs ? CJS_BANNER : BANNER },
    ...(cjs ? { define: { "import.meta.url": "__bundleImportMetaUrl" } } : {}),
    plugins: [
      inlineFilesPlugin(!cjs),
      stubNativePlugin(),
      lazyDependenciesPlugin(),
      ...(cjs ? [runMainPlugin()] : [builtinsByRequirePlugin()]),
    ],
  });
  chmodSync(opts.outfile, 0o755); // runnable as ./bundle.mjs too, through the hashbang
  const bytes = statSync(opts.outfile).size;
  return { outfile: opts.outfile, bytes, ms: Date.now() - started, warnings: result.warnings.length };
}

/**
 * The CLI that `npm run build` makes and package.json's `bin` names: dist/bin/bundle.js, the same
 * sources and dependencies bundled, with each module a command loads through `import()` in a
 * chunk of its own beside it, evaluated only when that command runs. It starts faster than
 * tsc's output (one file per module, each resolved and linked: a no-op prepare 0.65 → 0.55 s)
 * and than the single file (which evaluates every dependency of every command). It reads
 * package.json and schema/ from the package (src/version.ts), so nothing is inlined.
 */
export async function buildCli(opts) {
  const started = Date.now();
  const outdir = opts.outdir ?? path.join(ROOT, "dist/bin");
  rmSync(outdir, { recursive: true, force: true });
  const result = await build({
    ...common(opts),
    outdir,
    format: "esm",
    splitting: true,
    entryNames: "bundle",
    // Beside the entry, so that every chunk finds the package two folders up, as src/version.ts says.
    chunkNames: "[name]-[hash]",
    banner: { js: BANNER },
    plugins: [stubNativePlugin(), lazyDependenciesPlugin(), builtinsByRequirePlugin()],
  });
  const outfile = path.join(outdir, "bundle.js");
  chmodSync(outfile, 0o755);
  const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  return { outfile, bytes, ms: Date.now() - started, warnings: result.warnings.length };
}

function common(opts) {
  return {
    entryPoints: [ENTRY],
    absWorkingDir: ROOT,
    bundle: true,
    platform: "node",
    target: "node20",
    minify: opts.minify,
    legalComments: "eof",
    logLevel: opts.quiet ? "error" : "warning",
    metafile: true,
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const opts = parseArgs(process.argv.slice(2));
  try {
    const r = await (opts.cli ? buildCli(opts) : buildStandalone(opts));
    if (!opts.quiet) {
      console.log(
        `${path.relative(process.cwd(), r.outfile)}: ${(r.bytes / 1024 / 1024).toFixed(2)} MiB in ${r.ms} ms` +
          (r.warnings ? ` (${r.warnings} warnings)` : ""),
      );
    }
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  }
}
