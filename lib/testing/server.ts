/** Running an app on 127.0.0.1 for a test, and shutting it down with its open streams. */
import { createServer, type RequestListener, type Server } from 'node:http';

/**
 * Starts `handler` (an Express/Connect app or any request listener) on a free
 * port of 127.0.0.1 and resolves with the listening server. Pair it with
 * {@link closeServer}.
 */
export function listen(handler: RequestListener): Promise<Server> {
  const server = createServer(handler);
  return new Promise<Server>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}

/** Closes `server` and every connection it still holds (open streams included); resolves once it is closed. */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (!server.listening) return resolve();
    server.close((err) => (err ? reject(err) : resolve()));
    server.closeAllConnections();
  });
}
