/**
 * Bad options fail when the factory runs, with a message that names the
 * option (and what was probably meant), never later on every request.
 */
import { createHub, MemoryBroker, sse } from '../lib';

const authorize = (): boolean => true;

test.each([
  ['createHub', () => createHub({ authorize, histroy: 5 } as never), /unknown createHub option "histroy" \(did you mean "history"\?\)/],
  ['createHub sse', () => createHub({ authorize, sse: { keepalive: 5 } } as never), /unknown createHub sse option "keepalive" \(did you mean "keepAlive"\?\)/],
  ['MemoryBroker', () => new MemoryBroker({ maxChanels: 5 } as never), /unknown MemoryBroker option "maxChanels" \(did you mean "maxChannels"\?\)/],
  ['sse', () => sse({ maxBuferedBytes: 5 } as never), /unknown sse\(\) option "maxBuferedBytes" \(did you mean "maxBufferedBytes"\?\)/],
  ['sse, far from any name', () => sse({ zzz: 1 } as never), /unknown sse\(\) option "zzz"; known: keepAlive, retry, /],
])('%s refuses an unknown option name', (_what, make, message) => {
  expect(make).toThrow(TypeError);
  expect(make).toThrow(message);
});

test('publish refuses an unknown option name', async () => {
  const hub = createHub({ authorize });
  await expect(hub.publish('a', 'x', { evnt: 'e' } as never)).rejects.toThrow(/unknown publish option "evnt" \(did you mean "event"\?\)/);
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
  ['reauthorizeEvery', { reauthorizeEvery: 0 }, RangeError],
  ['reauthorizeTimeout', { reauthorizeTimeout: -5 }, RangeError],
])('createHub option %s: %p throws %p', (_name, options, error) => {
  expect(() => createHub({ authorize, ...(options as object) })).toThrow(error as ErrorConstructor);
});

test.each([
  [{ maxChannels: 0 }, RangeError],
  [{ maxHistoryBytes: -1 }, RangeError],
  [{ maxHistoryBytes: 'big' }, TypeError],
])('MemoryBroker %p throws %p', (options, error) => {
  expect(() => new MemoryBroker(options as never)).toThrow(error as ErrorConstructor);
});
