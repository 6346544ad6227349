/**
 * The encoder, byte for byte. Each expectation is the exact text (and, where
 * encoding matters, the exact UTF-8 bytes) that must go on the wire; the
 * parsed column checks what a browser makes of it.
 */
import { encodeComment, encodeEvent, encodeRetry, type EventFields, type Serializer } from '../lib';
import { parseStream, type ParsedEvent } from '../lib/testing';
import { encodeData, encodeFrame } from '../lib/protocol/encode';

interface Case {
  name: string;
  fields: EventFields;
  serialize?: Serializer;
  wire: string;
  /** What a spec parser dispatches from `wire` (event defaults to message, id to ''). */
  parsed: Partial<ParsedEvent> & { data: string };
}

const CASES: Case[] = [
  { name: 'plain string', fields: { data: 'hello' }, wire: 'data: hello\n\n', parsed: { data: 'hello' } },
  { name: 'CRLF splits the line', fields: { data: 'a\r\nb' }, wire: 'data: a\ndata: b\n\n', parsed: { data: 'a\nb' } },
  {
    name: 'a lone CR splits the line',
    fields: { data: 'a\rb' },
    wire: 'data: a\ndata: b\n\n',
    parsed: { data: 'a\nb' },
  },
  {
    name: 'a trailing LF is an empty last line',
    fields: { data: 'a\n' },
    wire: 'data: a\ndata: \n\n',
    parsed: { data: 'a\n' },
  },
  {
    name: 'a single LF is two empty lines',
    fields: { data: '\n' },
    wire: 'data: \ndata: \n\n',
    parsed: { data: '\n' },
  },
  {
    name: 'CR LF CR is three lines',
    fields: { data: '\r\n\r' },
    wire: 'data: \ndata: \ndata: \n\n',
    parsed: { data: '\n\n' },
  },
  {
    name: 'LF CR is two breaks',
    fields: { data: 'a\n\rb' },
    wire: 'data: a\ndata: \ndata: b\n\n',
    parsed: { data: 'a\n\nb' },
  },
  { name: 'the empty string is still an event', fields: { data: '' }, wire: 'data: \n\n', parsed: { data: '' } },
  {
    name: 'a leading space survives (one separator space first)',
    fields: { data: ' lead' },
    wire: 'data:  lead\n\n',
    parsed: { data: ' lead' },
  },
  {
    name: 'a leading colon is data, not a comment',
    fields: { data: ': x' },
    wire: 'data: : x\n\n',
    parsed: { data: ': x' },
  },
  {
    name: 'NUL inside data passes through',
    fields: { data: 'a\0b' },
    wire: 'data: a\0b\n\n',
    parsed: { data: 'a\0b' },
  },
  { name: 'emoji', fields: { data: '😀' }, wire: 'data: 😀\n\n', parsed: { data: '😀' } },
  {
    name: 'a BOM inside data is kept',
    fields: { data: '\uFEFFx' },
    wire: 'data: \uFEFFx\n\n',
    parsed: { data: '\uFEFFx' },
  },
  {
    name: "id: '' is written (falsy is not absent)",
    fields: { id: '', data: 'x' },
    wire: 'id: \ndata: x\n\n',
    parsed: { data: 'x', id: '' },
  },
  { name: 'id 0 is written', fields: { id: 0, data: 'x' }, wire: 'id: 0\ndata: x\n\n', parsed: { data: 'x', id: '0' } },
  { name: 'a numeric id', fields: { id: 42, data: 'x' }, wire: 'id: 42\ndata: x\n\n', parsed: { data: 'x', id: '42' } },
  {
    name: 'retry: 0 is written',
    fields: { retry: 0, data: 'x' },
    wire: 'retry: 0\ndata: x\n\n',
    parsed: { data: 'x' },
  },
  {
    name: "event: '' is written and means message",
    fields: { event: '', data: 'x' },
    wire: 'event: \ndata: x\n\n',
    parsed: { data: 'x', event: 'message' },
  },
  {
    name: 'field order: id, event, retry, data',
    fields: { data: 'd', retry: 10, event: 'e', id: '1' },
    wire: 'id: 1\nevent: e\nretry: 10\ndata: d\n\n',
    parsed: { data: 'd', event: 'e', id: '1' },
  },
  {
    name: 'leading spaces in event and id are kept',
    fields: { event: ' e', id: ' 1', data: 'x' },
    wire: 'id:  1\nevent:  e\ndata: x\n\n',
    parsed: { data: 'x', event: ' e', id: ' 1' },
  },
  {
    name: 'an object through JSON.stringify',
    fields: { data: { a: 1, b: 'x' } },
    wire: 'data: {"a":1,"b":"x"}\n\n',
    parsed: { data: '{"a":1,"b":"x"}' },
  },
  {
    name: 'JSON escapes line breaks: one line',
    fields: { data: { t: 'a\r\nb' } },
    wire: 'data: {"t":"a\\r\\nb"}\n\n',
    parsed: { data: '{"t":"a\\r\\nb"}' },
  },
  { name: 'an array', fields: { data: [1, '2'] }, wire: 'data: [1,"2"]\n\n', parsed: { data: '[1,"2"]' } },
  { name: 'a number', fields: { data: 5 }, wire: 'data: 5\n\n', parsed: { data: '5' } },
  { name: 'null', fields: { data: null }, wire: 'data: null\n\n', parsed: { data: 'null' } },
  { name: 'false', fields: { data: false }, wire: 'data: false\n\n', parsed: { data: 'false' } },
  {
    name: 'a custom serializer',
    fields: { data: { n: 2 } },
    serialize: (v) => `n=${(v as { n: number }).n}`,
    wire: 'data: n=2\n\n',
    parsed: { data: 'n=2' },
  },
  {
    name: 'a custom serializer that returns line breaks is split like any data',
    fields: { data: ['a', 'b', 'c'] },
    serialize: (v) => (v as string[]).join('\r\n'),
    wire: 'data: a\ndata: b\ndata: c\n\n',
    parsed: { data: 'a\nb\nc' },
  },
  {
    name: 'strings never go through the serializer',
    fields: { data: 'raw' },
    serialize: () => 'serialized',
    wire: 'data: raw\n\n',
    parsed: { data: 'raw' },
  },
  // Injection attempts through data: always one event, the text intact.
  {
    name: 'data "\\n\\ndata: x" stays one event',
    fields: { data: 'a\n\ndata: x' },
    wire: 'data: a\ndata: \ndata: data: x\n\n',
    parsed: { data: 'a\n\ndata: x' },
  },
  {
    name: 'data "\\revent: x" cannot set the event',
    fields: { data: '\revent: x' },
    wire: 'data: \ndata: event: x\n\n',
    parsed: { data: '\nevent: x' },
  },
  {
    name: 'data "\\r\\nid: 1" cannot set the id',
    fields: { data: '\r\nid: 1' },
    wire: 'data: \ndata: id: 1\n\n',
    parsed: { data: '\nid: 1', id: '' },
  },
  {
    name: 'data "\\r\\rretry: 1" cannot set retry',
    fields: { data: '\r\rretry: 1' },
    wire: 'data: \ndata: \ndata: retry: 1\n\n',
    parsed: { data: '\n\nretry: 1' },
  },
];

describe('encodeEvent: exact bytes', () => {
  test.each(CASES)('$name', ({ fields, serialize, wire, parsed }) => {
    const out = encodeEvent(fields, serialize);
    expect(out).toBe(wire);
    const seen = parseStream(out);
    expect(seen.events).toEqual([{ event: 'message', id: '', ...parsed }]);
  });

  test('retry: is announced to the parser', () => {
    expect(parseStream(encodeEvent({ retry: 0, data: 'x' })).retries).toEqual([0]);
    expect(parseStream(encodeEvent({ retry: 2500, data: 'x' })).retries).toEqual([2500]);
  });

  test('emoji are 4 UTF-8 bytes on the wire', () => {
    expect(Buffer.from(encodeEvent({ data: '😀' }), 'utf8')).toEqual(
      Buffer.from([0x64, 0x61, 0x74, 0x61, 0x3a, 0x20, 0xf0, 0x9f, 0x98, 0x80, 0x0a, 0x0a]),
    );
  });

  test('a lone surrogate becomes U+FFFD (EF BF BD) on the wire, and nothing else changes', () => {
    for (const lone of ['\uD800', '\uDFFF']) {
      const out = encodeEvent({ data: `a${lone}b` });
      expect(out).toBe(`data: a${lone}b\n\n`);
      expect(Buffer.from(out, 'utf8')).toEqual(
        Buffer.from([0x64, 0x61, 0x74, 0x61, 0x3a, 0x20, 0x61, 0xef, 0xbf, 0xbd, 0x62, 0x0a, 0x0a]),
      );
    }
  });

  test('a serializer that returns no string is refused with a TypeError', () => {
    expect(() => encodeEvent({ data: undefined })).toThrow(TypeError);
    expect(() => encodeEvent({})).toThrow(TypeError);
    expect(() => encodeEvent({ data: () => 1 })).toThrow(TypeError); // JSON.stringify(fn) is undefined
    expect(() => encodeEvent({ data: 1 }, (() => 7) as unknown as Serializer)).toThrow(TypeError);
  });

  test('a serializer that throws propagates its error', () => {
    const boom = new Error('boom');
    expect(() =>
      encodeEvent({ data: {} }, () => {
        throw boom;
      }),
    ).toThrow(boom);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => encodeEvent({ data: cyclic })).toThrow(TypeError);
  });

  test('fields must be an object', () => {
    expect(() => encodeEvent(null as unknown as EventFields)).toThrow(TypeError);
    expect(() => encodeEvent('x' as unknown as EventFields)).toThrow(TypeError);
  });
});

describe('encodeEvent: injection through event and id is refused', () => {
  const BAD = ['a\rb', 'a\nb', 'a\r\nb', 'a\0b', '\n', 'x\n\ndata: evil', 'x\revent: evil', '\0'];

  test.each(BAD)('event %j throws TypeError naming the field', (bad) => {
    expect(() => encodeEvent({ event: bad, data: 'x' })).toThrow(TypeError);
    expect(() => encodeEvent({ event: bad, data: 'x' })).toThrow(/event/);
  });

  test.each(BAD)('id %j throws TypeError naming the field', (bad) => {
    expect(() => encodeEvent({ id: bad, data: 'x' })).toThrow(TypeError);
    expect(() => encodeEvent({ id: bad, data: 'x' })).toThrow(/\bid\b/);
  });

  test.each([NaN, Infinity, -Infinity])('id %p (not a finite number) throws TypeError', (bad) => {
    expect(() => encodeEvent({ id: bad, data: 'x' })).toThrow(TypeError);
  });

  test.each([5, {}, null, true])('event %p (not a string) throws TypeError', (bad) => {
    expect(() => encodeEvent({ event: bad as unknown as string, data: 'x' })).toThrow(TypeError);
  });
});

describe('encodeEvent / encodeRetry: retry must be a non-negative integer', () => {
  const BAD: unknown[] = [-1, 1.5, NaN, Infinity, -0.5, '5', '', null, 2 ** 53];

  test.each(BAD)('retry %p throws RangeError', (bad) => {
    expect(() => encodeEvent({ retry: bad as number, data: 'x' })).toThrow(RangeError);
    expect(() => encodeEvent({ retry: bad as number, data: 'x' })).toThrow(/retry/);
    expect(() => encodeRetry(bad as number)).toThrow(RangeError);
  });

  test.each([
    [0, 'retry: 0\n\n'],
    [1, 'retry: 1\n\n'],
    [3000, 'retry: 3000\n\n'],
  ])('encodeRetry(%p)', (ms, wire) => {
    expect(encodeRetry(ms)).toBe(wire);
    expect(parseStream(wire)).toEqual({ events: [], comments: [], retries: [ms] });
  });
});

describe('encodeComment', () => {
  test.each([
    ['', ': \n\n', ['']],
    ['hi', ': hi\n\n', ['hi']],
    ['a\nb', ': a\n: b\n\n', ['a', 'b']],
    ['a\r\nb\rc', ': a\n: b\n: c\n\n', ['a', 'b', 'c']],
    ['x\n\ndata: evil', ': x\n: \n: data: evil\n\n', ['x', '', 'data: evil']],
  ])('encodeComment(%j)', (text, wire, comments) => {
    expect(encodeComment(text)).toBe(wire);
    expect(parseStream(wire)).toEqual({ events: [], comments, retries: [] });
  });

  test('no argument is an empty comment', () => {
    expect(encodeComment()).toBe(': \n\n');
  });

  test('non-string text throws TypeError', () => {
    expect(() => encodeComment(5 as unknown as string)).toThrow(TypeError);
  });
});

test('encodeFrame (the fan-out path) writes each event name of a sequence, alternating or repeated, exactly', () => {
  const names = ['tick', 'tick', 'tock', undefined, 'tick', 'tock', 'tock', 'über'];
  const frames = names.map((event, i) => encodeFrame(String(i), event, encodeData(`d${i}`)));
  expect(frames).toEqual(names.map((event, i) => encodeEvent({ id: String(i), event, data: `d${i}` })));
  expect(frames[2]).toBe('id: 2\nevent: tock\ndata: d2\n\n');
  expect(frames[3]).toBe('id: 3\ndata: d3\n\n');
});
