// @ts-check
'use strict';

const { createHmac, randomBytes, timingSafeEqual } = require('node:crypto');

/**
 * Stateless sessions in a signed cookie: `<payload>.<signature>`, where payload is
 * base64url JSON `{ u: user, sid, iat }` and signature is HMAC-SHA256 over the
 * payload. The cookie is HttpOnly (scripts can't read it), SameSite=Lax (not sent
 * on cross-site POSTs, so no login CSRF on forms) and Path=/.
 * Logging out revokes the session id in this process, so open streams of that
 * session are closed at the hub's next re-authorisation.
 */

const COOKIE = 'session';
const MAX_AGE_S = 12 * 60 * 60;

function createSessions(secret) {
  const key = secret ? String(secret) : randomBytes(32).toString('hex');
  /** sid -> when its session would have expired anyway (ms). */
  const revoked = new Map();

  function sign(payload) {
    return createHmac('sha256', key).update(payload).digest('base64url');
  }

  function encode(user) {
    const payload = Buffer.from(
      JSON.stringify({ u: user, sid: randomBytes(12).toString('base64url'), iat: Math.floor(Date.now() / 1000) }),
    ).toString('base64url');
    return payload + '.' + sign(payload);
  }

  /** The session in a cookie value, or undefined when missing, forged, expired or revoked. */
  function decode(value) {
    if (typeof value !== 'string' || value.length > 512) return undefined;
    const dot = value.indexOf('.');
    if (dot <= 0) return undefined;
    const payload = value.slice(0, dot);
    const given = Buffer.from(value.slice(dot + 1));
    const expected = Buffer.from(sign(payload));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let data;
    try {
      data = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    if (!data || typeof data.u !== 'string' || typeof data.sid !== 'string' || typeof data.iat !== 'number') {
      return undefined;
    }
    if (Date.now() / 1000 - data.iat > MAX_AGE_S) return undefined;
    if (revoked.has(data.sid)) return undefined;
    return { user: data.u, sid: data.sid, iat: data.iat };
  }

  /** The session of a request (node:http IncomingMessage or Express req). */
  function read(req) {
    const header = req.headers.cookie;
    if (typeof header !== 'string') return undefined;
    for (const part of header.split(';')) {
      const eq = part.indexOf('=');
      if (eq === -1) continue;
      if (part.slice(0, eq).trim() === COOKIE) return decode(part.slice(eq + 1).trim());
    }
    return undefined;
  }

  function cookieAttrs(req) {
    // Secure only over HTTPS: the demo runs on plain http://127.0.0.1.
    return '; Path=/; HttpOnly; SameSite=Lax' + (req.secure ? '; Secure' : '');
  }

  function login(req, res, user) {
    res.append('Set-Cookie', `${COOKIE}=${encode(user)}${cookieAttrs(req)}; Max-Age=${MAX_AGE_S}`);
  }

  function logout(req, res) {
    const session = read(req);
    if (session !== undefined) {
      const now = Date.now();
      for (const [sid, until] of revoked) if (until < now) revoked.delete(sid);
      revoked.set(session.sid, (session.iat + MAX_AGE_S) * 1000);
    }
    res.append('Set-Cookie', `${COOKIE}=${cookieAttrs(req)}; Max-Age=0`);
  }

  return { read, login, logout, encode, decode };
}

module.exports = { createSessions, COOKIE };
