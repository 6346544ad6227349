/**
 * Round trip: what encodeEvent writes, a real parser reads back exactly,
 * however the bytes are cut. Two parsers: `eventsource-parser` (independent,
 * widely used) and the test kit's own. Then the same over a real socket:
 * res.sse.send writes the very bytes encodeEvent produces.
 */
import type { Server } from 'node:http';
import { sse, encodeEvent, encodeRetry, type EventFields } from '../lib';
import { closeServer, createParser, listen, openStream, type ParsedEvent } from '../lib/testing';

// eventsource-parser v3 ships ESM + CJS; jest runs CommonJS.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const esp = require('eventsource-parser') as typeof import('eventsource-parser');

const EVENTS: EventFields[] = [
  { data: 'plain' },
  { data: '' },
  { data: 'a\r\nb' },
  { data: 'a\rb' },
  { data: 'a\n' },
  { data: '\n' },
  { data: '\r\n\r\n' },
  { data: ' leading space' },
  { data: '  two leading spaces' },
  { data: ':not a comment' },
  { data: 'a\0b' },
  { data: '😀 é ü' },
  { data: 'x\n\ndata: injected' },
  { data: '\revent: injected' },
  { data: '\r\nid: injected' },
  { data: { nested: { list: [1, 2], text: 'l1\nl2' } } },
  { data: 'named', event: 'update' },
  { data: 'with id', id: '17' },
  { data: 'id persists' },
  { data: 'empty id resets', id: '' },
  { data: 'numeric id', id: 0 },
  { data: 'all fields', event: 'e', id: 'x-1', retry: 0 },
  { data: 'retry', retry: 2500 },
  { data: 'empty event name', event: '' },
  { data: ' ', event: ' spaced', id: ' spaced' },
];

/** The text a browser hands the page: line breaks in data normalised to LF. */
function textOf(fields: EventFields): string {
  const text = typeof fields.data === 'string' ? fields.data : JSON.stringify(fields.data);
  return text.replace(/\r\n|\r/g, '\n');
}

/** What the test kit's parser must produce for `events` sent in order (the id is the last event id). */
function expectedKit(events: EventFields[]): ParsedEvent[] {
  let last = '';
  return events.map((f) => {
    if (f.id !== undefined) last = String(f.id);
    return { event: f.event ? f.event : 'message', data: textOf(f), id: last };
  });
}

/** What eventsource-parser v3 produces: the id of each event only, `undefined` event type for the default. */
function expectedEsp(events: EventFields[]) {
  return events.map((f) => ({
    event: f.event ? f.event : undefined,
    data: textOf(f),
    id: f.id === undefined ? undefined : String(f.id),
  }));
}

const retriesOf = (events: EventFields[]) => events.flatMap((f) => (f.retry === undefined ? [] : [f.retry]));

function viaEsp(chunks: string[]) {
  const events: Array<{ event?: string; data: string; id?: string }> = [];
  const retries: number[] = [];
  const errors: unknown[] = [];
  const parser = esp.createParser({
    onEvent: (e) => events.push({ event: e.event, data: e.data, id: e.id }),
    onRetry: (r) => retries.push(r),
    onError: (e) => errors.push(e),
  });
  for (const c of chunks) parser.feed(c);
  return { events, retries, errors };
}

function viaKit(chunks: string[]) {
  const events: ParsedEvent[] = [];
  const retries: number[] = [];
  const comments: string[] = [];
  const parser = createParser(
    (e) => events.push(e),
    (c) => comments.push(c),
    (r) => retries.push(r),
  );
  for (const c of chunks) parser.feed(c);
  return { events, retries, comments };
}

const STREAM = EVENTS.map((f) => encodeEvent(f)).join('');

describe('encodeEvent -> eventsource-parser', () => {
  const want = { events: expectedEsp(EVENTS), retries: retriesOf(EVENTS), errors: [] };

  test('the whole stream in one chunk', () => {
    expect(viaEsp([STREAM])).toEqual(want);
  });

  test('the whole stream cut at every possible boundary', () => {
    for (let i = 0; i <= STREAM.length; i++) {
      const got = viaEsp([STREAM.slice(0, i), STREAM.slice(i)]);
      expect({ cut: i, ...got }).toEqual({ cut: i, ...want });
    }
  });

  test('the whole stream one character per chunk', () => {
    expect(viaEsp([...STREAM])).toEqual(want);
  });

  test.each(EVENTS.map((f, i) => [i, f] as const))('event #%i cut at every pair of boundaries', (_i, fields) => {
    const wire = encodeEvent(fields);
    const one = { events: expectedEsp([fields]), retries: retriesOf([fields]), errors: [] };
    for (let i = 0; i <= wire.length; i++) {
      for (let j = i; j <= wire.length; j++) {
        const got = viaEsp([wire.slice(0, i), wire.slice(i, j), wire.slice(j)]);
        if (JSON.stringify(got) !== JSON.stringify(one))
          expect({ cut: [i, j], ...got }).toEqual({ cut: [i, j], ...one });
      }
    }
  });

  test('a custom serializer round-trips too', () => {
    const serialize = (v: unknown) =>
      Object.entries(v as Record<string, string>)
        .map(([k, x]) => `${k}=${x}`)
        .join('\r\n');
    const wire = encodeEvent({ data: { a: '1', b: '2' } }, serialize);
    for (let i = 0; i <= wire.length; i++) {
      expect(viaEsp([wire.slice(0, i), wire.slice(i)]).events).toEqual([
        { event: undefined, id: undefined, data: 'a=1\nb=2' },
      ]);
    }
  });
});

describe('encodeEvent -> the test kit parser', () => {
  const want = { events: expectedKit(EVENTS), retries: retriesOf(EVENTS), comments: [] };

  test('cut at every possible boundary, and char by char', () => {
    for (let i = 0; i <= STREAM.length; i++) {
      const got = viaKit([STREAM.slice(0, i), STREAM.slice(i)]);
      expect({ cut: i, ...got }).toEqual({ cut: i, ...want });
    }
    expect(viaKit([...STREAM])).toEqual(want);
  });

  test('as UTF-8 bytes cut at every byte boundary (multi-byte characters split), decoded as a stream', () => {
    const bytes = Buffer.from(STREAM, 'utf8');
    for (let i = 0; i <= bytes.length; i++) {
      const decoder = new TextDecoder('utf-8');
      const chunks = [
        decoder.decode(bytes.subarray(0, i), { stream: true }),
        decoder.decode(bytes.subarray(i), { stream: true }),
        decoder.decode(),
      ];
      const got = viaKit(chunks);
      expect({ cut: i, ...got }).toEqual({ cut: i, ...want });
    }
  });

  test('a lone surrogate arrives as U+FFFD, and the event is otherwise intact', () => {
    const wire = Buffer.from(encodeEvent({ data: 'a\uD83Db', id: 'i' }), 'utf8');
    expect(viaKit([new TextDecoder().decode(wire)]).events).toEqual([{ event: 'message', data: 'a\uFFFDb', id: 'i' }]);
  });
});

describe('random data round-trips through both parsers', () => {
  // A fixed seed: the same cases on every run, so a failure can be replayed.
  function rng(seed: number) {
    return () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
  }
  const PIECES = [
    '\r',
    '\n',
    '\r\n',
    'a',
    ' ',
    ':',
    '\0',
    '😀',
    'data: ',
    'event: ',
    'id: ',
    'retry: 1',
    '\uFEFF',
    'é',
  ];

  test('500 generated events, each cut at a random place', () => {
    const rand = rng(0x5eed);
    for (let n = 0; n < 500; n++) {
      let data = '';
      const len = Math.floor(rand() * 12);
      for (let k = 0; k < len; k++) data += PIECES[Math.floor(rand() * PIECES.length)];
      const fields: EventFields = { data };
      if (rand() < 0.3) fields.event = 'e' + n;
      if (rand() < 0.3) fields.id = String(n);
      const wire = encodeEvent(fields);
      const cut = Math.floor(rand() * (wire.length + 1));
      const chunks = [wire.slice(0, cut), wire.slice(cut)];
      expect({ data, esp: viaEsp(chunks).events }).toEqual({ data, esp: expectedEsp([fields]) });
      expect({ data, kit: viaKit(chunks).events }).toEqual({ data, kit: expectedKit([fields]) });
    }
  });
});

/** Both write paths (lib/stream/direct.ts): straight to the socket (the default where safe) and through res.write. */
const WRITE_PATHS = [
  { path: 'direct', env: 'direct' },
  { path: 'res.write', env: 'node' },
] as const;

describe.each(WRITE_PATHS)(
  'over a real socket ($path write path), res.sse.send writes exactly what encodeEvent produces',
  ({ env }) => {
    let server: Server | undefined;
    beforeAll(() => {
      process.env.SSE_RELAY_WRITE_PATH = env;
    });
    afterAll(() => {
      delete process.env.SSE_RELAY_WRITE_PATH;
    });
    afterEach(async () => {
      if (server) await closeServer(server);
      server = undefined;
    });

    test('every event of the table', async () => {
      const mw = sse({ keepAlive: false });
      server = await listen((req, res) => {
        mw(req, res, () => {
          for (const f of EVENTS) {
            if (f.retry !== undefined) res.sse.retry(f.retry);
            if (f.event !== undefined) res.sse.send(f.data, { event: f.event, id: f.id });
            else res.sse.send(f.data, { id: f.id });
          }
          res.sse.close();
        });
      });
      const stream = await openStream({ server, path: '/' });
      try {
        await stream.waitForEnd();
        // send() has no retry option: the retry frame goes just before its event.
        const expected = EVENTS.map(
          (f) => (f.retry !== undefined ? encodeRetry(f.retry) : '') + encodeEvent({ ...f, retry: undefined }),
        ).join('');
        expect(stream.raw()).toBe(expected);
        expect(stream.events).toEqual(expectedKit(EVENTS));
        expect(stream.retries).toEqual(retriesOf(EVENTS));
        expect(viaEsp([stream.raw()]).events).toEqual(expectedEsp(EVENTS));
      } finally {
        await stream.close();
      }
    });

    test('a lone surrogate is EF BF BD on the wire; emoji are their 4 bytes', async () => {
      const mw = sse({ keepAlive: false });
      server = await listen((req, res) => {
        mw(req, res, () => {
          res.sse.send('a\uD800b');
          res.sse.send('😀', { event: 'e\uDC00' });
          res.sse.close();
        });
      });
      const stream = await openStream({ server, path: '/' });
      try {
        await stream.waitForEnd();
        expect(stream.bytes().toString('hex')).toBe(
          Buffer.concat([
            Buffer.from('data: a'),
            Buffer.from([0xef, 0xbf, 0xbd]),
            Buffer.from('b\n\nevent: e'),
            Buffer.from([0xef, 0xbf, 0xbd]),
            Buffer.from('\ndata: '),
            Buffer.from([0xf0, 0x9f, 0x98, 0x80]),
            Buffer.from('\n\n'),
          ]).toString('hex'),
        );
        expect(stream.events).toEqual([
          { event: 'message', data: 'a\uFFFDb', id: '' },
          { event: 'e\uFFFD', data: '😀', id: '' },
        ]);
      } finally {
        await stream.close();
      }
    });
  },
);
