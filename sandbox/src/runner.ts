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
 *
 * Kept state (`"keep": true` in the request, see compile.ts): the runner does not exit after
 * its result. It stops what the execution left running (timers, immediates, sockets,
 * servers, child processes, worker threads), then sends its result frame, which then
 * carries the request's `nonce` and `idle` (false: something could not be stopped), and
 * waits for the next request, one JSON line on the request pipe (see startKeeping). It
 * compiles each program itself (compileHere): top-level declarations become bindings of
 * globalThis, so the next execution sees them.
 */
import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { createHook } from "node:async_hooks";
import * as os from "node:os";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import * as vm from "node:vm";
import type { CompiledProgram, CompileFailure } from "./compile";

// The runner's own tools, taken before any user code runs: kept state lets the code
// replace globals (`const JSON = ...` becomes a global), and the runner must still work.
const stringify = JSON.stringify;
const parseJson = JSON.parse;
const exit = process.exit.bind(process);
const EVENTS_FD = 3;
const INIT = Symbol.for("iris.init");
const SHUTDOWN = Symbol.for("iris.shutdown");
const CLOSE_GRACE_MS = 2000;
/** How long a kept runner waits for the worker threads of an execution to stop. */
const WORKER_STOP_MS = 2000;

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
  /** Keep this process (and its globals) for the next request. */
  keep?: boolean;
  /** Echoed in a kept execution's result frame: a frame without it is not the runner's. */
  nonce?: string;
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
  /** ``lead``: text before the frame (a kept runner's result starts a line of its own). */
  return (frame: Record<string, unknown>, lead = ""): void => {
    const bytes = Buffer.from(lead + stringify(frame) + "\n", "utf8");
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
        if (code === "EPIPE" || code === "EBADF") exit(70); // the host is gone
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
        exit(1);
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
    const json = stringify(
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
    return stringify(`[unserializable result: ${(err as Error).message}]`);
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

// -- kept state ------------------------------------------------------------------------------

/** What a kept runner must stop when an execution ends: its timers and immediates (seen
 *  through async_hooks, whoever created them: setTimeout, node:timers/promises...), the
 *  handles it opened, and its worker threads. */
const timeouts = new Set<NodeJS.Timeout>();
const immediates = new Set<NodeJS.Immediate>();
const workers = new Set<{ terminate(): Promise<number> }>();
let baselineHandles = new Set<unknown>();
let keeping = false;
/** Where requests come from: stdin, or for a kept runner the host's copy of it. */
let requestFd = 0;
/** The host's copy of the request pipe (local: runner.py's launcher; E2B: the kept runner's
 *  script); where it is absent, a kept runner's code shares stdin with the requests. */
const REQUESTS_FD = 4;
/** What the request pipe had past the last request's line. */
let requestBuffer = Buffer.alloc(0);
let resolveJob: (() => void) | null = null;

const timerHook = createHook({
  init(_id, type, _trigger, resource) {
    if (type === "Timeout") timeouts.add(resource as NodeJS.Timeout);
    else if (type === "Immediate") immediates.add(resource as NodeJS.Immediate);
  },
});

function startKeeping(): void {
  if (keeping) return;
  keeping = true;
  // The code's stdin is empty, as in a fresh run (whose host closes it after the request):
  // not the request pipe, open between requests, where reading it would wait for the time
  // limit. Closed, fd 0 is the lowest free descriptor: /dev/null takes it.
  if (sameFile(0, REQUESTS_FD)) {
    fs.closeSync(0);
    fs.openSync("/dev/null", "r");
    requestFd = REQUESTS_FD;
  }
  baselineHandles = new Set(activeHandles());
  const threads = createRequire(import.meta.url)("node:worker_threads") as {
    Worker: new (...args: unknown[]) => { terminate(): Promise<number>; once(e: string, f: () => void): void };
  };
  const Original = threads.Worker;
  class TrackedWorker extends Original {
    constructor(...args: unknown[]) {
      super(...args);
      workers.add(this);
      this.once("exit", () => workers.delete(this));
    }
  }
  threads.Worker = TrackedWorker;
  syncBuiltinESMExports();
  // While a job runs its timers are watched; an empty event loop ends the job (as a
  // fresh process would exit, nothing left to do).
  process.on("beforeExit", () => {
    if (currentRequest !== null && !finished) void finish({ t: "result", ok: true, value: null }, 0);
  });
}

function sameFile(a: number, b: number): boolean {
  try {
    const [x, y] = [fs.fstatSync(a), fs.fstatSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

function activeHandles(): unknown[] {
  const get = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles;
  return typeof get === "function" ? get.call(process) : [];
}

/** Stop what the execution left behind; false when something may still run. */
async function quiesce(): Promise<boolean> {
  const clearAll = (): void => {
    for (const timer of timeouts) clearTimeout(timer);
    for (const immediate of immediates) clearImmediate(immediate);
    timeouts.clear();
    immediates.clear();
  };
  clearAll();
  for (const handle of activeHandles()) {
    if (baselineHandles.has(handle) || handle === process.stdout || handle === process.stderr) continue;
    const h = handle as {
      removeAllListeners?: () => void;
      kill?: (signal: string) => void;
      destroy?: () => void;
      close?: () => void;
      unref?: () => void;
    };
    try {
      h.removeAllListeners?.();
      if (typeof h.kill === "function") h.kill("SIGKILL");
      else if (typeof h.destroy === "function") h.destroy();
      else if (typeof h.close === "function") h.close();
      h.unref?.();
    } catch {
      // a handle half-closed already: nothing more to do
    }
  }
  let idle = true;
  if (workers.size > 0) {
    const stopping = Promise.allSettled([...workers].map((w) => w.terminate()));
    const waited = await Promise.race([
      stopping.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), WORKER_STOP_MS).unref()),
    ]);
    idle = waited && workers.size === 0;
  }
  // Close events run now, not in the next execution; then nothing of this one is left.
  await new Promise((resolve) => setImmediate(resolve));
  clearAll();
  return idle;
}

/**
 * The next request: one line on stdin (or, for a fresh runner, whose host closes stdin after
 * its request, everything up to the end); null at an end with nothing before it.
 *
 * Read blocking, straight from the descriptor (requestFd), never through process.stdin:
 * libuv would make the pipe non-blocking, and the jail's user may not reopen the host's pipe
 * (/proc/self/fd/0 is EACCES), so every request would then wait for a polling round (a
 * millisecond) to be seen. A pipe made non-blocking anyway (a kept runner's code opening
 * process.stdin where the host gives no copy at REQUESTS_FD) is polled (EAGAIN below).
 */
function readRequestSync(): string | null {
  const chunk = Buffer.alloc(64 * 1024);
  for (;;) {
    const newline = requestBuffer.indexOf(10);
    if (newline >= 0) {
      const line = requestBuffer.subarray(0, newline).toString("utf8");
      requestBuffer = requestBuffer.subarray(newline + 1);
      return line;
    }
    let n: number;
    try {
      n = fs.readSync(requestFd, chunk, 0, chunk.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EAGAIN") {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
        continue;
      }
      throw err;
    }
    if (n === 0) {
      const rest = requestBuffer.toString("utf8");
      requestBuffer = Buffer.alloc(0);
      return rest.length > 0 ? rest : null;
    }
    requestBuffer = Buffer.concat([requestBuffer, chunk.subarray(0, n)]);
  }
}

// -- one execution ---------------------------------------------------------------------------

async function finish(frame: Record<string, unknown>, code: number): Promise<void> {
  if (finished) return;
  finished = true;
  const end = now(); // the code's time ends here, not after the tools close
  await closeTools();
  if (!keeping) {
    writeFrame({ ...frame, at: end });
    exit(code);
    return;
  }
  timerHook.disable();
  const idle = await quiesce();
  // A line of the code's own left open on fd 3 must not swallow the result: start afresh.
  writeFrame({ ...frame, at: end, nonce: currentRequest?.nonce, idle }, "\n");
  currentRequest = null;
  const done = resolveJob;
  resolveJob = null;
  done?.();
}

function fail(err: unknown): void {
  if (finished || currentRequest === null) return;
  void finish({ t: "result", ok: false, error: describeError(err, currentRequest) }, 1);
}

async function run(request: RunRequest): Promise<void> {
  request.cwd ??= process.cwd();
  request.workdir = path.resolve(request.cwd, request.workdir ?? path.join(os.homedir(), ".iris", "exec"));
  // The MCP client loads only for code that names the tools' module: loading it costs about
  // as much CPU as the rest of a runner's start. (Code that reaches the tools another way
  // still gets it, loaded by iris-prime on the first call; a kept runner loads it once.)
  if ((request.code ?? request.source ?? "").includes("iris-prime")) {
    await import(irisMcpUrl).catch(() => undefined);
  }
  outputLimit = typeof request.outputLimit === "number" ? request.outputLimit : Infinity;
  outputBytes = 0;
  finished = false;
  currentRequest = request;

  let code = request.code;
  let script: vm.Script | null = null;
  if (code === undefined) {
    // No host-side compiler (a kept runner, a remote sandbox): compile here.
    const compiled = await compileHere(request, keeping);
    if (!compiled.ok) return void (await finish({ t: "result", ok: false, error: compiled.error }, 1));
    code = compiled.code;
    request.specifiers = compiled.specifiers;
    if (compiled.script) script = toScript(code, path.join(request.workdir, request.filename));
    if (compiled.script && script === null) {
      // Not a script V8 takes (something the stripping did not foresee): a module, as ever.
      const module = await compileHere(request, false);
      if (!module.ok) return void (await finish({ t: "result", ok: false, error: module.error }, 1));
      code = module.code;
      request.specifiers = module.specifiers;
    }
  }

  if (init !== null) {
    init({
      projectId: request.projectId,
      sessionId: request.sessionId,
      context: request.context,
      tools: request.tools ?? null,
    });
  }
  process.chdir(request.cwd);
  const userRequire = createRequire(path.join(request.cwd, "index.js"));
  type Main = (require: NodeJS.Require, filename: string, dirname: string) => Promise<unknown>;
  const url = script === null ? writeModule(request, code ?? "") : null;
  if (keeping) timerHook.enable();
  writeFrame({ t: "start", at: now() });
  const main = url === null
    ? (script!.runInThisContext() as Main)
    : ((await import(url)) as { default: Main }).default;
  const value = await main(userRequire, path.join(request.cwd, request.filename), request.cwd);
  await finish({ t: "result", ok: true, value: serialize(value) }, 0);
}

/** Compile in this process (see RunRequest.code). ``script``: a kept runner's script, when
 *  the program allows (compile.ts). */
async function compileHere(request: RunRequest, script: boolean): Promise<CompiledProgram | CompileFailure> {
  compiler ??= (await import(pathToFileURL(path.join(assetsDir, "compile.mjs")).href)) as typeof import("./compile");
  // esbuild's own binary is in the assets; its module reads where when it first loads
  // (during a compile). Ours, whatever the code of a kept runner set there; and the code's
  // environment is given back as it was.
  const own = process.env.ESBUILD_BINARY_PATH;
  process.env.ESBUILD_BINARY_PATH = path.join(assetsDir, "esbuild");
  try {
    const compiled = await compiler.compile(request.source ?? "", {
      language: request.language ?? "typescript",
      cwd: request.cwd ?? process.cwd(),
      irisPrimeUrl,
      filename: request.filename,
      keep: request.keep === true,
      script,
    });
    // A kept runner's processes but itself are killed after each execution: esbuild's too
    // (started only for what a script cannot be).
    if (keeping && !(compiled.ok && compiled.script)) await compiler.stopCompiler();
    return compiled;
  } finally {
    if (own === undefined) delete process.env.ESBUILD_BINARY_PATH;
    else process.env.ESBUILD_BINARY_PATH = own;
  }
}

const importModuleDynamically = vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;

/** Node 20 says once, on the first import from a script with this loader option, that the
 *  option is experimental: said to no one (it would be the code's stderr), when the runner
 *  starts keeping, before any code runs (code may make process.emitWarning its own). */
async function readyScripts(): Promise<void> {
  const emit = process.emitWarning;
  process.emitWarning = () => undefined;
  try {
    const probe = new vm.Script('import("node:path")', { filename: path.join(assetsDir, "probe.js"), importModuleDynamically });
    await (probe.runInThisContext() as Promise<unknown>);
  } finally {
    process.emitWarning = emit;
  }
}

/** A kept runner's compiled script, or null when V8 does not take it. Its dynamic imports
 *  resolve as a module's at ``filename`` would (its directory, the same loader). */
function toScript(code: string, filename: string): vm.Script | null {
  try {
    return new vm.Script(code, { filename, importModuleDynamically });
  } catch (err) {
    if (err instanceof SyntaxError) return null;
    throw err;
  }
}

/** The compiled module, written where the runner's (not the user's) files go; its URL. */
function writeModule(request: RunRequest, code: string): string {
  const workdir = request.workdir as string;
  fs.mkdirSync(workdir, { recursive: true });
  const modulePath = path.join(workdir, request.filename.replace(/\.[cm]?[jt]s$/, "") + ".mjs");
  try {
    fs.writeFileSync(modulePath, code);
  } catch (err) {
    if (!keeping) throw err;
    // The runner's directory, not the user's, which the code may have filled: emptied as a
    // fresh runner's is (earlier modules are loaded already).
    for (const entry of fs.readdirSync(workdir)) fs.rmSync(path.join(workdir, entry), { recursive: true, force: true });
    fs.writeFileSync(modulePath, code);
  }
  // Each execution's module is new to the loader (it caches by URL).
  return pathToFileURL(modulePath).href + (keeping ? `?run=${++runs}` : "");
}

let compiler: typeof import("./compile") | null = null;
let runs = 0;
let init: ((info: unknown) => void) | null = null;

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
  // The runner's alone: user code cannot re-initialize the module (iris-prime.ts).
  const registry = globalThis as Record<symbol, unknown>;
  const found = registry[INIT];
  delete registry[INIT];
  if (typeof found === "function") init = found as (info: unknown) => void;
  writeFrame({ t: "ready" });

  const first = readRequestSync();
  if (first === null) exit(0);
  let request = parseJson(first as string) as RunRequest;
  if (request.keep === true) {
    startKeeping();
    await readyScripts();
  }
  for (;;) {
    const job = new Promise<void>((resolve) => (resolveJob = resolve));
    run(request).catch(fail);
    await job;
    // Idle: nothing of the last execution runs while this blocks (and the host stops
    // this process until the next request anyway).
    const line = readRequestSync();
    if (line === null) exit(0);
    request = parseJson(line as string) as RunRequest;
    request.keep = true;
  }
}

main().catch((err: unknown) => {
  if (currentRequest !== null) fail(err);
  else exit(70);
});
