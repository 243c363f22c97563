/**
 * Long-lived compile service. The host starts it once and sends it one JSON
 * request per line on stdin; it answers one JSON line per request on stdout.
 *
 * Loading the parser and starting esbuild costs about 120 ms, a warm compile
 * about 1.5 ms: that is why compiling happens here and not in each fresh Node
 * process that runs user code.
 *
 * Every project shares this service, and the parser's cost depends on the input's
 * shape: a few hundred bytes of nested TypeScript (`<T>(<T>(…`) make it backtrack for
 * minutes. So parsing runs in a pool of worker threads, each parse has a deadline, and
 * a parse past its deadline is stopped (its worker terminated and replaced) and answered
 * as that caller's SyntaxError. The main thread only moves messages and runs esbuild
 * (its own process, linear in the input), so it always answers.
 */
import * as readline from "node:readline";
import { Worker, isMainThread, parentPort } from "node:worker_threads";
import { rewrite, transform, type CompileOptions, type Language, type Rewritten, type CompileFailure } from "./compile";

interface CompileRequest {
  id: number;
  source: string;
  language: Language;
  cwd: string;
  irisPrimeUrl: string;
  filename: string;
}

interface Job {
  request: CompileRequest;
  resolve: (answer: Rewritten | CompileFailure) => void;
}

/** Parser threads (IRIS_COMPILE_WORKERS) and each parse's deadline (IRIS_COMPILE_DEADLINE_MS). */
const WORKERS = Math.max(1, Number(process.env.IRIS_COMPILE_WORKERS ?? 2) || 2);
const DEADLINE_MS = Math.max(50, Number(process.env.IRIS_COMPILE_DEADLINE_MS ?? 2000) || 2000);
/** A parse's memory: a parse that needs more fails as the caller's SyntaxError. */
const WORKER_HEAP_MB = 256;

function tooComplex(request: CompileRequest, why: string): CompileFailure {
  const message = `The code could not be compiled: ${why}`;
  return { ok: false, error: { name: "SyntaxError", message, stack: `SyntaxError: ${message}\n    at ${request.filename}` } };
}

class Slot {
  private worker: Worker;
  job: Job | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly onIdle: (slot: Slot) => void) {
    this.worker = this.spawn();
  }

  private spawn(): Worker {
    const worker = new Worker(new URL(import.meta.url), {
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
      stdout: false,
      stderr: false,
    });
    worker.unref();
    worker.on("message", (answer: Rewritten | CompileFailure) => this.settle(answer));
    worker.on("error", (err: Error) => {
      // Out of memory, or a crash: only the job it ran fails.
      this.replace(worker);
      this.settle(this.job ? tooComplex(this.job.request, `the parser failed (${err.message})`) : null);
    });
    worker.on("exit", () => {
      if (this.worker === worker) {
        this.replace(worker);
        this.settle(this.job ? tooComplex(this.job.request, "the parser stopped") : null);
      }
    });
    return worker;
  }

  private replace(old: Worker): void {
    if (this.worker !== old) return;
    this.worker = this.spawn();
    void old.terminate();
  }

  run(job: Job): void {
    this.job = job;
    this.timer = setTimeout(() => {
      // Too slow: stop this parse (terminate interrupts even a loop that never yields).
      this.replace(this.worker);
      this.settle(tooComplex(job.request, `it did not parse within ${DEADLINE_MS / 1000} s (too deeply nested?)`));
    }, DEADLINE_MS);
    const { source, ...options } = job.request;
    this.worker.postMessage({ source, options });
  }

  private settle(answer: Rewritten | CompileFailure | null): void {
    const job = this.job;
    if (job === null || answer === null) return;
    this.job = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    job.resolve(answer);
    this.onIdle(this);
  }
}

function serve(): void {
  const queue: Job[] = [];
  const idle: Slot[] = [];
  const next = (slot: Slot) => {
    const job = queue.shift();
    if (job) slot.run(job);
    else idle.push(slot);
  };
  for (let i = 0; i < WORKERS; i++) idle.push(new Slot(next));
  const parse = (request: CompileRequest) =>
    new Promise<Rewritten | CompileFailure>((resolve) => {
      const job = { request, resolve };
      const slot = idle.pop();
      if (slot) slot.run(job);
      else queue.push(job);
    });

  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  let pending = 0;
  let closing = false;
  const settle = () => {
    pending -= 1;
    if (closing && pending === 0) process.exit(0);
  };
  const answer = (id: number | null, body: object) =>
    process.stdout.write(JSON.stringify({ id, ...body }) + "\n");

  lines.on("line", (line) => {
    let request: CompileRequest;
    try {
      request = JSON.parse(line) as CompileRequest;
    } catch {
      answer(null, { ok: false, fatal: "request is not JSON" });
      return;
    }
    pending += 1;
    parse(request)
      .then((rewritten) => (rewritten.ok ? transform(rewritten, request) : rewritten))
      .then((result) => answer(request.id, result))
      .catch((err: unknown) => answer(request.id, { ok: false, fatal: err instanceof Error ? err.message : String(err) }))
      .finally(settle);
  });

  lines.on("close", () => {
    closing = true;
    if (pending === 0) process.exit(0);
  });
  answer(null, { ready: true });
}

if (isMainThread) {
  serve();
} else {
  // A parser thread: one parse per message, answered with what rewrite() returns.
  parentPort?.on("message", ({ source, options }: { source: string; options: CompileOptions }) => {
    let result: Rewritten | CompileFailure;
    try {
      result = rewrite(source, options);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      result = { ok: false, error: { name: "SyntaxError", message, stack: `SyntaxError: ${message}` } };
    }
    parentPort?.postMessage(result);
  });
}
