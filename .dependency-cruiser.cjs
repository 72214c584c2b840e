/* global module */
/**
 * The layers of src/, lowest first: a module may import from its own layer's folder and from the
 * layers below it, never from above. `npm run lint` runs this (depcruise), so an upward import
 * or a cycle fails the lint.
 */
const LAYERS = [
  ["util", "version.ts"],
  // A definition's templates are its own language: checked as the definition loads.
  ["config", "templates"],
  ["registry", "oci"],
  ["store"],
  ["copy"],
  ["bundle", "charts", "audit", "git", "fileserver", "files", "npm", "signatures"],
  ["stages"],
  ["cli"],
];

const folders = (layers) =>
  `^src/(${layers
    .flat()
    .map((f) => f.replace(".", "\\."))
    .join("|")})(/|$)`;

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `layer-${layer.join("-").replace(".ts", "")}`,
  comment: `${layer.join(", ")} may not import from the layers above it (${LAYERS.slice(i + 1)
    .flat()
    .join(", ")})`,
  severity: "error",
  from: { path: folders([layer]) },
  to: { path: folders(LAYERS.slice(i + 1)) },
}));

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment:
        "modules that import each other, directly or through others (type-only imports, erased at build, excepted)",
      severity: "error",
      from: { path: "^src/" },
      to: { circular: true, viaOnly: { dependencyTypesNot: ["type-only"] } },
    },
    ...upward,
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    includeOnly: "^src/",
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
  },
};
