/**
 * The example app on a real socket for one test file: started before its
 * tests, streams closed after each, the app and server closed at the end;
 * `login` posts the login form once per user and keeps the cookie.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { closeServer, listen, openStream, type TestStream } from '../../lib/testing';

export interface ExampleServer<A> {
  /** The app createApp returned (set once the file's beforeAll ran). */
  readonly example: A;
  /** http://127.0.0.1:<port> */
  readonly base: string;
  /** The session cookie of `user` (logged in on first use). */
  login(user: string): Promise<string>;
  /** A stream opened as `user` (anonymous without one), closed after the test. */
  stream(pathAndQuery: string, user?: string): Promise<TestStream>;
  /** Closes `s` after the test too (a stream the test opened itself). */
  track(s: TestStream): TestStream;
}

export function exampleServer<A extends { app: import('express').Express; close(): Promise<void> }>(
  make: () => A,
): ExampleServer<A> {
  let example: A | undefined;
  let server: Server | undefined;
  let base = '';
  const streams: TestStream[] = [];
  const cookies: Record<string, string> = {};

  beforeAll(async () => {
    example = make();
    server = await listen(example.app);
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    await Promise.all(streams.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await example?.close();
    if (server !== undefined) await closeServer(server);
  });

  const login = async (user: string): Promise<string> => {
    if (cookies[user] === undefined) {
      const res = await request(base).post('/login').type('form').send({ user }).expect(303);
      cookies[user] = String(res.headers['set-cookie']?.[0]).split(';')[0]!;
    }
    return cookies[user]!;
  };
  return {
    get example() {
      if (example === undefined) throw new Error('the example app is not started yet (use it inside a test)');
      return example;
    },
    get base() {
      return base;
    },
    login,
    track(s) {
      streams.push(s);
      return s;
    },
    async stream(pathAndQuery, user) {
      const headers: Record<string, string> = {};
      if (user !== undefined) headers.Cookie = await login(user);
      const s = await openStream(base + pathAndQuery, { headers });
      streams.push(s);
      return s;
    },
  };
}
