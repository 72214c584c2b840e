/**
 * The local default run behind `scripts/quickstart.sh`. Until the stages exist it checks the
 * example definitions with `bundle lint` and says which stages are still to be built.
 */
import { fileURLToPath } from "node:url";
import { run } from "../src/cli/main.js";

const repo = fileURLToPath(new URL("../../", import.meta.url));
process.chdir(repo);

const steps: [string, string[]][] = [
  ["lint the Telego example", ["lint", "-f", "test/fixtures/telego-openwhisk/deployment.yml"]],
  ["lint the native example", ["lint", "-f", "test/fixtures/native/bundle.yml"]],
  ["prepare", ["prepare", "-f", "test/fixtures/native/bundle.yml", "-o", ".quickstart/bundle"]],
];

for (const [title, args] of steps) {
  console.error(`\n== ${title}: bundle ${args.join(" ")}`);
  const code = await run(args);
  if (code !== 0) {
    console.error(
      `\nquick start stopped at "${title}" (exit ${code}); upload and deploy follow once prepare is built.`,
    );
    process.exit(code);
  }
}
