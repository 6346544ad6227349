/**
 * allowedOrigins: an allowed Origin gets its own Access-Control-Allow-Origin,
 * credentials and Vary; a foreign one gets 403 and nothing else (for the hub,
 * before authorize runs); a request without Origin (same origin) is allowed.
 */
import express from 'express';
import { createHub, type SseOptions } from '../lib';
import { cleanup } from './helpers/cleanup';
import { expectAdmitted, helloApp, open, serve, SSE_HEAD, useHub, useSse } from './helpers/sse-server';

afterEach(cleanup);

describe('allowedOrigins', () => {
  const forms: Array<[string, SseOptions['allowedOrigins']]> = [
    ['array', ['https://app.example', 'https://admin.example']],
    ['function', (origin: string) => origin === 'https://app.example' || origin === 'https://admin.example'],
  ];

  test.each(forms)(
    '%s form: allowed origin gets its own ACAO + credentials + Vary; foreign gets 403 and nothing else; no Origin is allowed',
    async (_name, allowedOrigins) => {
      const mw = useSse({ allowedOrigins });
      const { app } = helloApp(mw);
      const { server } = await serve(app);

      for (const origin of ['https://app.example', 'https://admin.example']) {
        const s = await open(server, '/s', { Origin: origin });
        await expectAdmitted(s);
        expect(s.headers['access-control-allow-origin']).toBe(origin);
        expect(s.headers['access-control-allow-credentials']).toBe('true');
        expect(String(s.headers.vary)).toMatch(/(^|,\s*)Origin(\s*,|$)/);
      }

      for (const origin of ['https://evil.example', 'https://app.example.evil.example', 'http://app.example', 'null']) {
        const s = await open(server, '/s', { Origin: origin });
        expect(s.status).toBe(403);
        expect(s.headers['content-type']).not.toMatch(/event-stream/);
        expect(s.headers['access-control-allow-origin']).toBeUndefined();
        expect(s.headers['access-control-allow-credentials']).toBeUndefined();
        await s.waitForEnd();
        expect(s.raw()).toBe('Forbidden');
      }
      expect(mw.connections).toBe(2);

      const same = await open(server, '/s');
      await expectAdmitted(same);
      expect(same.headers['access-control-allow-origin']).toBeUndefined();
      expect(same.headers['access-control-allow-credentials']).toBeUndefined();
    },
  );

  test.each([
    ['the headers option', { Vary: 'Accept-Encoding' }, undefined, 'Accept-Encoding, Origin'],
    ['an earlier middleware', {}, 'Cookie', 'Cookie, Origin'],
    ['both', { vary: 'Accept-Encoding, cookie' }, 'Cookie', 'Cookie, Accept-Encoding, Origin'],
    ['the headers option, naming Origin already', { Vary: 'origin' }, undefined, 'origin'],
    ['the headers option, as *', { Vary: '*' }, undefined, '*'],
  ])(
    'Vary set by %s: the stream head names Origin as well, in one Vary header, with or without an Origin',
    async (_by, headers, earlier, expected) => {
      const mw = useSse({ allowedOrigins: ['https://app.example'], headers });
      const app = express();
      if (earlier !== undefined)
        app.use((_req, res, next) => {
          res.setHeader('Vary', earlier);
          next();
        });
      app.get('/s', mw, (_req, res) => void res.sse.send('hello'));
      const { server } = await serve(app);
      for (const origin of ['https://app.example', undefined]) {
        const s = await open(server, '/s', origin === undefined ? {} : { Origin: origin });
        await expectAdmitted(s);
        expect(s.headers.vary).toBe(expected);
      }
    },
  );

  test('a check function that throws refuses (403)', async () => {
    const mw = useSse({
      allowedOrigins: () => {
        throw new Error('boom');
      },
    });
    const { app } = helloApp(mw);
    const { server } = await serve(app);
    const s = await open(server, '/s', { Origin: 'https://app.example' });
    expect(s.status).toBe(403);
    await s.waitForEnd();
    expect(mw.connections).toBe(0);
  });

  test('hub: a foreign origin is refused before authorize runs; an allowed one gets CORS headers', async () => {
    const asked: string[] = [];
    const hub = useHub(
      createHub({
        authorize: (_req, channel) => {
          asked.push(channel);
          return true;
        },
        sse: { allowedOrigins: ['https://app.example'] },
      }),
    );
    const app = express();
    app.use('/events', hub.router());
    const { server } = await serve(app);

    const foreign = await open(server, '/events/ch', { Origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(foreign.headers['content-type']).not.toMatch(/event-stream/);
    expect(foreign.headers['access-control-allow-origin']).toBeUndefined();
    await foreign.waitForEnd();
    expect(foreign.raw()).toBe('Forbidden');
    expect(asked).toEqual([]);
    expect(hub.stats().connections).toBe(0);

    const allowed = await open(server, '/events/ch', { Origin: 'https://app.example' });
    expect(allowed.status).toBe(200);
    expect(allowed.headers).toMatchObject(SSE_HEAD);
    expect(allowed.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(allowed.headers['access-control-allow-credentials']).toBe('true');
    expect(String(allowed.headers.vary)).toMatch(/(^|,\s*)Origin(\s*,|$)/);
    expect(asked).toEqual(['ch']);
  });
});
