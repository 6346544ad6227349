/**
 * A stream opened without Last-Event-ID starts where it opens, whatever the
 * broker is still delivering: events published before it opened that reach
 * the hub later (a catch-up after the process' subscriber connection was
 * away) are not sent to it. The fence: the stream opens (200) while the
 * subscriber connection is kept away by a proxy, after the events were
 * published; the connection comes back only then. Real redis-server; one
 * partition (where a stream used to be positioned by its first event) and four.
 */
import express from 'express';
import { createHub, type Hub } from '../lib';
import { closeServer, listen, openStream, type TestStream } from '../lib/testing';
import { redisFixtures } from './helpers/redis-fixtures';
import { freePort } from './helpers/redis-server';
import type { Server } from 'node:http';
import { until } from './helpers/wait';

jest.setTimeout(60_000);

const { prefix, broker, server, proxy } = redisFixtures('op');
const hubs: Hub[] = [];
const servers: Server[] = [];
const streams: TestStream[] = [];

afterEach(async () => {
  for (const s of streams.splice(0)) await s.close();
  for (const h of hubs.splice(0)) await h.close();
  for (const s of servers.splice(0)) await closeServer(s);
});

test.each([1, 4])(
  'partitions %d: a stream opened while the broker has events of before it still to deliver gets none of them, then every later one',
  async (partitions) => {
    const s = await server();
    const px = await proxy(s.port);
    const p = prefix();
    const hub = createHub({ authorize: () => true, broker: broker({ url: px.url, prefix: p, partitions }) });
    const publisher = createHub({ authorize: () => true, broker: broker({ url: s.url, prefix: p, partitions }) });
    hubs.push(hub, publisher);
    const a = express();
    a.use('/events', hub.router());
    const http = await listen(a);
    servers.push(http);
    const open = async (): Promise<TestStream> => {
      const t = await openStream({ server: http, path: '/events/status' });
      streams.push(t);
      expect(t.status).toBe(200);
      return t;
    };

    const first = await open(); // the channel is live in this process
    const warm = await publisher.publish('status', 'warm');
    await first.waitFor((e) => e.id === warm);

    // the subscriber connection away: what is published now reaches this process only by its catch-up
    px.retarget(await freePort());
    px.find('sse-relay:sub')[0]!.cut();
    await until(() => px.find('sse-relay:sub').every((c) => c.closed), 'the subscriber connection cut');
    const before: string[] = [];
    for (let i = 0; i < 20; i++) before.push(await publisher.publish('status', `v${i}`));

    // a page opens now (it would render v19 as the state), then the connection comes back
    const late = await open();
    px.retarget(s.port);
    await first.waitFor((e) => e.id === before.at(-1));
    const after = await publisher.publish('status', 'v20');
    await late.waitFor((e) => e.id === after);
    expect(late.events.map((e) => e.data)).toEqual(['v20']);
    await first.waitFor((e) => e.id === after);
    expect(first.events.map((e) => e.data)).toEqual(['warm', ...before.map((_, i) => `v${i}`), 'v20']);
  },
);
