// The service's answers, written by hand from docs/CONTRACT.md (the OpenAPI document has no
// response schemas yet). Names are the wire's: camelCase, exactly as the service sends them.

export type Language = 'typescript' | 'javascript' | 'python';

/** `queued` and `running` until it ends `succeeded`, `failed` or `timed_out`. */
export type ExecutionStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out';

export const FINAL_STATUSES: ReadonlySet<ExecutionStatus> = new Set([
  'succeeded',
  'failed',
  'timed_out',
]);

/** Why the code failed: `TypeError`, `TimeoutError`, `OutOfMemoryError`, `OutputLimitError`,
 * `ModuleNotFoundError`, ... */
export interface CodeError {
  message: string;
  name: string;
  stack?: string;
}

export interface ExecutionMetadata {
  timestamp: string;
  sandboxId?: string;
  projectId?: string;
  sessionId?: string | null;
  language?: string;
  executionId?: string;
  /** Milliseconds spent before the code ran (creating the sandbox, starting the runtime). */
  setupTime?: number;
  sandboxCreated?: boolean;
  outputTruncated?: boolean;
  /** With `keepState`: whether the sandbox's live runner was lost since the last such
   *  execution, and why. */
  stateReset?: boolean;
  stateResetReason?: 'timeout' | 'memory' | 'output' | 'exit' | 'crash' | 'busy' | null;
  [extra: string]: unknown;
}

/** What the code did. A failure of the code is data here (`success` false, `error` set). */
export interface ExecutionResult {
  success: boolean;
  output: string;
  executionTime: number;
  logs: string[];
  metadata: ExecutionMetadata;
  error?: CodeError;
}

/** `POST /api/iris/execute`'s 200 answer. */
export interface ExecuteResponse {
  success: boolean;
  result: ExecutionResult;
  sandboxId?: string;
  timestamp: string;
}

/** `POST /api/iris/execute`'s 202 answer in the asynchronous mode. */
export interface SubmittedExecution {
  executionId: string;
  status: ExecutionStatus;
  sandboxId: string;
  timestamp: string;
}

/** `GET /api/iris/executions/{id}`: status, the log lines after `after`, the `cursor` to pass
 * next time, and once ended `success` and `result` (or `reason` when the service ended it). */
export interface Execution {
  executionId: string;
  status: ExecutionStatus;
  sandboxId: string;
  logs: string[];
  cursor: number;
  createdAt?: string | null;
  startedAt?: string | null;
  finishedAt?: string | null;
  success?: boolean;
  result?: ExecutionResult;
  reason?: string;
  timestamp?: string;
}

/** `GET /api/iris/sandbox`: `active` is true only if the sandbox is really alive. */
export interface Sandbox {
  sandboxId: string;
  active: boolean;
  totalActive: number;
  timestamp: string;
  status?: 'running' | 'closed' | 'expired' | 'failed';
  createdAt?: string;
  lastUsedAt?: string;
  expiresAt?: string;
}

/** `DELETE /api/iris/sandbox`: `closed` (a count) only for `all=true`. */
export interface Closed {
  message: string;
  timestamp: string;
  closed?: number;
}

/** The contract's one error shape. */
export interface ErrorBody {
  error: string;
  message: string;
  statusCode: number;
  timestamp: string;
  path: string;
  requestId: string;
  hint?: string;
  reason?: string;
  goneAt?: string | null;
  [extra: string]: unknown;
}

export interface ExecuteOptions {
  language?: Language;
  sandboxId?: string;
  sessionId?: string;
  /** Must be the key's project (else 403); leave it out. */
  projectId?: string;
  context?: Record<string, unknown>;
  timeoutMs?: number;
  /** Run in the sandbox's live runner: its top-level names are there for the next
   *  execution with `keepState` in the same `sandboxId` (see `metadata.stateReset`). */
  keepState?: boolean;
  /** Sent with every attempt of this call; a fresh random one when not given. */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

/** A row of `GET /api/iris/sandboxes` (`active` read from the registry only). */
export interface SandboxSummary {
  sandboxId: string;
  status: 'running' | 'closed' | 'expired' | 'failed';
  active: boolean;
  createdAt: string;
  lastUsedAt?: string | null;
  expiresAt?: string | null;
  executions?: number;
}

/** A page of sandboxes, newest first; `nextCursor` is null on the last page. */
export interface SandboxPage {
  sandboxes: SandboxSummary[];
  nextCursor: string | null;
}

/** A row of `GET /api/iris/executions`: synchronous and asynchronous runs alike. */
export interface ExecutionSummary {
  executionId: string;
  sandboxId: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out';
  language?: string;
  createdAt: string;
  finishedAt?: string | null;
  executionTime?: number | null;
  success?: boolean | null;
}

/** A page of executions, newest first; `nextCursor` is null on the last page. */
export interface ExecutionPage {
  executions: ExecutionSummary[];
  nextCursor: string | null;
}

/** Filters and paging of the list routes. */
export interface ListOptions {
  status?: string;
  limit?: number;
  cursor?: string;
  /** `listExecutions` only. */
  sandboxId?: string;
}
