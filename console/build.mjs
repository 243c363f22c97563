// Builds the web console (console/src, TypeScript + CodeMirror 6) into the assets:
// console/index.html, console/app.js, console/app.css. The local server and the console
// Lambda function serve these files at `/` (layers/core/iris_exec/http/console.py).
import * as esbuild from "esbuild";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.dirname(fileURLToPath(import.meta.url));
const assets = process.argv[2] ?? path.join(root, "..", "layers", "core", "iris_exec", "assets");
const outdir = path.join(assets, "console");
fs.mkdirSync(outdir, { recursive: true });

await esbuild.build({
  entryPoints: { app: path.join(root, "src", "main.ts") },
  bundle: true,
  platform: "browser",
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  logLevel: "warning",
  outdir,
});
fs.copyFileSync(path.join(root, "index.html"), path.join(outdir, "index.html"));
fs.copyFileSync(path.join(root, "app.css"), path.join(outdir, "app.css"));
console.log(`console built in ${outdir}`);
