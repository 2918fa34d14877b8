/**
 * What this package throws, as a tree (the same as the Python SDK's `mini_llm.sdk.errors`):
 *
 *     MiniLLMError                   base of everything thrown here
 *     ├── GatewayStartError          the gateway could not be started (`output`: what it printed)
 *     │   └── GatewayConfigError     ... because its configuration is invalid (it exited with 2)
 *     ├── GatewayVersionError        a gateway of another version runs (onVersionMismatch "error")
 *     ├── APIConnectionError         the gateway could not be reached
 *     │   └── APITimeoutError        ... or did not answer in time
 *     └── APIStatusError             the gateway answered an error: `status`, `body`, `message`,
 *         │                          `type`, `code`
 *         ├── BadRequestError        400
 *         ├── AuthenticationError    401
 *         ├── PermissionDeniedError  403
 *         ├── NotFoundError          404 (unknown model: `code === "model_not_found"`)
 *         ├── RateLimitError         429
 *         └── InternalServerError    5xx
 */

export class MiniLLMError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class GatewayStartError extends MiniLLMError {
  /** What the gateway printed while it failed to start, line by line (at most the last 20). */
  readonly output: string[];

  constructor(message: string, output: string[] = []) {
    super(message);
    this.output = output;
  }
}

export class GatewayConfigError extends GatewayStartError {}

export class GatewayVersionError extends MiniLLMError {
  readonly running: string;
  readonly expected: string;

  constructor(message: string, running: string, expected: string) {
    super(message);
    this.running = running;
    this.expected = expected;
  }
}

export class APIConnectionError extends MiniLLMError {}

export class APITimeoutError extends APIConnectionError {}

/** An error answer. `body` is the decoded JSON body, or its text when it is not JSON. */
export class APIStatusError extends MiniLLMError {
  readonly status: number;
  readonly body: unknown;
  readonly type: string | undefined;
  readonly code: string | undefined;
  readonly detail: string;

  constructor(status: number, body: unknown) {
    const error = errorObject(body);
    const message =
      typeof error.message === "string" && error.message
        ? error.message
        : typeof body === "string" && body
          ? body
          : `HTTP ${status}`;
    super(`${status}: ${message}`);
    this.status = status;
    this.body = body;
    this.detail = message;
    this.type = typeof error.type === "string" ? error.type : undefined;
    this.code = typeof error.code === "string" ? error.code : undefined;
  }
}

export class BadRequestError extends APIStatusError {}
export class AuthenticationError extends APIStatusError {}
export class PermissionDeniedError extends APIStatusError {}
export class NotFoundError extends APIStatusError {}
export class RateLimitError extends APIStatusError {}
export class InternalServerError extends APIStatusError {}

const BY_STATUS: Record<number, typeof APIStatusError> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  429: RateLimitError,
};

/** The typed error for an error answer; `raw` is the body's text or an already decoded value. */
export function statusError(status: number, raw: unknown): APIStatusError {
  let body = raw;
  if (typeof raw === "string") {
    try {
      body = JSON.parse(raw);
    } catch {
      body = raw;
    }
  }
  const cls = BY_STATUS[status] ?? (status >= 500 ? InternalServerError : APIStatusError);
  return new cls(status, body);
}

function errorObject(body: unknown): Record<string, unknown> {
  if (body !== null && typeof body === "object") {
    const error = (body as Record<string, unknown>).error;
    if (error !== null && typeof error === "object") return error as Record<string, unknown>;
  }
  return {};
}
