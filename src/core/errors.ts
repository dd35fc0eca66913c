/** Error raised for bad user input or bad files: the message names the value and what was expected. */
export class SD3Error extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SD3Error';
  }
}

/** Raised when a file (checkpoint, image, cache entry) is malformed. */
export class FileFormatError extends SD3Error {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'FileFormatError';
  }
}

/** Raised when generation is cancelled through an AbortSignal. */
export class AbortError extends SD3Error {
  constructor(message = 'generation was aborted') {
    super(message);
    this.name = 'AbortError';
  }
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (Array.isArray(value)) return `array of length ${value.length}`;
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) return `${value.constructor.name} of length ${(value as unknown as { length: number }).length}`;
  if (typeof value === 'object') return `object with keys [${Object.keys(value as object).join(', ')}]`;
  return `${typeof value} ${String(value)}`;
}
