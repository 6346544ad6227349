/**
 * hub.router() and hub.subscribe() under other hosts than Express 5: Express 4
 * and a bare node:http server with a connect-style mount.
 */
import express from 'express';
import http, { type Server } from 'node:http';
import { createHub } from '../lib';
import { openStream } from '../lib/testing';
import { until } from './helpers/wait';

describe('hosts', () => {
  test.each([['express4'], ['node:http']])('hub.router() and hub.subscribe() under %s', async (host) => {
    const hub = createHub({ authorize: (_req, ch) => ch !== 'no' });
    let server: Server;
    if (host === 'express4') {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const express4 = require('express4') as typeof express;
      const app = express4();
      app.get(
        '/one',
        hub.subscribe(() => 'a'),
      );
      app.use('/events', hub.router());
      server = app.listen(0, '127.0.0.1');
    } else {
      const routes = hub.router();
      server = http.createServer((req, res) => {
        // a tiny connect-style mount: strip the prefix like app.use('/events') does
        if (req.url!.startsWith('/events')) {
          req.url = req.url!.slice('/events'.length) || '/';
          routes(req, res, () => res.writeHead(404).end());
        } else if (req.url === '/one') {
          hub.subscribe(() => 'a')(req, res, () => res.writeHead(404).end());
        } else {
          res.writeHead(404).end();
        }
      });
      server.listen(0, '127.0.0.1');
    }
    await new Promise((r) => server.once('listening', r));
    try {
      const s1 = await openStream({ server, path: '/events?channel=a&channel=b' });
      const s2 = await openStream({ server, path: '/one' });
      const refused = await openStream({ server, path: '/events/no' });
      expect(refused.status).toBe(403);
      await refused.close();
      await until(() => hub.stats().connections === 2, 'both streams to be live', 1000);
      expect(hub.stats().connections).toBe(2);
      const id = await hub.publish('a', 'hello', { event: 'greeting' });
      await s1.waitFor(1);
      await s2.waitFor(1);
      expect(s1.events).toEqual([{ event: 'greeting', data: 'hello', id }]);
      expect(s2.events).toEqual([{ event: 'greeting', data: 'hello', id }]);
      expect(s1.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      await s1.close();
      await s2.close();
    } finally {
      await hub.close();
      await new Promise((r) => server.close(r));
    }
  });
});
