/**
 * Runs one execution in a fresh Node process inside the sandbox.
 *
 * Life of a runner: it starts before any request exists (the host keeps one
 * warm per sandbox), loads what every execution needs, says `ready`, then
 * reads one request from stdin (until EOF), runs the user's module and reports
 * on the event channel (file descriptor 3, JSON lines):
 *
 *   {"t":"ready"}                          warm, waiting for the request
 *   {"t":"start"}                          the user's code starts now
 *   {"t":"out","s":"o"|"e","d":"text"}     console / process.stdout|stderr output, in program order
 *   {"t":"result","ok":true,"value":"<json>"|null}
 *   {"t":"result","ok":false,"error":{"name","message","stack"}}
 *   {"t":"exit","code":N}                  the process is exiting (e.g. process.exit() from user code)
 *
 * The result never travels on stdout: whatever the program prints, it cannot
 * make the host believe in another result. (A program that writes to fd 3 on
 * purpose can only change its own result, which it controls anyway.)
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

const EVENTS_FD = 3;
const INIT = Symbol.for("iris.init");
const SHUTDOWN = Symbol.for("iris.shutdown");
const CLOSE_GRACE_MS = 2000;

interface RunRequest {
  /** Compiled module (from the host's compiler); or `source` to compile here. */
  code?: string;
  source?: string;
  language?: "typescript" | "javascript";
  specifiers?: Record<string, string>;
  projectId: string;
  sessionId: string | null;
  context: Record<string, unknown>;
  /** The user's working directory (default: where the runner was started). */
  cwd?: string;
  /** Directory for the compiled module, not the user's (default: ~/.iris/exec; relative
   *  to cwd). */
  workdir?: string;
  filename: string;
  tools?: Record<string, unknown>;
  /** Remote sandboxes: stop at this many bytes of output (the local host counts itself). */
  outputLimit?: number;
}

interface ErrorInfo {
  name: string;
  message: string;
  stack: string;
}

const assetsDir = path.dirname(new URL(import.meta.url).pathname);
const irisPrimeUrl = pathToFileURL(path.join(assetsDir, "iris-prime.mjs")).href;
const irisMcpUrl = pathToFileURL(path.join(assetsDir, "iris-mcp.mjs")).href;

const writeFrame = (() => {
  const wait = new Int32Array(new SharedArrayBuffer(4));
  return (frame: Record<string, unknown>): void => {
    const bytes = Buffer.from(JSON.stringify(frame) + "\n", "utf8");
    let offset = 0;
    while (offset < bytes.length) {
      try {
        offset += fs.writeSync(EVENTS_FD, bytes, offset, bytes.length - offset);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EAGAIN") {
          Atomics.wait(wait, 0, 0, 1);
          continue;
        }
        if (code === "EPIPE" || code === "EBADF") process.exit(70); // the host is gone
        throw err;
      }
    }
  };
})();

const now = (): number => performance.timeOrigin + performance.now();
let outputLimit = Infinity;
let outputBytes = 0;

function captureStream(stream: NodeJS.WriteStream, tag: "o" | "e"): void {
  const write = (chunk: unknown, encoding?: unknown, callback?: unknown): boolean => {
    let text: string;
    if (typeof chunk === "string") {
      text = typeof encoding === "string" && encoding !== "utf8" && encoding !== "utf-8"
        ? Buffer.from(chunk, encoding as BufferEncoding).toString("utf8")
        : chunk;
    } else if (chunk instanceof Uint8Array) {
      text = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("utf8");
    } else {
      text = String(chunk);
    }
    if (text.length > 0) {
      outputBytes += Buffer.byteLength(text);
      if (outputBytes > outputLimit) {
        // Keep what fits, say why, and stop: nothing past the cap is worth producing.
        const room = outputLimit - (outputBytes - Buffer.byteLength(text));
        if (room > 0) writeFrame({ t: "out", s: tag, d: Buffer.from(text).subarray(0, room).toString("utf8") });
        finished = true;
        writeFrame({ t: "limit", kind: "output", at: now() });
        process.exit(1);
      }
      writeFrame({ t: "out", s: tag, d: text });
    }
    const done = typeof encoding === "function" ? encoding : callback;
    if (typeof done === "function") queueMicrotask(() => (done as () => void)());
    return true;
  };
  (stream as unknown as { write: typeof write }).write = write;
}

/** JSON for the `=== Results ===` section: survives cycles, BigInt, Map and Set. */
function serialize(value: unknown): string | null {
  if (value === undefined) return null;
  const seen = new WeakSet<object>();
  try {
    const json = JSON.stringify(
      value,
      (_key, v: unknown) => {
        if (typeof v === "bigint") return v.toString();
        if (typeof v === "function") return `[Function ${v.name || "anonymous"}]`;
        if (typeof v === "symbol") return v.toString();
        if (v instanceof Map) return Object.fromEntries(v);
        if (v instanceof Set) return [...v];
        if (v instanceof Error) return { name: v.name, message: v.message };
        if (v !== null && typeof v === "object") {
          if (seen.has(v)) return "[Circular]";
          seen.add(v);
        }
        return v;
      },
      2,
    );
    return json === undefined ? null : json;
  } catch (err) {
    return JSON.stringify(`[unserializable result: ${(err as Error).message}]`);
  }
}

const MAIN_FRAME = /(?:file:\/\/)?\/[^\s)]*\/(main\.[cm]?[jt]s):(\d+):(\d+)/g;
const HEADER_LINES = 1; // see compile.ts

function cleanStack(stack: string, workdir: string): string {
  const lines = stack.split("\n");
  const kept = lines.filter(
    (line, i) =>
      i === 0 ||
      !/^\s+at /.test(line) ||
      !(line.includes("node:internal") || line.includes(assetsDir) || line.includes("<anonymous>")),
  );
  return kept
    .join("\n")
    .replace(MAIN_FRAME, (_m, file: string, line: string, col: string) => `${file}:${Number(line) - HEADER_LINES}:${col}`)
    .split(workdir + "/")
    .join("")
    .replace(/at (?:Module\.)?__iris_main__ \(([^)]*)\)/g, "at $1");
}

function describeError(err: unknown, request: RunRequest | null): ErrorInfo {
  const workdir = request?.workdir ?? "/nonexistent";
  if (err instanceof Error || (err !== null && typeof err === "object" && "message" in err)) {
    const e = err as Error & { code?: string };
    let name = e.name || "Error";
    let message = String(e.message);
    if (e.code === "ERR_MODULE_NOT_FOUND" || e.code === "MODULE_NOT_FOUND") {
      name = "ModuleNotFoundError";
      const m = /Cannot find (?:module|package) '([^']+)'/.exec(message);
      const target = m ? m[1] : "";
      const wanted = request?.specifiers?.[target] ?? request?.specifiers?.[pathToFileURL(target).href] ?? target;
      message = `Cannot find module '${wanted}'`;
      return { name, message, stack: `${name}: ${message}\n    at ${request?.filename ?? "main.ts"}` };
    }
    const rawStack = typeof e.stack === "string" ? e.stack : `${name}: ${message}`;
    return { name, message, stack: cleanStack(rawStack, workdir) };
  }
  const message = typeof err === "string" ? err : (serialize(err) ?? String(err));
  return { name: "Error", message, stack: `Uncaught ${message}` };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

let currentRequest: RunRequest | null = null;
let finished = false;

async function closeTools(): Promise<void> {
  const shutdown = (globalThis as Record<symbol, unknown>)[SHUTDOWN];
  if (typeof shutdown !== "function") return;
  await Promise.race([
    (shutdown as () => Promise<void>)().catch(() => undefined),
    new Promise((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref()),
  ]);
}

async function finish(frame: Record<string, unknown>, code: number): Promise<never> {
  if (!finished) {
    finished = true;
    const end = now(); // the code's time ends here, not after the tools close
    await closeTools();
    writeFrame({ ...frame, at: end });
  }
  process.exit(code);
}

function fail(err: unknown): void {
  if (finished) return;
  void finish({ t: "result", ok: false, error: describeError(err, currentRequest) }, 1);
}

async function main(): Promise<void> {
  captureStream(process.stdout, "o");
  captureStream(process.stderr, "e");
  process.on("uncaughtException", fail);
  process.on("unhandledRejection", fail);
  process.on("exit", (code) => {
    if (!finished) {
      finished = true;
      writeFrame({ t: "exit", code, at: now() });
    }
  });

  // Warm-up: everything that does not depend on the request happens before `ready`.
  await import(irisPrimeUrl);
  writeFrame({ t: "ready" });

  const request = JSON.parse(await readStdin()) as RunRequest;
  request.cwd ??= process.cwd();
  request.workdir = path.resolve(request.cwd, request.workdir ?? path.join(os.homedir(), ".iris", "exec"));
  // The MCP client loads only for code that names the tools' module: loading it costs about
  // as much CPU as the rest of a runner's start. (Code that reaches the tools another way
  // still gets it, loaded by iris-prime on the first call.)
  if ((request.code ?? request.source ?? "").includes("iris-prime")) {
    await import(irisMcpUrl).catch(() => undefined);
  }
  if (typeof request.outputLimit === "number") outputLimit = request.outputLimit;
  currentRequest = request;

  let code = request.code;
  let specifiers = request.specifiers ?? {};
  if (code === undefined) {
    // No host-side compiler (e.g. a remote sandbox): compile here.
    const { compile } = (await import(pathToFileURL(path.join(assetsDir, "compile.mjs")).href)) as typeof import("./compile");
    const compiled = await compile(request.source ?? "", {
      language: request.language ?? "typescript",
      cwd: request.cwd,
      irisPrimeUrl,
      filename: request.filename,
    });
    if (!compiled.ok) return void (await finish({ t: "result", ok: false, error: compiled.error }, 1));
    code = compiled.code;
    specifiers = compiled.specifiers;
    request.specifiers = specifiers;
  }

  fs.mkdirSync(request.workdir, { recursive: true });
  const modulePath = path.join(request.workdir, request.filename.replace(/\.[cm]?[jt]s$/, "") + ".mjs");
  fs.writeFileSync(modulePath, code ?? "");

  const init = (globalThis as Record<symbol, unknown>)[INIT];
  if (typeof init === "function") {
    (init as (info: unknown) => void)({
      projectId: request.projectId,
      sessionId: request.sessionId,
      context: request.context,
      tools: request.tools ?? null,
    });
  }
  process.chdir(request.cwd);
  const userRequire = createRequire(path.join(request.cwd, "index.js"));

  writeFrame({ t: "start", at: now() });
  const mod = (await import(pathToFileURL(modulePath).href)) as {
    default: (require: NodeJS.Require, filename: string, dirname: string) => Promise<unknown>;
  };
  const value = await mod.default(userRequire, path.join(request.cwd, request.filename), request.cwd);
  await finish({ t: "result", ok: true, value: serialize(value) }, 0);
}

main().catch(fail);
