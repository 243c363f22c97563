/**
 * Long-lived compile service. The host starts it once and sends it one JSON
 * request per line on stdin; it answers one JSON line per request on stdout.
 *
 * Loading the parser and starting esbuild costs about 120 ms, a warm compile
 * about 1.5 ms: that is why compiling happens here and not in each fresh Node
 * process that runs user code.
 */
import * as readline from "node:readline";
import { compile, type Language } from "./compile";

interface CompileRequest {
  id: number;
  source: string;
  language: Language;
  cwd: string;
  irisPrimeUrl: string;
  filename: string;
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
let pending = 0;
let closing = false;
const settle = () => {
  pending -= 1;
  if (closing && pending === 0) process.exit(0);
};

lines.on("line", (line) => {
  let request: CompileRequest;
  try {
    request = JSON.parse(line) as CompileRequest;
  } catch {
    process.stdout.write(JSON.stringify({ id: null, ok: false, fatal: "request is not JSON" }) + "\n");
    return;
  }
  pending += 1;
  compile(request.source, request)
    .then((result) => process.stdout.write(JSON.stringify({ id: request.id, ...result }) + "\n"))
    .catch((err: unknown) =>
      process.stdout.write(
        JSON.stringify({ id: request.id, ok: false, fatal: err instanceof Error ? err.message : String(err) }) + "\n",
      ),
    )
    .finally(settle);
});

lines.on("close", () => {
  closing = true;
  if (pending === 0) process.exit(0);
});
process.stdout.write(JSON.stringify({ ready: true }) + "\n");
