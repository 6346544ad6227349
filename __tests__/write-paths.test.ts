/**
 * The two write paths (lib/stream/direct.ts): where it is safe, a stream's
 * chunks go to its socket directly; everywhere else through `res.write`.
 * Here: the bytes on the wire (chunk framing included, read from a raw TCP
 * socket) are the same on both paths, `res.end()` after direct writes still
 * ends the body correctly, backpressure reads the same, and the direct path is
 * taken exactly where it is safe. The wire tests of middleware.test.ts and
 * roundtrip.test.ts run on both paths too (SSE_RELAY_WRITE_PATH).
 */
import compression from 'compression';
import { once } from 'node:events';
import http2 from 'node:http2';
import { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { sse } from '../lib';
import { directSocket } from '../lib/stream/direct';
import { closeServer, listen } from '../lib/testing';

const PATHS = [
  { name: 'direct', env: 'direct' },
  { name: 'Node', env: 'node' },
] as const;

const servers: Server[] = [];
afterEach(async () => {
  delete process.env.SSE_RELAY_WRITE_PATH;
  await Promise.all(servers.splice(0).map((s) => closeServer(s)));
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<number> {
  const server = await listen(handler);
  servers.push(server);
  return (server.address() as AddressInfo).port;
}

const LAST_CHUNK = Buffer.from('\r\n0\r\n\r\n');

/**
 * The whole response as bytes, from a raw socket (nothing decodes the chunks):
 * up to the terminating 0-chunk of a chunked body, or until the server closes.
 */
async function rawResponse(port: number, request: string): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  const parts: Buffer[] = [];
  let all = Buffer.alloc(0);
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (b: Buffer) => {
      parts.push(b);
      all = Buffer.concat(parts);
      if (all.length >= LAST_CHUNK.length && all.subarray(all.length - LAST_CHUNK.length).equals(LAST_CHUNK)) resolve();
    });
    socket.once('end', resolve);
    socket.once('error', reject);
    socket.write(request);
  });
  socket.destroy();
  return all;
}

const GET = 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';

/** The head without its Date line (the only thing that differs between two runs). */
function withoutDate(bytes: Buffer): string {
  return bytes.toString('latin1').replace(/\r\nDate: [^\r]*/, '');
}

/** A strict HTTP/1.1 chunked body decoder: every chunk length must match, the body must end with 0\r\n\r\n. */
function dechunk(body: Buffer): { chunks: number; text: string } {
  const out: Buffer[] = [];
  let at = 0;
  for (let chunks = 0; ; chunks++) {
    const eol = body.indexOf('\r\n', at, 'latin1');
    if (eol < 0) throw new Error(`no chunk size line at byte ${at}`);
    const sizeText = body.toString('latin1', at, eol);
    if (!/^[0-9a-f]+$/.test(sizeText)) throw new Error(`bad chunk size ${JSON.stringify(sizeText)}`);
    const size = parseInt(sizeText, 16);
    const start = eol + 2;
    if (size === 0) {
      expect(body.toString('latin1', start)).toBe('\r\n');
      return { chunks, text: Buffer.concat(out).toString('utf8') };
    }
    out.push(body.subarray(start, start + size));
    expect(body.toString('latin1', start + size, start + size + 2)).toBe('\r\n');
    at = start + size + 2;
  }
}

function bodyOf(bytes: Buffer): Buffer {
  const end = bytes.indexOf('\r\n\r\n', 0, 'latin1');
  return bytes.subarray(end + 4);
}

/** One scripted stream: open, retry, events (multi-line, non-ASCII, a lone surrogate), a comment, close. */
function script(req: IncomingMessage, res: ServerResponse): void {
  const mw = sse({ keepAlive: false, retry: 2500 });
  mw(req, res, () => {
    res.sse.send('one', { id: 1 });
    res.sse.send('two\nlines', { event: 'multi', id: 2 });
    res.sse.comment('a comment');
    res.sse.send({ json: 'é😀' });
    res.sse.send('lone \uD800 surrogate');
    res.sse.send('x'.repeat(40_000)); // one chunk bigger than a socket's highWaterMark
    res.sse.close();
  });
}

const EXPECTED_BODY =
  'retry: 2500\n\n' +
  'id: 1\ndata: one\n\n' +
  'id: 2\nevent: multi\ndata: two\ndata: lines\n\n' +
  ': a comment\n\n' +
  'data: {"json":"é😀"}\n\n' +
  'data: lone \uFFFD surrogate\n\n' +
  'data: ' +
  'x'.repeat(40_000) +
  '\n\n';

describe('the same bytes on the wire on both write paths', () => {
  test('an sse() stream from open to close(), chunk framing and the terminating 0-chunk included', async () => {
    const wire: Record<string, string> = {};
    for (const path of PATHS) {
      process.env.SSE_RELAY_WRITE_PATH = path.env;
      const port = await serve(script);
      const bytes = await rawResponse(port, GET);
      const { text } = dechunk(bodyOf(bytes));
      expect({ path: path.name, text }).toEqual({ path: path.name, text: EXPECTED_BODY });
      wire[path.name] = withoutDate(bytes);
    }
    expect(wire.direct).toBe(wire.Node);
  });

  test.each(PATHS)('$name path: a write after the client left ends the stream, never throws', async (path) => {
    process.env.SSE_RELAY_WRITE_PATH = path.env;
    let res!: ServerResponse;
    const opened = new Promise<void>((resolve) => {
      void serve((req, r) => {
        res = r;
        sse({ keepAlive: false })(req, r, () => {
          r.sse.open();
          resolve();
        });
      }).then((port) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.write(GET);
        void opened.then(() => socket.destroy());
      });
    });
    await opened;
    await once(res, 'close');
    expect(res.sse.send('late')).toBe(false);
    expect(res.sse.closed).toBe(true);
  });
});

describe('backpressure reads the same on both paths', () => {
  test.each(PATHS)(
    '$name path: a client that does not read makes res.writableNeedDrain true, and drain resumes',
    async (path) => {
      process.env.SSE_RELAY_WRITE_PATH = path.env;
      let res!: ServerResponse;
      let ready!: () => void;
      const opened = new Promise<void>((r) => (ready = r));
      const port = await serve((req, r) => {
        res = r;
        sse({ keepAlive: false, maxBufferedBytes: 64 * 1024 * 1024 })(req, r, () => {
          r.sse.open();
          ready();
        });
      });
      const socket = net.connect(port, '127.0.0.1');
      socket.write(GET);
      await opened;
      socket.pause();
      // Bounded: at most 4,000 x 16 KiB = 64 MiB before the kernel buffers are full.
      let sends = 0;
      while (res.sse.send('y'.repeat(16 * 1024)) && sends < 4000) sends++;
      expect(res.writableNeedDrain).toBe(true);
      expect(res.writableLength).toBeGreaterThan(0);
      const drained = once(res, 'drain');
      socket.resume();
      await drained;
      expect(res.writableNeedDrain).toBe(false);
      res.sse.close();
      socket.destroy();
    },
  );
});

describe('the direct path is taken only where it is safe', () => {
  /** What directSocket() decided for one request, after the head was flushed as a stream does. */
  async function decide(
    request: string,
    before?: (req: IncomingMessage, res: ServerResponse, next: () => void) => void,
  ): Promise<boolean> {
    let decided!: (direct: boolean) => void;
    const result = new Promise<boolean>((r) => (decided = r));
    const port = await serve((req, res) => {
      const go = (): void => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.flushHeaders();
        decided(directSocket(req, res) !== undefined);
        res.end();
      };
      if (before === undefined) go();
      else before(req, res, go);
    });
    await rawResponse(port, request);
    return result;
  }

  test('a plain HTTP/1.1 GET: direct', async () => {
    expect(await decide(GET)).toBe(true);
  });

  test('SSE_RELAY_WRITE_PATH=node: never direct', async () => {
    process.env.SSE_RELAY_WRITE_PATH = 'node';
    expect(await decide(GET)).toBe(false);
  });

  test('HEAD: not direct (no body)', async () => {
    expect(await decide('HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toBe(false);
  });

  test('HTTP/1.0: not direct (no chunked encoding)', async () => {
    expect(await decide('GET / HTTP/1.0\r\nHost: x\r\n\r\n')).toBe(false);
  });

  test('compression (res.write wrapped, res.flush): not direct', async () => {
    const mw = compression({ threshold: 0 });
    expect(
      await decide(
        'GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n',
        (req, res, next) => mw(req as never, res as never, next),
      ),
    ).toBe(false);
  });

  test('anything wrapping res.write: not direct', async () => {
    expect(
      await decide(GET, (_req, res, next) => {
        const write = res.write;
        res.write = function (this: ServerResponse, ...args: unknown[]) {
          return (write as (...a: unknown[]) => boolean).apply(this, args);
        } as typeof res.write;
        next();
      }),
    ).toBe(false);
  });

  test('a stream on the direct path never calls res.write; on Node path it does', async () => {
    const calls: Record<string, number> = {};
    for (const path of PATHS) {
      process.env.SSE_RELAY_WRITE_PATH = path.env;
      let count = 0;
      const port = await serve((req, res) => {
        sse({ keepAlive: false })(req, res, () => {
          res.sse.open();
          const write = res.write;
          // Counted after the decision was made (at open): this wrapper must not change it.
          res.write = function (this: ServerResponse, ...args: unknown[]) {
            count++;
            return (write as (...a: unknown[]) => boolean).apply(this, args);
          } as typeof res.write;
          res.sse.send('a');
          res.sse.send('b');
          res.sse.close();
        });
      });
      const { text } = dechunk(bodyOf(await rawResponse(port, GET)));
      expect(text).toBe('data: a\n\ndata: b\n\n');
      calls[path.name] = count;
    }
    expect(calls).toEqual({ direct: 0, Node: 2 });
  });

  test('HTTP/2: never direct', async () => {
    let decided!: (direct: boolean) => void;
    const result = new Promise<boolean>((r) => (decided = r));
    const server = http2.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      decided(directSocket(req as unknown as IncomingMessage, res as unknown as ServerResponse) !== undefined);
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const request = session.request({ ':path': '/' });
    request.resume();
    await once(request, 'end');
    session.close();
    await new Promise((r) => server.close(r));
    expect(await result).toBe(false);
  });

  test('a response that is not the socket\u2019s current one (pipelined) is not direct', async () => {
    // Two pipelined requests: the second response has no socket until the first ended.
    const seen: boolean[] = [];
    const port = await serve((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.flushHeaders();
      seen.push(directSocket(req, res) !== undefined);
      if (req.url === '/1') setImmediate(() => res.end('1'));
      else res.end('2');
    });
    const socket: Socket = net.connect(port, '127.0.0.1');
    socket.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    socket.resume();
    await once(socket, 'end');
    socket.destroy();
    expect(seen).toEqual([true, false]);
  });
});
