// The public API, as the console calls it: relative URLs (so the page works under an API
// Gateway stage prefix too), the key from sessionStorage in the Authorization header only.

const KEY = "iris.apiKey";

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function signIn(key: string): void {
  sessionStorage.setItem(KEY, key);
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
}

/** An answer in the contract's error shape (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
    readonly requestId: string | null,
    readonly retryAfterS: number | null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

type Listener = (error: ApiError) => void;
let unauthorized: Listener = () => {};

/** Called on every 401 (the page returns to sign-in). */
export function onUnauthorized(listener: Listener): void {
  unauthorized = listener;
}

export function url(path: string): string {
  return new URL(path, document.baseURI).toString();
}

export function headers(extra: Record<string, string> = {}): Record<string, string> {
  const key = apiKey();
  return { ...(key ? { Authorization: `Bearer ${key}` } : {}), ...extra };
}

async function failure(response: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    body = (await response.json()) as Record<string, unknown>;
  } catch {
    // not JSON (a proxy's page): keep the status
  }
  const retry = Number(response.headers.get("Retry-After"));
  const error = new ApiError(
    response.status,
    String(body.error ?? response.statusText ?? "Error"),
    String(body.message ?? `HTTP ${response.status}`),
    (body.requestId as string | undefined) ?? response.headers.get("X-Request-Id"),
    Number.isFinite(retry) && retry > 0 ? retry : null,
  );
  if (response.status === 401) unauthorized(error);
  return error;
}

export async function send(path: string, init: RequestInit = {}): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url(path), {
      ...init,
      headers: headers((init.headers as Record<string, string> | undefined) ?? {}),
      cache: "no-store",
    });
  } catch (exc) {
    throw new ApiError(0, "Network error", `The service could not be reached (${String(exc)})`, null, null);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

export async function getJson<T>(path: string, params: Record<string, string | undefined> = {}): Promise<T> {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) query.set(name, value);
  const suffix = query.toString() ? `?${query}` : "";
  return (await (await send(path + suffix)).json()) as T;
}

export async function postJson<T>(path: string, body: unknown, extra: Record<string, string> = {}): Promise<T> {
  const response = await send(path, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", ...extra },
  });
  return (await response.json()) as T;
}

export async function del<T>(path: string): Promise<T> {
  return (await (await send(path, { method: "DELETE" })).json()) as T;
}

let rpcId = 0;

/** One IRIS read tool over `/mcp` (stateless Streamable HTTP, JSON answers). */
export async function tool<T>(name: string, args: Record<string, unknown>): Promise<T> {
  const response = await send("mcp", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name, arguments: args } }),
  });
  const answer = (await response.json()) as {
    result?: { isError?: boolean; structuredContent?: T; content?: { text?: string }[] };
    error?: { message: string };
  };
  const requestId = response.headers.get("X-Request-Id");
  if (answer.error) throw new ApiError(400, "Tool error", `${name}: ${answer.error.message}`, requestId, null);
  const result = answer.result;
  if (!result || result.isError) {
    const text = result?.content?.map((c) => c.text ?? "").join(" ") || "the tool failed";
    throw new ApiError(400, "Tool error", `${name}: ${text}`, requestId, null);
  }
  return result.structuredContent as T;
}

// -- shapes of the answers -------------------------------------------------------------

export interface CodeError {
  name: string;
  message: string;
  stack?: string;
}

export interface ExecResult {
  success: boolean;
  output: string;
  error?: CodeError;
  executionTime: number;
  logs: string[];
  metadata: Record<string, unknown> & { setupTime?: number; executionId?: string; sandboxId?: string };
}

export interface ExecuteAnswer {
  success: boolean;
  result: ExecResult;
  sandboxId: string;
  timestamp: string;
}

export interface Queued {
  executionId: string;
  status: string;
  sandboxId: string;
}

export interface ExecutionDetail {
  executionId: string;
  status: string;
  sandboxId: string;
  async: boolean;
  language: string | null;
  sessionId: string | null;
  code: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  logs: string[];
  cursor: number;
  success?: boolean;
  result?: ExecResult;
  reason?: string;
}

export interface ExecutionRow {
  executionId: string;
  sandboxId: string;
  status: string;
  async: boolean;
  language: string | null;
  sessionId: string | null;
  createdAt: string;
  finishedAt: string | null;
  executionTime: number | null;
  success: boolean | null;
}

export interface SandboxRow {
  sandboxId: string;
  status: string;
  active: boolean;
  busy: boolean;
  createdAt: string;
  lastUsedAt: string;
  expiresAt: string | null;
  executions: number;
  reason?: string;
  closedAt?: string | null;
}

export interface Sandboxes {
  sandboxes: SandboxRow[];
  nextCursor: string | null;
}

export interface Executions {
  executions: ExecutionRow[];
  nextCursor: string | null;
}

export interface AuditEntry {
  id: string;
  at: string;
  kind: string;
  actor: string;
  sandboxId?: string | null;
  executionId?: string | null;
  durationMs?: number | null;
  outcome?: string | null;
  detail?: string | null;
  [name: string]: unknown;
}
