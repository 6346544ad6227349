/**
 * Option validation, once, at factory time: one helper per kind of value.
 * Every message names the option and quotes the bad value; a wrong type is a
 * TypeError, a bad range a RangeError, an unknown name a TypeError that says
 * what was probably meant.
 */

/** How a bad value is quoted in a message (never a whole object). */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The known name closest to `name`, when it is close enough to be a typo. */
function closest(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const candidate of known) {
    const d = distance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestScore) {
      bestScore = d;
      best = candidate;
    }
  }
  return best !== undefined && bestScore <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

/**
 * Checks that `options` is a plain object (or undefined) with only `known`
 * names. `what` names the factory or call, e.g. `createHub`.
 */
export function checkOptions<T extends object>(what: string, options: T | undefined, known: readonly string[]): T {
  if (options === undefined) return {} as T;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`sse-relay: ${what} options must be an object, got ${show(options)}`);
  }
  // for-in over own keys: the same names as Object.keys, without an array per call (publish() checks its options).
  for (const key in options) {
    if (!Object.hasOwn(options, key) || known.includes(key)) continue;
    const hint = closest(key, known);
    throw new TypeError(
      `sse-relay: unknown ${what} option ${JSON.stringify(key)}` +
        (hint === undefined ? '' : ` (did you mean "${hint}"?)`) +
        `; known: ${known.join(', ')}`,
    );
  }
  return options;
}

/** A positive integer (ms, bytes, streams); `Infinity` too when `infinite`. */
export function positiveInt(name: string, value: unknown, infinite = false): number {
  if (typeof value !== 'number') {
    throw new TypeError(`sse-relay: option ${name} must be a number, got ${show(value)}`);
  }
  if (infinite && value === Infinity) return value;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(`sse-relay: option ${name} must be a positive integer, got ${show(value)}`);
  }
  return value;
}

/** An integer from `min` to `max`. */
export function intInRange(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number') {
    throw new TypeError(`sse-relay: option ${name} must be a number, got ${show(value)}`);
  }
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`sse-relay: option ${name} must be an integer from ${min} to ${max}, got ${show(value)}`);
  }
  return value;
}

/** A non-negative integer. */
export function nonNegativeInt(name: string, value: unknown): number {
  if (typeof value !== 'number') {
    throw new TypeError(`sse-relay: option ${name} must be a number, got ${show(value)}`);
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`sse-relay: option ${name} must be a non-negative integer, got ${show(value)}`);
  }
  return value;
}

/** `value` when it is a function. */
export function fn<T>(name: string, value: unknown): T {
  if (typeof value !== 'function') {
    throw new TypeError(`sse-relay: option ${name} must be a function, got ${show(value)}`);
  }
  return value as T;
}

/** An idempotencyKey: 1 to `max` characters, no CR, LF or NUL. */
export function checkIdempotencyKey(value: unknown, max: number): string {
  const key = nonEmptyString('idempotencyKey', value);
  if (/[\r\n\0]/.test(key)) {
    throw new TypeError(`sse-relay: option idempotencyKey must not contain CR, LF or NUL, got ${show(key)}`);
  }
  if (key.length > max) {
    throw new RangeError(`sse-relay: option idempotencyKey must be at most ${max} characters, got ${key.length}`);
  }
  return key;
}

/** A non-empty string. */
export function nonEmptyString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new TypeError(`sse-relay: option ${name} must be a non-empty string, got ${show(value)}`);
  }
  return value;
}
