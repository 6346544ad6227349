/**
 * Bad options fail when the factory runs, with a message that names the
 * option (and what was probably meant), never later on every request.
 */
import { createHub, MemoryBroker, sse, type SseMiddleware, type SseOptions } from '../lib';

const authorize = (): boolean => true;

test.each([
  [
    'createHub',
    () => createHub({ authorize, histroy: 5 } as never),
    /unknown createHub option "histroy" \(did you mean "history"\?\)/,
  ],
  [
    'createHub sse',
    () => createHub({ authorize, sse: { keepalive: 5 } } as never),
    /unknown createHub sse option "keepalive" \(did you mean "keepAlive"\?\)/,
  ],
  [
    'MemoryBroker',
    () => new MemoryBroker({ maxChanels: 5 } as never),
    /unknown MemoryBroker option "maxChanels" \(did you mean "maxChannels"\?\)/,
  ],
  [
    'sse',
    () => sse({ maxBuferedBytes: 5 } as never),
    /unknown sse\(\) option "maxBuferedBytes" \(did you mean "maxBufferedBytes"\?\)/,
  ],
  ['sse, far from any name', () => sse({ zzz: 1 } as never), /unknown sse\(\) option "zzz"; known: keepAlive, retry, /],
])('%s refuses an unknown option name', (_what, make, message) => {
  expect(make).toThrow(TypeError);
  expect(make).toThrow(message);
});

test('publish refuses an unknown option name', async () => {
  const hub = createHub({ authorize });
  await expect(hub.publish('a', 'x', { evnt: 'e' } as never)).rejects.toThrow(
    /unknown publish option "evnt" \(did you mean "event"\?\)/,
  );
  await hub.close();
});

test.each([
  ['a CR/LF in a value', { 'X-Trace': 'a\r\nSet-Cookie: x=1' }],
  ['a space in a name', { 'X Trace': 'a' }],
  ['an empty name', { '': 'a' }],
  ['a NUL in an array value', { 'X-Trace': ['ok', 'a\0b'] }],
])('headers with %s are refused when sse() and createHub() run', (_what, headers) => {
  expect(() => sse({ headers })).toThrow(TypeError);
  expect(() => sse({ headers })).toThrow(/not a valid HTTP header/);
  expect(() => createHub({ authorize, sse: { headers } })).toThrow(TypeError);
});

test('valid headers pass', () => {
  expect(() => sse({ headers: { 'X-Trace': 'a b; c=1', 'X-Count': 3, 'X-List': ['a', 'b'] } })).not.toThrow();
});

test.each([
  ['history', { history: -1 }, RangeError],
  ['history', { history: 1.5 }, RangeError],
  ['history', { history: '5' }, TypeError],
  ['history', { history: 1_000_001 }, RangeError],
  ['reauthorizeEvery', { reauthorizeEvery: 0 }, RangeError],
  ['reauthorizeTimeout', { reauthorizeTimeout: -5 }, RangeError],
])('createHub option %s: %p throws %p', (_name, options, error) => {
  expect(() => createHub({ authorize, ...(options as object) })).toThrow(error as ErrorConstructor);
});

test('createHub history: 0..1,000,000, as every broker takes', () => {
  expect(() => createHub({ authorize, history: 1_000_000 })).not.toThrow();
  expect(() => createHub({ authorize, history: 1_000_001 })).toThrow(
    'sse-relay: option history must be an integer from 0 to 1000000, got 1000001',
  );
});

test.each([
  ['x'.repeat(201), RangeError, 'must be at most 200 characters, got 201'],
  ['a\nb', TypeError, 'must not contain CR, LF or NUL'],
  ['', TypeError, 'must be a non-empty string'],
  [7, TypeError, 'must be a non-empty string'],
])('hub.publish idempotencyKey %p: %p, nothing published, on every broker', async (key, error, message) => {
  const hub = createHub({ authorize });
  try {
    await expect(hub.publish('a', 'x', { idempotencyKey: key as string })).rejects.toThrow(error as ErrorConstructor);
    await expect(hub.publish('a', 'x', { idempotencyKey: key as string })).rejects.toThrow(message);
    expect(hub.stats().published).toBe(0);
    await expect(hub.publish('a', 'x', { idempotencyKey: 'k'.repeat(200) })).resolves.toMatch(/./);
  } finally {
    await hub.close();
  }
});

test.each([
  [{ maxChannels: 0 }, RangeError],
  [{ maxHistoryBytes: -1 }, RangeError],
  [{ maxHistoryBytes: 'big' }, TypeError],
])('MemoryBroker %p throws %p', (options, error) => {
  expect(() => new MemoryBroker(options as never)).toThrow(error as ErrorConstructor);
});

describe('sse(options): bad options throw at sse() time, naming the option', () => {
  const CASES: Array<[string, unknown, typeof TypeError | typeof RangeError, RegExp]> = [
    ['keepAlive 0', { keepAlive: 0 }, RangeError, /keepAlive/],
    ['keepAlive -1', { keepAlive: -1 }, RangeError, /keepAlive/],
    ['keepAlive 1.5', { keepAlive: 1.5 }, RangeError, /keepAlive/],
    ['keepAlive NaN', { keepAlive: NaN }, RangeError, /keepAlive/],
    ['keepAlive "100"', { keepAlive: '100' }, TypeError, /keepAlive/],
    ['keepAlive true', { keepAlive: true }, TypeError, /keepAlive/],
    ['retry -1', { retry: -1 }, RangeError, /retry/],
    ['retry 1.5', { retry: 1.5 }, RangeError, /retry/],
    ['retry "5"', { retry: '5' }, RangeError, /retry/],
    ['headers "x"', { headers: 'x' }, TypeError, /headers/],
    ['headers value {}', { headers: { 'X-A': {} } }, TypeError, /headers/],
    ['serialize "json"', { serialize: 'json' }, TypeError, /serialize/],
    ['maxBufferedBytes 0', { maxBufferedBytes: 0 }, RangeError, /maxBufferedBytes/],
    ['maxDuration -5', { maxDuration: -5 }, RangeError, /maxDuration/],
    ['allowedOrigins "*"', { allowedOrigins: '*' }, TypeError, /allowedOrigins/],
    ['allowedOrigins ["*"]', { allowedOrigins: ['*'] }, TypeError, /allowedOrigins/],
    ['allowedOrigins trailing slash', { allowedOrigins: ['https://a.example/'] }, TypeError, /allowedOrigins/],
    ['maxConnections 0', { maxConnections: 0 }, RangeError, /maxConnections/],
    ['maxConnectionsPerKey 1.5', { maxConnectionsPerKey: 1.5 }, RangeError, /maxConnectionsPerKey/],
    ['connectionKey 1', { connectionKey: 1 }, TypeError, /connectionKey/],
    ['an unknown option', { keepalive: 5 }, TypeError, /keepalive/],
    ['options null', null, TypeError, /options/],
    ['options "x"', 'x', TypeError, /options/],
  ];

  test.each(CASES)('%s', (_name, options, ErrorClass, names) => {
    let error: unknown;
    try {
      sse(options as SseOptions);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ErrorClass);
    expect((error as Error).message).toMatch(names);
  });

  test('good options are accepted', () => {
    const mws: SseMiddleware[] = [
      sse(),
      sse({}),
      sse({ keepAlive: false, retry: 0, headers: { 'X-A': 'b', 'X-N': 1, 'X-L': ['a', 'b'] } }),
      sse({ maxConnections: Infinity, maxBufferedBytes: Infinity, allowedOrigins: ['https://a.example'] }),
      sse({ allowedOrigins: () => true, connectionKey: () => 'k', serialize: String, maxDuration: 1000 }),
    ];
    for (const mw of mws) expect(mw.connections).toBe(0);
  });
});

describe('bad options throw at factory time, naming the option', () => {
  const LIMITS = ['maxBufferedBytes', 'drainTimeout', 'maxDuration', 'maxConnections', 'maxConnectionsPerKey'] as const;
  const BAD: Array<[string, unknown, ErrorConstructor]> = [
    ['a string', '100', TypeError],
    ['a boolean', true, TypeError],
    ['null', null, TypeError],
    ['an object', {}, TypeError],
    ['zero', 0, RangeError],
    ['negative', -1, RangeError],
    ['a fraction', 1.5, RangeError],
    ['NaN', NaN, RangeError],
    ['-Infinity', -Infinity, RangeError],
  ];

  for (const name of LIMITS) {
    test.each(BAD)(`${name}: %s`, (_what, value, type) => {
      const factories = [
        () => sse({ [name]: value } as SseOptions),
        () => createHub({ authorize: () => true, sse: { [name]: value } as SseOptions }),
      ];
      for (const make of factories) {
        let error: unknown;
        try {
          make();
        } catch (err) {
          error = err;
        }
        expect(error).toBeInstanceOf(type);
        expect((error as Error).message).toContain(name);
      }
    });
  }

  test('Infinity is "unlimited" for the counts and the backlog, but not a duration', () => {
    for (const name of ['maxBufferedBytes', 'maxConnections', 'maxConnectionsPerKey']) {
      expect(() => sse({ [name]: Infinity })).not.toThrow();
    }
    for (const name of ['maxDuration', 'drainTimeout']) {
      expect(() => sse({ [name]: Infinity })).toThrow(RangeError);
      expect(() => sse({ [name]: Infinity })).toThrow(name);
    }
  });

  test.each<[string, unknown]>([
    ['a string', 'https://app.example'],
    ['an object', {}],
    ['a number', 1],
    ['"*"', ['*']],
    ['a trailing slash', ['https://app.example/']],
    ['an empty origin', ['']],
    ['a non-string entry', [42]],
  ])('allowedOrigins: %s', (_what, value) => {
    expect(() => sse({ allowedOrigins: value as SseOptions['allowedOrigins'] })).toThrow(TypeError);
    expect(() => sse({ allowedOrigins: value as SseOptions['allowedOrigins'] })).toThrow('allowedOrigins');
  });

  test.each<[string, unknown]>([
    ['a string', 'ip'],
    ['an object', {}],
    ['null', null],
  ])('connectionKey: %s', (_what, value) => {
    expect(() => sse({ connectionKey: value as SseOptions['connectionKey'] })).toThrow(TypeError);
    expect(() => sse({ connectionKey: value as SseOptions['connectionKey'] })).toThrow('connectionKey');
  });

  test('an unknown option name (a typo) throws, naming it', () => {
    expect(() => sse({ maxConnection: 10 } as unknown as SseOptions)).toThrow(TypeError);
    expect(() => sse({ maxConnection: 10 } as unknown as SseOptions)).toThrow('maxConnection');
    expect(() => createHub({ authorize: () => true, sse: { maxBuffer: 1 } as unknown as SseOptions })).toThrow(
      'maxBuffer',
    );
  });

  test('valid limits are accepted', () => {
    expect(() =>
      sse({
        maxBufferedBytes: 1,
        drainTimeout: 1,
        maxDuration: 1,
        maxConnections: 1,
        maxConnectionsPerKey: 1,
        connectionKey: () => 'k',
        allowedOrigins: ['https://app.example'],
      }),
    ).not.toThrow();
  });
});
