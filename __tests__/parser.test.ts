/**
 * The test kit (sse-relay/testing). Its parser against WHATWG HTML §9.2.6:
 * every rule, every line ending, and every way a stream can be cut into
 * chunks; the expectations are written from the standard, not from the
 * implementation. Then its client's waits, timeouts and failure messages,
 * against a plain node:http server.
 */
import type { RequestListener, Server, ServerResponse } from 'node:http';
import {
  closeServer,
  collectEvents,
  createParser,
  expectEvents,
  listen,
  openStream,
  parseStream,
  type OpenStreamOptions,
  type ParsedEvent,
  type TestStream,
} from '../lib/testing';
import { until } from './helpers/wait';

interface Case {
  name: string;
  input: string;
  events: Array<Partial<ParsedEvent> & { data: string }>;
  comments?: string[];
  retries?: number[];
}

const ev = (data: string, event = 'message', id = ''): ParsedEvent => ({ event, data, id });

const CASES: Case[] = [
  { name: 'one event', input: 'data: a\n\n', events: [ev('a')] },
  { name: 'LF, CRLF and CR all end lines', input: 'data: a\r\ndata: b\rdata: c\n\r\n', events: [ev('a\nb\nc')] },
  { name: 'CR CR: a line, then a blank line', input: 'data: a\r\r', events: [ev('a')] },
  { name: 'CRLF CRLF is one blank line, not two', input: 'data: a\r\n\r\ndata: b\r\n\r\n', events: [ev('a'), ev('b')] },
  { name: 'LF CR LF: blank line after the CR', input: 'data: a\n\r\ndata: b\n\n', events: [ev('a'), ev('b')] },
  { name: 'a leading BOM is ignored', input: '\uFEFFdata: a\n\n', events: [ev('a')] },
  {
    name: 'a BOM later is text (here it spoils a field name)',
    input: '\uFEFFdata: a\n\n\uFEFFdata: b\n\ndata: c\n\n',
    events: [ev('a'), ev('c')],
  },
  { name: 'a BOM after the start of a value is kept', input: 'data: \uFEFFa\n\n', events: [ev('\uFEFFa')] },
  { name: 'exactly one space is stripped', input: 'data:  two\n\n', events: [ev(' two')] },
  { name: 'no space after the colon', input: 'data:a\n\n', events: [ev('a')] },
  { name: 'a tab is not a space', input: 'data:\ta\n\n', events: [ev('\ta')] },
  { name: 'only the first colon separates', input: 'data: a: b:c\n\n', events: [ev('a: b:c')] },
  { name: 'a field without colon has an empty value', input: 'data\n\n', events: [ev('')] },
  { name: '"data:" alone is an empty line of data', input: 'data:\n\n', events: [ev('')] },
  { name: 'two empty data lines give one LF', input: 'data\ndata\n\n', events: [ev('\n')] },
  { name: 'only the last trailing LF is removed', input: 'data: a\ndata:\n\n', events: [ev('a\n')] },
  { name: 'no data field: nothing is dispatched', input: 'event: x\n\nid: 1\n\n\n\n', events: [] },
  { name: 'the event type is reset by a blank line without data', input: 'event: x\n\ndata: a\n\n', events: [ev('a')] },
  {
    name: 'the event type is reset after each event',
    input: 'event: x\ndata: a\n\ndata: b\n\n',
    events: [ev('a', 'x'), ev('b')],
  },
  { name: 'an empty event type is message', input: 'event:\ndata: a\n\n', events: [ev('a')] },
  { name: 'the last event field wins', input: 'event: x\nevent: y\ndata: a\n\n', events: [ev('a', 'y')] },
  { name: 'field names are case-sensitive', input: 'Data: a\nDATA: b\nEvent: e\ndata: c\n\n', events: [ev('c')] },
  { name: 'unknown fields are ignored', input: 'foo: bar\nfoo\ndata: a\n\n', events: [ev('a')] },
  { name: 'the event type is any text', input: 'event:  sp ace\ndata: a\n\n', events: [ev('a', ' sp ace')] },
  {
    name: 'comments are reported and never dispatched',
    input: ': hello\n:x\n:  two\n:\ndata: a\n\n: after\n\n',
    events: [ev('a')],
    comments: ['hello', 'x', ' two', '', 'after'],
  },
  {
    name: 'the last event id persists until changed',
    input: 'id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n',
    events: [ev('a', 'message', '1'), ev('b', 'message', '1'), ev('c', 'message', '2')],
  },
  {
    name: 'an id with NUL is ignored',
    input: 'id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n',
    events: [ev('a', 'message', '1'), ev('b', 'message', '1')],
  },
  {
    name: 'an empty id resets the last event id',
    input: 'id: 1\ndata: a\n\nid\ndata: b\n\nid: 3\n\nid:\ndata: c\n\n',
    events: [ev('a', 'message', '1'), ev('b'), ev('c')],
  },
  {
    name: 'an id without data still sets the last event id',
    input: 'id: 7\n\ndata: a\n\n',
    events: [ev('a', 'message', '7')],
  },
  {
    name: 'an id takes effect at dispatch, not before',
    input: 'data: a\nid: 5\n\n',
    events: [ev('a', 'message', '5')],
  },
  { name: 'NUL in data is data', input: 'data: a\0b\n\n', events: [ev('a\0b')] },
  { name: 'non-ASCII data', input: 'data: 😀 é\n\n', events: [ev('😀 é')] },
  { name: 'retry with digits', input: 'retry: 1000\nretry:0\n\n', events: [], retries: [1000, 0] },
  {
    name: 'retry with anything but digits is ignored',
    input: 'retry: -1\nretry: 1.5\nretry: 10a\nretry:\nretry\nretry:  5\nretry: ５\nretry: 7\n\n',
    events: [],
    retries: [7],
  },
  {
    name: 'retry does not dispatch, and is per field not per event',
    input: 'retry: 5\ndata: a\n\n',
    events: [ev('a')],
    retries: [5],
  },
  { name: 'an unterminated event is never dispatched', input: 'data: a\n\ndata: b\n', events: [ev('a')] },
  { name: 'an unterminated line is not a line', input: 'data: a\n\ndata: b', events: [ev('a')] },
  { name: 'a blank line at the very start dispatches nothing', input: '\n\r\n\rdata: a\n\n', events: [ev('a')] },
];

function run(chunks: string[]) {
  const events: ParsedEvent[] = [];
  const comments: string[] = [];
  const retries: number[] = [];
  const parser = createParser(
    (e) => events.push(e),
    (c) => comments.push(c),
    (r) => retries.push(r),
  );
  for (const c of chunks) parser.feed(c);
  return { events, comments, retries };
}

describe('createParser: WHATWG rules', () => {
  test.each(CASES)('$name (whole input)', (c) => {
    const out = parseStream(c.input);
    expect(out.events).toEqual(c.events);
    expect(out.comments).toEqual(c.comments ?? []);
    expect(out.retries).toEqual(c.retries ?? []);
  });

  test.each(CASES)('$name (cut at every boundary, and char by char)', (c) => {
    const whole = run([c.input]);
    for (let i = 0; i <= c.input.length; i++) {
      expect({ at: i, ...run([c.input.slice(0, i), c.input.slice(i)]) }).toEqual({ at: i, ...whole });
    }
    for (let i = 0; i <= c.input.length; i++) {
      for (let j = i; j <= c.input.length; j++) {
        const got = run([c.input.slice(0, i), c.input.slice(i, j), c.input.slice(j)]);
        if (JSON.stringify(got) !== JSON.stringify(whole)) {
          expect({ at: [i, j], ...got }).toEqual({ at: [i, j], ...whole });
        }
      }
    }
    expect(run([...c.input])).toEqual(whole);
    expect(whole.events).toEqual(c.events);
  });
});

describe('createParser: incremental behaviour', () => {
  test('an event is dispatched as soon as its blank line arrives, not later', () => {
    const events: ParsedEvent[] = [];
    const parser = createParser((e) => events.push(e));
    parser.feed('data: a\n');
    expect(events).toEqual([]);
    parser.feed('\n');
    expect(events).toEqual([ev('a')]);
  });

  test('a CR at the end of a chunk ends the line at once; an LF that follows is not a blank line', () => {
    const events: ParsedEvent[] = [];
    const parser = createParser((e) => events.push(e));
    parser.feed('data: a\r');
    parser.feed('\r'); // CR CR: the blank line, dispatched now
    expect(events).toEqual([ev('a')]);
    parser.feed('\ndata: b\r');
    parser.feed('\n'); // belongs to the CR before it
    expect(events).toEqual([ev('a')]);
    parser.feed('\n');
    expect(events).toEqual([ev('a'), ev('b')]);
  });

  test('empty chunks change nothing (a pending CR still swallows the next LF)', () => {
    const events: ParsedEvent[] = [];
    const parser = createParser((e) => events.push(e));
    parser.feed('');
    parser.feed('\uFEFFdata: a\r');
    parser.feed('');
    parser.feed('\n');
    expect(events).toEqual([]);
    parser.feed('\n');
    expect(events).toEqual([ev('a')]);
  });

  test('the BOM check happens once, on the first character of the stream', () => {
    expect(run(['data: a\n\n', '\uFEFFdata: b\n\n']).events).toEqual([ev('a')]);
    expect(run(['', '\uFEFF', 'data: a\n\n']).events).toEqual([ev('a')]);
  });

  test('lastEventId is exposed and reset() starts a new stream', () => {
    const events: ParsedEvent[] = [];
    const parser = createParser((e) => events.push(e));
    parser.feed('id: 9\ndata: a\n\nevent: x\ndata: partial');
    expect(parser.lastEventId).toBe('9');
    parser.reset();
    expect(parser.lastEventId).toBe('');
    parser.feed('\uFEFFdata: b\n\n');
    expect(events).toEqual([ev('a', 'message', '9'), ev('b')]);
  });

  test('a blank line sets lastEventId even when nothing is dispatched (it is what a reconnect sends)', () => {
    const parser = createParser(() => {});
    parser.feed('id: 7\n');
    expect(parser.lastEventId).toBe(''); // not before the blank line
    parser.feed('\n');
    expect(parser.lastEventId).toBe('7');
  });

  test('feed() refuses bytes: decode first', () => {
    const parser = createParser(() => {});
    expect(() => parser.feed(Buffer.from('data: a\n\n') as unknown as string)).toThrow(TypeError);
  });

  test('callbacks are optional', () => {
    const events: ParsedEvent[] = [];
    const parser = createParser((e) => events.push(e));
    parser.feed(': comment\nretry: 5\ndata: a\n\n');
    expect(events).toEqual([ev('a')]);
  });
});

// ---------------------------------------------------------------------------
// The rest of the kit: the client's waits, timeouts and failure messages.

describe('sse-relay/testing client', () => {
  const servers: Server[] = [];
  const streams: TestStream[] = [];
  afterEach(async () => {
    await Promise.all(streams.splice(0).map((s) => s.close()));
    await Promise.all(servers.splice(0).map((s) => closeServer(s)));
  });

  /** A server whose every request runs `handler` (plain node:http, no sse-relay). */
  async function serve(handler: RequestListener): Promise<Server> {
    const server = await listen(handler);
    servers.push(server);
    return server;
  }
  async function open(server: Server, path = '/', options?: OpenStreamOptions): Promise<TestStream> {
    const s = await openStream({ server, path }, options);
    streams.push(s);
    return s;
  }
  const head = (res: ServerResponse) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.flushHeaders();
  };

  test('records raw bytes and parsed events as they arrive, across TCP chunks cut mid-character', async () => {
    let res!: ServerResponse;
    const server = await serve((_req, r) => {
      res = r;
      head(r);
    });
    const stream = await open(server);
    expect(stream.status).toBe(200);
    expect(stream.raw()).toBe('');
    const bytes = Buffer.from('id: 1\ndata: 😀\n\n', 'utf8');
    res.write(bytes.subarray(0, 15)); // ends inside the emoji
    await stream.waitUntil(() => stream.bytes().length === 15, 5000, '15 bytes');
    expect(stream.events).toEqual([]);
    res.write(bytes.subarray(15));
    const [first] = await stream.waitFor(1);
    expect(first).toEqual({ event: 'message', data: '😀', id: '1' });
    expect(stream.bytes()).toEqual(bytes);
    expect(stream.raw()).toBe('id: 1\ndata: 😀\n\n');
  });

  test('waitFor(count) times out with what did arrive; waitFor(predicate) returns up to the first match', async () => {
    let res!: ServerResponse;
    const server = await serve((_req, r) => {
      res = r;
      head(r);
      r.write('data: a\n\nevent: x\ndata: b\n\n');
    });
    const stream = await open(server);
    await expect(stream.waitFor(3, 100)).rejects.toThrow(/3 event\(s\), but 100 ms passed; got 2 event\(s\)/);
    expect(await stream.waitFor((e) => e.event === 'x')).toEqual([
      { event: 'message', data: 'a', id: '' },
      { event: 'x', data: 'b', id: '' },
    ]);
    const later = stream.waitFor(function isC(e) {
      return e.data === 'c';
    });
    res.write('data: c\n\n');
    expect((await later).map((e) => e.data)).toEqual(['a', 'b', 'c']);
    expect(() => stream.waitFor(-1)).toThrow(RangeError);
  });

  test('a wait fails at once when the stream ends first, and waitForEnd resolves', async () => {
    let res!: ServerResponse;
    const server = await serve((_req, r) => {
      res = r;
      head(r);
    });
    const stream = await open(server);
    const waiting = stream.waitFor(2, 60_000);
    const ending = stream.waitForEnd(60_000);
    res.end('data: only\n\n');
    await expect(waiting).rejects.toThrow(/but the stream ended; got 1 event/);
    await ending;
    expect(stream.ended).toBe(true);
    await expect(stream.waitFor(2)).rejects.toThrow(/already ended/);
    expect(await stream.waitFor(1)).toEqual([{ event: 'message', data: 'only', id: '' }]);
  });

  test('close() destroys the socket (the server sees it), is idempotent, and fails pending waits', async () => {
    const serverSaw: string[] = [];
    const server = await serve((_req, r) => {
      head(r);
      r.on('close', () => serverSaw.push('close'));
    });
    const stream = await open(server);
    const waiting = stream.waitFor(1, 60_000);
    await Promise.all([stream.close(), stream.close()]);
    await expect(waiting).rejects.toThrow(/closed by the test/);
    await until(() => serverSaw.length > 0, 'the server to see the client leave', 1000);
    expect(serverSaw).toEqual(['close']);
    await stream.close();
  });

  test('openStream rejects when no head arrives in time, and when nothing listens', async () => {
    const server = await serve(() => {
      /* never answers */
    });
    await expect(openStream({ server, path: '/' }, { timeoutMs: 100 })).rejects.toThrow(
      /no response head .* within 100 ms/,
    );
    const closed = await listen(() => {});
    const { port } = closed.address() as { port: number };
    await closeServer(closed);
    await expect(openStream(`http://127.0.0.1:${port}/`)).rejects.toThrow(/failed: .*ECONNREFUSED/);
  });

  test('openStream sends method, headers and body', async () => {
    let seen: unknown;
    const server = await serve((req, r) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        seen = { method: req.method, url: req.url, accept: req.headers.accept, x: req.headers['x-test'], body };
        r.end();
      });
    });
    const stream = await open(server, 'p?q=1', { method: 'PUT', headers: { 'X-Test': 'yes' }, body: 'hello' });
    await stream.waitForEnd();
    expect(seen).toEqual({ method: 'PUT', url: '/p?q=1', accept: 'text/event-stream', x: 'yes', body: 'hello' });
  });

  test('collectEvents: by count, until a predicate, and a refusal when the status is not 200', async () => {
    const server = await serve((req, r) => {
      if (req.url === '/missing') {
        r.statusCode = 404;
        r.end('no');
        return;
      }
      head(r);
      r.write('data: 1\n\ndata: 2\n\nevent: done\ndata: 3\n\ndata: 4\n\n');
    });
    expect((await collectEvents(server, '/', { count: 2 })).map((e) => e.data)).toEqual(['1', '2']);
    expect((await collectEvents(server, '/', { until: (e) => e.event === 'done' })).map((e) => e.data)).toEqual([
      '1',
      '2',
      '3',
    ]);
    await expect(collectEvents(server, '/missing', { count: 1 })).rejects.toThrow(/answered 404, not 200/);
    await expect(collectEvents(server, '/', { count: 5 }, { timeoutMs: 100 })).rejects.toThrow(
      /100 ms passed; got 4 event/,
    );
  });

  test('expectEvents compares only the fields given, and the length', () => {
    const got: ParsedEvent[] = [ev('a', 'x', '1'), ev('b')];
    expectEvents(got, ['a', { data: 'b', event: 'message' }]);
    expectEvents(got, [{ event: 'x', id: '1' }, { id: '' }]);
    expect(() => expectEvents(got, ['a'])).toThrow();
    expect(() => expectEvents(got, ['a', 'c'])).toThrow();
    expect(() => expectEvents(got, [{ data: 'a', event: 'message' }, 'b'])).toThrow();
  });

  test('expectEvents without jest throws a plain Error with a line per event', () => {
    const g = globalThis as { expect?: unknown };
    const saved = g.expect;
    let error: unknown;
    try {
      delete g.expect;
      expectEvents([ev('a'), ev('b', 'x')], ['a', { data: 'b', event: 'message' }, 'c']);
      expectEvents([ev('a')], ['a']); // a match does not throw
    } catch (e) {
      error = e;
    } finally {
      g.expect = saved;
    }
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe(
      [
        'expected 3 event(s), received 2:',
        "  [0]   { data: 'a' }",
        "- [1] expected { data: 'b', event: 'message' }",
        "+ [1] received { data: 'b', event: 'x' }",
        "- [2] expected { data: 'c' }",
        '+ [2] received (nothing)',
      ].join('\n'),
    );
  });
});
