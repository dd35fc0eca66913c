/** How the sd3 command words a failure that is not an SD3Error. */

/**
 * A failure that is not one of ours, said in one line: an operating-system error (a busy port, a missing or
 * unreadable file, a full disk) or a value Node refused is an ordinary mistake, not a crash, so it gets no
 * stack trace; anything else is a bug and says so, with the stack only when SD3_DEBUG=1.
 */
export function describeUnexpected(e: unknown): string {
  const err = e instanceof Error ? e : new Error(String(e));
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (/^E[A-Z]+$/.test(code) || code.startsWith('ERR_'))) return err.message;
  if (err instanceof RangeError) return `a value is out of range: ${err.message}`;
  if (process.env.SD3_DEBUG === '1') return `unexpected error: ${err.stack ?? err.message}`;
  return `unexpected error (a bug: please report it; SD3_DEBUG=1 shows where): ${err.name}: ${err.message}`;
}
