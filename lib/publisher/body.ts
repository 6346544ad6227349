/**
 * The request body of a publish: which content types are accepted, and
 * reading at most `limit` bytes of it (a larger body is refused without being
 * read into memory: the Content-Length is checked up front, and reading stops
 * at the limit).
 */
import type { IncomingMessage } from 'node:http';

export type BodyKind = 'json' | 'form';

/**
 * `application/json` or `application/x-www-form-urlencoded` (either with no
 * charset or `charset=utf-8`), not content-encoded; anything else is undefined
 * (a 415).
 */
export function bodyKind(req: IncomingMessage): BodyKind | undefined {
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') return undefined;
  const header = req.headers['content-type'];
  if (header === undefined) return undefined;
  const [type, ...params] = header.split(';');
  let kind: BodyKind;
  switch (type!.trim().toLowerCase()) {
    case 'application/json':
      kind = 'json';
      break;
    case 'application/x-www-form-urlencoded':
      kind = 'form';
      break;
    default:
      return undefined;
  }
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq === -1) {
      if (param.trim() === '') continue;
      return undefined;
    }
    const name = param.slice(0, eq).trim().toLowerCase();
    const value = param
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/, '$1')
      .toLowerCase();
    if (name === 'charset' && value !== 'utf-8' && value !== 'utf8') return undefined;
  }
  return kind;
}

/** The declared Content-Length, if there is a valid one. */
export function declaredLength(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  if (header === undefined || !/^[0-9]{1,16}$/.test(header)) return undefined;
  return Number(header);
}

export type BodyResult =
  { readonly ok: true; readonly body: Buffer } | { readonly ok: false; readonly reason: 'too-large' | 'aborted' };

const TOO_LARGE: BodyResult = { ok: false, reason: 'too-large' };
const ABORTED: BodyResult = { ok: false, reason: 'aborted' };

/**
 * Reads the body, at most `limit` bytes. Over the limit (declared or read) it
 * stops reading at once and resolves `too-large`; the caller answers 413 with
 * `Connection: close`, so the rest is never read. A client that leaves first
 * resolves `aborted`.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  const declared = declaredLength(req);
  if (declared !== undefined && declared > limit) return Promise.resolve(TOO_LARGE);
  return new Promise<BodyResult>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: BodyResult): void => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('error', onAbort);
      req.removeListener('close', onAbort);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        req.pause();
        finish(TOO_LARGE);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish({ ok: true, body: Buffer.concat(chunks, size) });
    const onAbort = (): void => finish(ABORTED);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAbort);
    req.on('close', onAbort);
  });
}

/** Whether something in front (express.json(), express.urlencoded(), body-parser…) has read the body already. */
export function bodyConsumed(req: IncomingMessage): boolean {
  return req.readableEnded || (req.complete && !req.readable) || (req as { _body?: unknown })._body === true;
}
