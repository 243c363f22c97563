// The client: one class, fetch-based, for Node 20+ and browsers.
import { apiError, IrisApiError, IrisConnectionError, retryAfter } from './errors.js';
import { SseParser } from './sse.js';
import {
  FINAL_STATUSES,
  type Closed,
  type ExecuteOptions,
  type ExecuteResponse,
  type Execution,
  type ExecutionPage,
  type ListOptions,
  type Sandbox,
  type SandboxPage,
  type SubmittedExecution,
} from './types.js';

export const DEFAULT_BASE_URL = 'http://127.0.0.1:8000';
/** A synchronous execution may run 5 minutes (the service's default limit): wait a bit longer. */
const DEFAULT_TIMEOUT_MS = 330_000;
/** The events stream sends a heartbeat every 15 s while nothing happens. */
const STREAM_IDLE_TIMEOUT_MS = 60_000;

export type LogStream = 'auto' | 'sse' | 'poll';

export interface ClientOptions {
  /** Default: the `IRIS_API_KEY` environment variable (in Node). */
  apiKey?: string;
  /** Default: `IRIS_URL`, else http://127.0.0.1:8000. */
  baseUrl?: string;
  /** Per request (default 330 s). */
  timeoutMs?: number;
  /** Retries of a failed request (transport error, 5xx, 429 with Retry-After). Default 2. */
  maxRetries?: number;
  /** A longer `Retry-After` is not waited for. Default 30 s. */
  maxRetryWaitMs?: number;
  /** How `streamLogs` reads: `auto` (SSE, polling where the events route is missing), `sse`, `poll`. */
  logStream?: LogStream;
  /** Polling interval while no new line came. Default 500 ms. */
  pollIntervalMs?: number;
  /** Another fetch (for tests, proxies, or older runtimes). */
  fetch?: typeof fetch;
}

export interface StreamOptions {
  /** Start after this line number (0: from the first line). */
  after?: number;
  signal?: AbortSignal;
}

function env(name: string): string | undefined {
  const process = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return process?.env?.[name] || undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class IrisClient {
  readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly maxRetryWaitMs: number;
  private readonly logStream: LogStream;
  private readonly pollIntervalMs: number;
  private readonly fetch: typeof fetch;
  private sse: boolean;

  constructor(options: ClientOptions = {}) {
    const apiKey = options.apiKey ?? env('IRIS_API_KEY');
    if (!apiKey) throw new TypeError('No API key: pass { apiKey } or set IRIS_API_KEY');
    this.apiKey = apiKey;
    this.baseUrl = (options.baseUrl ?? env('IRIS_URL') ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? 2;
    this.maxRetryWaitMs = options.maxRetryWaitMs ?? 30_000;
    this.logStream = options.logStream ?? 'auto';
    this.pollIntervalMs = options.pollIntervalMs ?? 500;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.sse = this.logStream !== 'poll';
  }

  // -- executions ----------------------------------------------------------------------------

  /** Run code and wait for its answer. A failure of the code is data (`result.success` false
   * and `result.error`), not an exception. */
  async execute(code: string, options: ExecuteOptions = {}): Promise<ExecuteResponse> {
    return (await this.executeRequest(code, options, false)) as ExecuteResponse;
  }

  /** Start code in the asynchronous mode (`async: true`) and return at once; follow it with
   * `streamLogs` and read its answer with `getExecution`. */
  async submit(code: string, options: ExecuteOptions = {}): Promise<SubmittedExecution> {
    return (await this.executeRequest(code, options, true)) as SubmittedExecution;
  }

  /** Status, the log lines after line `after` and, once ended, the answer. */
  async getExecution(
    executionId: string,
    options: { after?: number; limit?: number; signal?: AbortSignal } = {},
  ): Promise<Execution> {
    const params: Record<string, string> = { after: String(options.after ?? 0) };
    if (options.limit !== undefined) params.limit = String(options.limit);
    const path = `/api/iris/executions/${encodeURIComponent(executionId)}`;
    return (await this.request('GET', path, { params, signal: options.signal })) as Execution;
  }

  /** The execution's log lines (`[stdout] ...` / `[stderr] ...`) as they are printed, from
   * line `after + 1`, until it ends. Then `getExecution` has its answer. */
  async *streamLogs(executionId: string, options: StreamOptions = {}): AsyncGenerator<string> {
    const cursor = { after: options.after ?? 0 };
    if (this.sse) yield* this.sseLogs(executionId, cursor, options.signal);
    else yield* this.polledLogs(executionId, cursor, options.signal);
  }

  // -- sandboxes -----------------------------------------------------------------------------

  async getSandbox(sandboxId: string): Promise<Sandbox> {
    return (await this.request('GET', '/api/iris/sandbox', { params: { sandboxId } })) as Sandbox;
  }

  /** The project's sandboxes, newest first (a page: pass `nextCursor` back as `cursor`). */
  async listSandboxes(options: ListOptions = {}): Promise<SandboxPage> {
    const params = pick({ status: options.status, limit: options.limit, cursor: options.cursor });
    return (await this.request('GET', '/api/iris/sandboxes', { params })) as SandboxPage;
  }

  /** Every execution of the project, newest first, kept after its sandbox is gone. */
  async listExecutions(options: ListOptions = {}): Promise<ExecutionPage> {
    const params = pick({
      sandboxId: options.sandboxId, status: options.status, limit: options.limit, cursor: options.cursor,
    });
    return (await this.request('GET', '/api/iris/executions', { params })) as ExecutionPage;
  }

  /** Close one sandbox (closing a closed one is fine). */
  async closeSandbox(sandboxId: string): Promise<Closed> {
    return (await this.request('DELETE', '/api/iris/sandbox', { params: { sandboxId } })) as Closed;
  }

  /** Close every sandbox of the key's project; `closed` says how many. */
  async closeAllSandboxes(): Promise<Closed> {
    return (await this.request('DELETE', '/api/iris/sandbox', { params: { all: 'true' } })) as Closed;
  }

  // -- plumbing ------------------------------------------------------------------------------

  private async executeRequest(
    code: string,
    options: ExecuteOptions,
    background: boolean,
  ): Promise<unknown> {
    const body: Record<string, unknown> = { code };
    const fields = ['language', 'sandboxId', 'sessionId', 'projectId', 'context', 'timeoutMs', 'keepState'] as const;
    for (const field of fields) {
      if (options[field] !== undefined) body[field] = options[field];
    }
    if (background) body.async = true;
    // One key per logical call: every retry of it sends the same one, so it never runs twice.
    const key = options.idempotencyKey ?? `iris-ts-${crypto.randomUUID()}`;
    return this.request('POST', '/api/iris/execute', {
      body,
      headers: { 'Idempotency-Key': key },
      signal: options.signal,
    });
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { Authorization: `Bearer ${this.apiKey}`, ...extra };
  }

  /** Milliseconds to wait before the next attempt, or undefined when not to retry. */
  private retryDelay(attempt: number, response: Response | undefined, retryingOwn: boolean) {
    if (attempt >= this.maxRetries) return undefined;
    const backoff = Math.min(this.maxRetryWaitMs, 500 * 2 ** attempt) * (0.75 + Math.random() / 2);
    if (!response) return backoff;
    const wait = retryAfter(response.headers);
    const waitMs = wait === undefined ? undefined : wait * 1000;
    if (response.status >= 500) return waitMs === undefined ? backoff : Math.min(waitMs, this.maxRetryWaitMs);
    if (response.status === 429 || (response.status === 409 && retryingOwn)) {
      return waitMs === undefined || waitMs > this.maxRetryWaitMs ? undefined : waitMs;
    }
    return undefined;
  }

  private async request(
    method: string,
    path: string,
    init: {
      params?: Record<string, string>;
      body?: unknown;
      headers?: Record<string, string>;
      signal?: AbortSignal | undefined;
    } = {},
  ): Promise<unknown> {
    const query = init.params ? `?${new URLSearchParams(init.params).toString()}` : '';
    const url = this.baseUrl + path + query;
    const headers = this.headers(init.headers);
    if (init.body !== undefined) headers['Content-Type'] = 'application/json';
    for (let attempt = 0; ; attempt++) {
      let response: Response | undefined;
      let failure: unknown;
      try {
        const signals = [AbortSignal.timeout(this.timeoutMs)];
        if (init.signal) signals.push(init.signal);
        const requestInit: RequestInit = { method, headers, signal: anySignal(signals) };
        if (init.body !== undefined) requestInit.body = JSON.stringify(init.body);
        response = await this.fetch(url, requestInit);
        if (response.ok) return await response.json();
      } catch (error) {
        if (init.signal?.aborted) throw error; // the caller's own abort
        failure = error;
        response = undefined;
      }
      const wait = this.retryDelay(attempt, response, attempt > 0);
      if (wait === undefined) {
        if (response) throw await apiError(response);
        throw new IrisConnectionError(`${method} ${url} failed: ${String(failure)}`, {
          cause: failure,
        });
      }
      await response?.body?.cancel().catch(() => undefined);
      await sleep(wait);
    }
  }

  private async *sseLogs(
    executionId: string,
    cursor: { after: number },
    signal: AbortSignal | undefined,
  ): AsyncGenerator<string> {
    const url = `${this.baseUrl}/api/iris/executions/${encodeURIComponent(executionId)}/events`;
    let failures = 0;
    for (;;) {
      let response: Response | undefined;
      const idle = new AbortController();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => idle.abort(new Error('the log stream went silent')), STREAM_IDLE_TIMEOUT_MS);
      };
      try {
        arm();
        const headers = this.headers({ Accept: 'text/event-stream', 'Cache-Control': 'no-cache' });
        if (cursor.after) headers['Last-Event-ID'] = String(cursor.after);
        const signals = signal ? [idle.signal, signal] : [idle.signal];
        response = await this.fetch(url, { headers, signal: anySignal(signals) });
        if (!response.ok) {
          const error = await apiError(response);
          if (this.logStream === 'auto' && (error.status === 403 || error.status === 404)) {
            // A missing route (API Gateway answers 403 for it), unless the execution is missing.
            await this.getExecution(executionId, { limit: 1 });
            this.sse = false;
            yield* this.polledLogs(executionId, cursor, signal);
            return;
          }
          throw error;
        }
        if (!response.body) throw new IrisConnectionError('the log stream has no body');
        const parser = new SseParser();
        const decoder = new TextDecoder();
        const reader = response.body.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            arm();
            for (const event of parser.push(decoder.decode(value, { stream: true }))) {
              if (event.event === 'log') {
                const data = JSON.parse(event.data) as { n: number; line: string };
                if (data.n <= cursor.after) continue; // already yielded before a reconnect
                cursor.after = data.n;
                failures = 0;
                yield data.line;
              } else if (event.event === 'done') {
                return;
              }
            }
          }
        } finally {
          await reader.cancel().catch(() => undefined);
        }
        response = undefined; // the stream ended without `done`: reconnect
      } catch (error) {
        if (signal?.aborted) throw error;
        if (error instanceof IrisApiError) {
          if (error.status < 500 && error.status !== 429) throw error;
        } else {
          response = undefined;
        }
      } finally {
        clearTimeout(timer);
      }
      const wait = this.retryDelay(failures, response, false);
      failures += 1;
      if (wait === undefined) {
        throw new IrisConnectionError(`the log stream of ${executionId} kept failing`);
      }
      await sleep(wait);
    }
  }

  private async *polledLogs(
    executionId: string,
    cursor: { after: number },
    signal: AbortSignal | undefined,
  ): AsyncGenerator<string> {
    for (;;) {
      const options = signal ? { after: cursor.after, signal } : { after: cursor.after };
      const execution = await this.getExecution(executionId, options);
      yield* execution.logs;
      cursor.after = execution.cursor;
      if (FINAL_STATUSES.has(execution.status) && execution.logs.length === 0) return;
      if (execution.logs.length === 0) await sleep(this.pollIntervalMs);
    }
  }
}

/** AbortSignal.any where it exists (Node 20.3+, current browsers), else a combined controller. */
function anySignal(signals: AbortSignal[]): AbortSignal {
  const any = (AbortSignal as { any?: (signals: AbortSignal[]) => AbortSignal }).any;
  if (any) return any(signals);
  const controller = new AbortController();
  for (const signal of signals) {
    if (signal.aborted) controller.abort(signal.reason);
    else signal.addEventListener('abort', () => controller.abort(signal.reason), { once: true });
  }
  return controller.signal;
}

/** The given query parameters, as text. */
function pick(values: Record<string, string | number | undefined>): Record<string, string> {
  const given: Record<string, string> = {};
  for (const [key, value] of Object.entries(values)) if (value !== undefined) given[key] = String(value);
  return given;
}
