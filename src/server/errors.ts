/**
 * Errors a request can end with. Routes throw these; each API family turns them into its own error shape
 * (openai.ts, sdapi.ts, jobs.ts), so the status, the message and the field at fault are decided once.
 */
export type ErrorCode =
  | 'invalid_request' | 'invalid_field' | 'not_found' | 'expired' | 'method_not_allowed' | 'payload_too_large'
  | 'unsupported_media_type' | 'forbidden' | 'unauthorized' | 'queue_full' | 'not_ready' | 'conflict' | 'server_error';

export class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: ErrorCode,
    /** The request field at fault, when one is. */
    readonly param: string | null = null,
    /** Seconds, for 429 and 503. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** 400 naming the field. */
export function fieldError(param: string, message: string): RequestError {
  return new RequestError(400, message, 'invalid_field', param);
}
