/**
 * Type tests for typed event catalogs, checked by `npm run typecheck` (tsc).
 * Every `@ts-expect-error` line MUST be an error: if the types stopped
 * catching it, tsc fails with "Unused '@ts-expect-error' directive".
 */
import express from 'express';
import { createHub, sse } from '../../lib';

interface Events {
  status: { orderId: string; state: 'paid' | 'shipped' };
  progress: number;
}
interface WithMessage {
  message: string;
  ping: null;
}

export async function typedHub(): Promise<void> {
  const hub = createHub<Events>({ authorize: () => true });
  await hub.publish('order:1', { orderId: '1', state: 'paid' }, { event: 'status' });
  await hub.publish('job:1', 42, { event: 'progress', coalesce: 'job:1' });
  // @ts-expect-error unknown event name
  await hub.publish('order:1', { orderId: '1', state: 'paid' }, { event: 'stat' });
  // @ts-expect-error payload of the wrong shape
  await hub.publish('order:1', { orderId: 1, state: 'paid' }, { event: 'status' });
  // @ts-expect-error payload of another event
  await hub.publish('job:1', 'fifty', { event: 'progress' });
  // @ts-expect-error a catalog without `message` needs an event name
  await hub.publish('order:1', 'hello');

  const m = createHub<WithMessage>({ authorize: () => true });
  await m.publish('c', 'hello'); // unnamed = message: string
  await m.publish('c', null, { event: 'ping' });
  // @ts-expect-error message payload is a string
  await m.publish('c', 42);
}

export async function untypedHub(): Promise<void> {
  const hub = createHub({ authorize: () => true });
  await hub.publish('a', { anything: true });
  await hub.publish('a', 'text', { event: 'whatever' });
  await hub.publish('a', 1);
}

export function typedMiddleware(): void {
  const app = express();
  const events = sse<Events>();
  app.use(events);
  app.get('/progress', (_req, res) => {
    const stream = events.stream(res);
    stream.send(10, { event: 'progress' });
    // @ts-expect-error wrong payload for progress
    stream.send('10', { event: 'progress' });
    // @ts-expect-error unknown event name
    stream.send(10, { event: 'progres' });
  });
  app.get('/status', (_req, res) => {
    events.stream(res).send({ orderId: '1', state: 'shipped' }, { event: 'status', id: '7' });
    // @ts-expect-error state is a union
    events.stream(res).send({ orderId: '1', state: 'lost' }, { event: 'status' });
  });
  // Untyped: res.sse is there on every Express response and takes anything.
  app.get('/plain', (_req, res) => {
    res.sse.send({ any: 'thing' });
    res.sse.send('x', { event: 'y', id: 1 });
    res.sse.comment('hi');
  });
}
