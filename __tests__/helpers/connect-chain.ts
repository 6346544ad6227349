/**
 * A bare Connect-style chain (what Express does, minus Express): handlers
 * `(req, res, next)` run in order, `mount(prefix, handler)` strips the prefix
 * from `req.url`. Used where Express cannot go (node:http2's compatibility
 * API) to show that sse() and the hub need nothing but Node's req/res.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export type Next = (err?: unknown) => void;
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

export function mount(prefix: string, handler: Middleware): Middleware {
  return (req, res, next) => {
    const url = req.url ?? '/';
    if (url !== prefix && !url.startsWith(prefix + '/') && !url.startsWith(prefix + '?')) return next();
    const original = url;
    req.url = url.slice(prefix.length) || '/';
    if (req.url.startsWith('?')) req.url = '/' + req.url;
    handler(req, res, (err) => {
      req.url = original;
      next(err);
    });
  };
}

export function chain(...handlers: Middleware[]): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    let i = 0;
    const next: Next = (err) => {
      if (err !== undefined) {
        res.statusCode = 500;
        res.end('Internal Server Error');
        return;
      }
      const handler = handlers[i++];
      if (handler === undefined) {
        res.statusCode = 404;
        res.end('Not Found');
        return;
      }
      handler(req, res, next);
    };
    next();
  };
}
