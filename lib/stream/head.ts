/**
 * Writes a stream's 200 head onto its response: the factory's frozen head as
 * one shared object when nothing else was set (a bare node:http server), else
 * merged with what the app and earlier middleware set, the CORS headers of an
 * allowed origin, and one `Vary` that names `Origin` as well.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isHttp2 } from '../http';
import { HTTP1_HEADERS, STREAM_HEADERS, corsHeaders, varyWithOrigin } from '../protocol/headers';
import type { Admission } from './admission';

export function writeStreamHead(
  req: IncomingMessage,
  res: ServerResponse,
  admission: Pick<Admission, 'opts' | 'head' | 'origin'>,
): void {
  const opts = admission.opts;
  const head = admission.head;
  if (opts.originAllowed === undefined && res.getHeaderNames().length === 0) {
    res.writeHead(200, head.for(req.httpVersionMajor));
    res.flushHeaders();
    return;
  }
  for (const name in STREAM_HEADERS) res.setHeader(name, STREAM_HEADERS[name]!);
  if (!isHttp2(req)) for (const name in HTTP1_HEADERS) res.setHeader(name, HTTP1_HEADERS[name]!);
  const vary = res.getHeader('Vary');
  if (opts.originAllowed !== undefined) {
    const origin = admission.origin(req);
    const cors = corsHeaders(origin === false ? undefined : origin);
    for (const name in cors) res.setHeader(name, cors[name]!);
  }
  for (const [name, value] of head.extra) res.setHeader(name, value);
  // Vary names Origin too, whoever else set it (the app, a middleware, the headers option)
  if (opts.originAllowed !== undefined) res.setHeader('Vary', varyWithOrigin(vary, head.vary));
  res.writeHead(200);
  res.flushHeaders();
}
