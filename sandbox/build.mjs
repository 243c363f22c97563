// Builds the sandbox assets into self-contained files, once, at setup time.
// Nothing is installed inside a sandbox at run time.
import * as esbuild from "esbuild";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.dirname(fileURLToPath(import.meta.url));
const outdir = process.argv[2] ?? path.join(root, "..", "layers", "core", "iris_exec", "assets");
fs.mkdirSync(outdir, { recursive: true });

const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  outExtension: { ".js": ".mjs" },
  outdir,
  legalComments: "none",
  logLevel: "warning",
  // Bundled CommonJS dependencies call require(); give ES modules one.
  banner: { js: "import { createRequire as __irisCreateRequire } from 'node:module'; const require = __irisCreateRequire(import.meta.url);" },
};

await esbuild.build({
  ...common,
  entryPoints: {
    runner: path.join(root, "src/runner.ts"),
    compiler: path.join(root, "src/compiler.ts"),
    compile: path.join(root, "src/compile.ts"),
  },
});
await esbuild.build({ ...common, banner: undefined, entryPoints: { "iris-prime": path.join(root, "src/iris-prime.ts") } });

// esbuild's API runs its native binary; ship it beside the bundles.
const binary = fileURLToPath(import.meta.resolve("@esbuild/linux-" + (process.arch === "arm64" ? "arm64" : "x64") + "/bin/esbuild"));
fs.copyFileSync(binary, path.join(outdir, "esbuild"));
fs.chmodSync(path.join(outdir, "esbuild"), 0o755);
console.log(`sandbox assets built in ${outdir}`);
