/**
 * The direct write path: where it is safe, a stream's bytes go straight to
 * its socket, framed as the HTTP/1.1 chunk Node's http would write
 * (`<hex length>\r\n<data>\r\n`), instead of through `res.write` (four
 * internal writes, a cork and an uncork per call). The bytes on the wire are
 * the same, and so is the backpressure accounting: `res.write` returns the
 * socket's `write()` result and, when that is false, marks the response as
 * needing 'drain' (Node's http re-emits the socket's 'drain' on it); the
 * direct path does exactly that (`needDrain`), so `res.writableLength`,
 * `res.writableNeedDrain` and the response's 'drain' mean what they meant.
 * `res.end()` still belongs to Node: it writes the last chunk and the
 * terminating `0\r\n\r\n`.
 *
 * Safe means: an HTTP/1.1 response (never HTTP/2, never HTTP/1.0), chunked by
 * Node, with a body (not HEAD), its head already on the socket, nothing
 * buffered in the response, this response the socket's current one, and
 * nobody wrapping it (`res.write`/`res.end` are Node's own, no `res.flush`
 * from compression). Anything else keeps Node's path.
 *
 * SSE_RELAY_WRITE_PATH=node turns the direct path off (tests run the wire
 * tests on both paths; the bench compares them).
 */
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

const nodeWrite = ServerResponse.prototype.write;
const nodeEnd = ServerResponse.prototype.end;

/** The internals this check reads (stable across Node 18-24, read defensively). */
interface NodeResponse {
  chunkedEncoding?: unknown;
  _hasBody?: unknown;
  _headerSent?: unknown;
  flush?: unknown;
}

/** Node's private "needs drain" flag of a response (found by its description once), or null when this Node has none. */
let kNeedDrain: symbol | null | undefined;

function needDrainSymbol(res: ServerResponse): symbol | null {
  if (kNeedDrain === undefined) {
    kNeedDrain = Object.getOwnPropertySymbols(res).find((s) => s.description === 'kNeedDrain') ?? null;
  }
  return kNeedDrain;
}

/** After a direct write returned false: the response needs 'drain', as after `res.write` returned false. */
export function needDrain(res: ServerResponse): void {
  (res as unknown as Record<symbol, boolean>)[kNeedDrain as symbol] = true;
}

/** Whether the direct path is allowed in this process at all. */
function enabled(): boolean {
  return process.env.SSE_RELAY_WRITE_PATH !== 'node';
}

/** The socket to write `res`'s chunks to directly, or undefined to keep Node's path. Call after the head was flushed. */
export function directSocket(req: IncomingMessage, res: ServerResponse): Socket | undefined {
  if (!enabled()) return undefined;
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor !== 1 || req.method === 'HEAD') return undefined;
  const r = res as ServerResponse & NodeResponse;
  if (r.write !== nodeWrite || r.end !== nodeEnd || r.flush !== undefined) return undefined;
  if (r.chunkedEncoding !== true || r._hasBody !== true || r._headerSent !== true) return undefined;
  const socket = res.socket as (Socket & { _httpMessage?: unknown }) | null;
  if (socket === null || socket._httpMessage !== res || !socket.writable || socket.destroyed) return undefined;
  if (res.writableLength !== socket.writableLength) return undefined; // something is buffered in the response
  const sym = needDrainSymbol(res);
  if (sym === null || typeof (res as unknown as Record<symbol, unknown>)[sym] !== 'boolean') return undefined;
  return socket;
}

const CRLF = 0x0d0a;

/** `bytes` as one HTTP/1.1 chunk, exactly as Node frames `res.write(bytes)`. Empty input: empty output. */
export function chunkOfBytes(bytes: Buffer): Buffer {
  const length = bytes.length;
  if (length === 0) return bytes;
  const hex = length.toString(16);
  const out = Buffer.allocUnsafe(hex.length + 2 + length + 2);
  let at = out.write(hex, 0, 'latin1');
  at = out.writeUInt16BE(CRLF, at);
  at += bytes.copy(out, at);
  out.writeUInt16BE(CRLF, at);
  return out;
}

/** `text` as one HTTP/1.1 chunk (a string to write as UTF-8), exactly as Node frames `res.write(text)`. */
export function chunkOfText(text: string): string {
  if (text === '') return '';
  return Buffer.byteLength(text, 'utf8').toString(16) + '\r\n' + text + '\r\n';
}
