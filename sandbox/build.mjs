// Builds the sandbox assets into self-contained files, once, at setup time.
// Nothing is installed inside a sandbox at run time.
import * as esbuild from "esbuild";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
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

// Every warm runner loads this one before its request: keep it small (see trusted-validator.ts).
const trustedValidator = {
  name: "trusted-validator",
  setup(build) {
    build.onResolve({ filter: /validation\/ajv-provider\.js$/ }, () => ({
      path: path.join(root, "src/trusted-validator.ts"),
    }));
  },
};
await esbuild.build({
  ...common,
  entryPoints: {
    "iris-prime": path.join(root, "src/iris-prime.ts"),
    "iris-mcp": path.join(root, "src/iris-mcp.ts"),
  },
  plugins: [trustedValidator],
  minify: true,
});

// The typed API of `./iris-prime`, for editors and for users' own type checks.
const tsc = path.join(root, "..", "node_modules", ".bin", "tsc");
const dts = spawnSync(tsc, ["-p", path.join(root, "tsconfig.dts.json"), "--outDir", outdir], { stdio: "inherit" });
if (dts.status !== 0) process.exit(dts.status ?? 1);

// The Python runner and its iris_prime module: standard library only, copied as they are.
fs.mkdirSync(path.join(outdir, "python"), { recursive: true });
for (const name of ["runner.py", "iris_prime.py"]) {
  fs.copyFileSync(path.join(root, "python", name), path.join(outdir, "python", name));
}

// esbuild's API runs its native binary; ship it beside the bundles.
const binary = fileURLToPath(import.meta.resolve("@esbuild/linux-" + (process.arch === "arm64" ? "arm64" : "x64") + "/bin/esbuild"));
fs.copyFileSync(binary, path.join(outdir, "esbuild"));
fs.chmodSync(path.join(outdir, "esbuild"), 0o755);
console.log(`sandbox assets built in ${outdir}`);
