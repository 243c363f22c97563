// Typed errors. Every HTTP error of the service has one shape; it becomes an IrisApiError
// subclass chosen by status.
import type { ErrorBody } from './types.js';

/** Anything this client throws. */
export class IrisError extends Error {
  override name = 'IrisError';
}

/** The service could not be reached (after the retries). */
export class IrisConnectionError extends IrisError {
  override name = 'IrisConnectionError';
}

/** The service answered with an error status. `requestId` is what to quote when asking about a
 * failure; `retryAfter` is the `Retry-After` header in seconds (429, 503, an in-flight 409). */
export class IrisApiError extends IrisError {
  override name = 'IrisApiError';
  readonly status: number;
  readonly title: string;
  readonly requestId: string | undefined;
  readonly retryAfter: number | undefined;
  readonly body: Partial<ErrorBody>;

  constructor(
    status: number,
    message: string,
    init: { title?: string; requestId?: string; retryAfter?: number; body?: Partial<ErrorBody> } = {},
  ) {
    super(message);
    this.status = status;
    this.title = init.title ?? 'Error';
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
    this.body = init.body ?? {};
  }
}

/** 400: malformed or invalid request. */
export class BadRequestError extends IrisApiError {
  override name = 'BadRequestError';
}
/** 401: no key, a malformed one, or an invalid or revoked one. */
export class AuthenticationError extends IrisApiError {
  override name = 'AuthenticationError';
  get hint(): string | undefined {
    return this.body.hint;
  }
}
/** 403: `projectId` is not the key's project. */
export class PermissionDeniedError extends IrisApiError {
  override name = 'PermissionDeniedError';
}
/** 404: unknown, or another project's (the same answer). */
export class NotFoundError extends IrisApiError {
  override name = 'NotFoundError';
}
/** 409: the sandbox is busy, or a request with this Idempotency-Key is still running. */
export class ConflictError extends IrisApiError {
  override name = 'ConflictError';
}
/** 410: the sandbox existed but is gone (`reason`: closed, expired, evicted, failed). */
export class GoneError extends IrisApiError {
  override name = 'GoneError';
  get reason(): string | undefined {
    return this.body.reason;
  }
  get goneAt(): string | undefined {
    return this.body.goneAt ?? undefined;
  }
}
/** 413: code over the size limit. */
export class PayloadTooLargeError extends IrisApiError {
  override name = 'PayloadTooLargeError';
}
/** 422: the same Idempotency-Key was used with another body. */
export class UnprocessableEntityError extends IrisApiError {
  override name = 'UnprocessableEntityError';
}
/** 429: over the rate limit, or every sandbox of the project busy; see `retryAfter`. */
export class RateLimitError extends IrisApiError {
  override name = 'RateLimitError';
}
/** 500 (and any other 5xx without its own class). */
export class InternalServerError extends IrisApiError {
  override name = 'InternalServerError';
}
/** 503: the sandbox provider or a store is unavailable; see `retryAfter`. */
export class ServiceUnavailableError extends IrisApiError {
  override name = 'ServiceUnavailableError';
}

const BY_STATUS: Record<number, typeof IrisApiError> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  410: GoneError,
  413: PayloadTooLargeError,
  422: UnprocessableEntityError,
  429: RateLimitError,
  500: InternalServerError,
  503: ServiceUnavailableError,
};

/** `Retry-After` in seconds (the service sends whole seconds), or undefined. */
export function retryAfter(headers: Headers): number | undefined {
  const value = headers.get('retry-after')?.trim();
  if (!value) return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) ? Math.max(0, seconds) : undefined;
}

/** The typed error of an error answer (reads its body). */
export async function apiError(response: Response): Promise<IrisApiError> {
  const text = await response.text().catch(() => '');
  let body: Partial<ErrorBody> = {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      body = parsed as Partial<ErrorBody>;
    }
  } catch {
    // not JSON: the text is the message
  }
  const status = response.status;
  const Class = BY_STATUS[status] ?? (status >= 500 ? InternalServerError : IrisApiError);
  const message =
    typeof body.message === 'string' ? body.message : text.slice(0, 500) || response.statusText;
  const init: ConstructorParameters<typeof IrisApiError>[2] = { body };
  const title = typeof body.error === 'string' ? body.error : response.statusText;
  if (title) init.title = title;
  const requestId =
    typeof body.requestId === 'string' ? body.requestId : response.headers.get('x-request-id');
  if (requestId) init.requestId = requestId;
  const wait = retryAfter(response.headers);
  if (wait !== undefined) init.retryAfter = wait;
  return new Class(status, message, init);
}
