/**
 * File patterns with the semantics of huggingface_hub's allow_patterns (Python fnmatch): `*` and `?` also
 * match `/`, `[abc]` / `[!abc]` are character classes, and a pattern ending in `/` means everything below it.
 * Hand-written because glob libraries (minimatch, picomatch) stop `*` at `/`, which would change what
 * patterns copied from Python code select.
 */
import { SD3Error } from '../core/errors.js';

export function globToRegExp(pattern: string): RegExp {
  if (typeof pattern !== 'string' || pattern === '') {
    throw new SD3Error(`file pattern ${JSON.stringify(pattern)} is not valid; expected a glob such as "vae/*"`);
  }
  const p = pattern.endsWith('/') ? pattern + '*' : pattern;
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[' && p.indexOf(']', i + 2) > 0) {
      const end = p.indexOf(']', i + 2);
      let body = p.slice(i + 1, end).replace(/\\/g, '\\\\');
      if (body.startsWith('!')) body = '^' + body.slice(1);
      re += `[${body}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

/** A predicate from a predicate or a list of globs (a path matching any glob is kept). */
export function fileFilter(include: ((path: string) => boolean) | readonly string[] | undefined): (path: string) => boolean {
  if (include === undefined) return () => true;
  if (typeof include === 'function') return include;
  if (!Array.isArray(include)) {
    throw new SD3Error(`include must be a function or a list of globs, got ${typeof include}`);
  }
  const res = include.map(globToRegExp);
  return (path) => res.some((re) => re.test(path));
}
