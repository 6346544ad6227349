/**
 * A small TCP proxy on 127.0.0.1 in front of a real server, for fault tests:
 * it can stall one connection (stop forwarding in both directions and never
 * pass on a FIN or RST, as a half-open connection behind an expired NAT entry
 * does), hold what one sends until told to pass it on (a fence), cut one, or cut one right after it forwarded a request matching a
 * pattern, before the reply (a reply lost with its connection). Test
 * infrastructure, not a mock: both ends talk to real sockets.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class ProxyConnection {
  /** The first 64 KiB the client sent (to tell connections apart, e.g. by CLIENT SETNAME). */
  sent = '';
  stalled = false;
  closed = false;
  private dropReplyAfter: string | undefined = undefined;
  private armed = false;
  private onDropped: (() => void) | undefined = undefined;
  private held: Buffer[] | undefined = undefined;

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
  ) {
    client.on('data', (chunk: Buffer) => {
      if (this.sent.length < 65536) this.sent += chunk.toString('latin1');
      if (this.held !== undefined) {
        this.held.push(chunk);
        return;
      }
      this.forward(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (this.stalled) return;
      if (this.armed) {
        // the request reached the server and ran; its reply dies with the connection
        this.armed = false;
        this.dropReplyAfter = undefined;
        this.cut();
        this.onDropped?.();
        return;
      }
      client.write(chunk);
    });
    const end = (): void => {
      if (!this.stalled) this.cut();
    };
    client.on('end', end);
    upstream.on('end', end);
    client.on('error', () => this.cut());
    upstream.on('error', () => this.cut());
    client.on('close', () => {
      if (!this.stalled) this.cut();
    });
  }

  /** The name the client gave itself (CLIENT SETNAME / HELLO ... SETNAME), if any. */
  get name(): string | undefined {
    return /setname\r\n\$\d+\r\n([^\r]*)\r\n/i.exec(this.sent)?.[1];
  }

  /** Whether the client named itself `name`. */
  named(name: string): boolean {
    return this.name === name;
  }

  /** Stops forwarding in both directions; no FIN, no RST reaches either side. */
  stall(): void {
    this.stalled = true;
  }

  private forward(chunk: Buffer): void {
    if (this.stalled) return; // lost on the way
    if (this.dropReplyAfter !== undefined && chunk.toString('latin1').includes(this.dropReplyAfter)) this.armed = true;
    this.upstream.write(chunk);
  }

  /** Holds what the client sends from now on (the server gets nothing, the connection stays up) until release(). */
  hold(): void {
    this.held ??= [];
  }

  /** How many chunks wait in the hold (a fence: the client sent something after hold()). */
  get holding(): number {
    return this.held?.length ?? 0;
  }

  /** Passes on what was held, in order, and forwards again. */
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    if (!this.closed) for (const chunk of held) this.forward(chunk);
  }

  /** Closes both sides at once. */
  cut(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
    this.upstream.destroy();
  }

  /** Forwards the next request containing `pattern`, then cuts the connection instead of passing on its reply. */
  dropReplyTo(pattern: string): Promise<void> {
    this.dropReplyAfter = pattern;
    return new Promise((resolve) => {
      this.onDropped = resolve;
    });
  }
}

export interface TcpProxy {
  readonly port: number;
  readonly url: string;
  readonly connections: ProxyConnection[];
  /** Open connections whose client named itself `name`. */
  find(name: string): ProxyConnection[];
  /** New connections go to `port` from now on (open ones stay where they are). */
  retarget(port: number): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<TcpProxy> {
  const connections: ProxyConnection[] = [];
  let target = targetPort;
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: target });
    connections.push(new ProxyConnection(client, upstream));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    connections,
    find: (name) => connections.filter((c) => !c.closed && c.named(name)),
    retarget: (port) => {
      target = port;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) {
          c.stalled = false;
          c.cut();
        }
        server.close(() => resolve());
      }),
  };
}
