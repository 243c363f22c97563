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
fs.rmSync(outdir, { recursive: true, force: true });
fs.mkdirSync(outdir, { recursive: true });

const built = await esbuild.build({
  metafile: true,
  entryPoints: { app: path.join(root, "src", "main.ts") },
  bundle: true,
  platform: "browser",
  format: "esm",
  target: "es2022",
  minify: true,
  // Each language's grammar is its own file, loaded when the editor first needs it.
  splitting: true,
  chunkNames: "[name]-[hash]",
  legalComments: "none",
  logLevel: "warning",
  outdir,
});
// The files app.js imports statically are fetched with it, not after it has been parsed.
const app = Object.entries(built.metafile.outputs).find(([, out]) => out.entryPoint?.endsWith("main.ts"));
const preloads = app[1].imports
  .filter((i) => i.kind === "import-statement")
  .map((i) => `<link rel="modulepreload" href="console/${path.basename(i.path)}">`)
  .join("\n");
const page = fs.readFileSync(path.join(root, "index.html"), "utf8").replace("<!-- preloads -->", preloads);
fs.writeFileSync(path.join(outdir, "index.html"), page);
fs.copyFileSync(path.join(root, "app.css"), path.join(outdir, "app.css"));

// The API reference (/docs): Swagger UI's own files, served from here rather than a CDN.
const docs = path.join(assets, "docs");
fs.rmSync(docs, { recursive: true, force: true });
fs.mkdirSync(docs, { recursive: true });
const swagger = path.join(root, "..", "node_modules", "swagger-ui-dist");
for (const file of ["swagger-ui-bundle.js", "swagger-ui.css"]) {
  fs.copyFileSync(path.join(swagger, file), path.join(docs, file));
}
for (const file of ["index.html", "docs.js"]) {
  fs.copyFileSync(path.join(root, "docs", file), path.join(docs, file));
}
console.log(`console built in ${outdir}`);
