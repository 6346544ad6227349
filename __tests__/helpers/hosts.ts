/**
 * The hosts sse() must work under: Express 5, Express 4 and a bare node:http
 * server with a tiny connect-style chain. Each builds an app from a list of
 * middlewares and exact-path routes.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import express from 'express';

// Express 4 is installed under an alias; its API is the same for what we use.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4 = require('express4') as typeof express;

export type Next = (err?: unknown) => void;
export type Mw = (req: IncomingMessage, res: ServerResponse, next: Next) => void;
export type Req = IncomingMessage & { body?: unknown };
export type Handler = (req: Req, res: ServerResponse) => void;
export interface Route {
  method: 'GET' | 'POST';
  path: string;
  handler: Handler;
}

export interface Host {
  name: string;
  /** Express adds X-Powered-By and has res.json. */
  express: boolean;
  json(): Mw;
  app(before: Mw[], routes: Route[]): RequestListener;
}

function expressHost(name: string, lib: typeof express): Host {
  return {
    name,
    express: true,
    json: () => lib.json() as unknown as Mw,
    app(before, routes) {
      const app = lib();
      for (const mw of before) app.use(mw as unknown as express.RequestHandler);
      for (const r of routes) {
        if (r.method === 'GET') app.get(r.path, r.handler as unknown as express.RequestHandler);
        else app.post(r.path, r.handler as unknown as express.RequestHandler);
      }
      return app as unknown as RequestListener;
    },
  };
}

/** A bare node:http server: the middlewares in order, then an exact-path router, 404 otherwise. */
const bareHost: Host = {
  name: 'node:http + connect-style chain',
  express: false,
  json: () => express.json() as unknown as Mw, // body-parser is a plain (req, res, next) middleware
  app(before, routes) {
    return (req, res) => {
      let i = 0;
      const next: Next = (err) => {
        if (err !== undefined) {
          res.statusCode = 500;
          res.end('error');
          return;
        }
        const mw = before[i++];
        if (mw !== undefined) {
          try {
            mw(req, res, next);
          } catch (e) {
            next(e);
          }
          return;
        }
        const path = (req.url ?? '/').split('?')[0];
        const route = routes.find((r) => r.method === req.method && r.path === path);
        if (route === undefined) {
          res.statusCode = 404;
          res.end('Not Found');
          return;
        }
        route.handler(req, res);
      };
      next();
    };
  },
};

export const HOSTS: Host[] = [expressHost('Express 5', express), expressHost('Express 4', express4), bareHost];

const STREAM_HEADER_NAMES = [
  'cache-control',
  'connection',
  'content-type',
  'date',
  'transfer-encoding',
  'x-accel-buffering',
];

/** The names of exactly the headers a stream opens with under `host`. */
export function streamHeaderNames(host: Host): string[] {
  return [...STREAM_HEADER_NAMES, ...(host.express ? ['x-powered-by'] : [])].sort();
}
