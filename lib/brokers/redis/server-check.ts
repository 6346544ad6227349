/**
 * What the broker checks of the Redis servers it runs on, once per broker:
 * the eviction policy. A policy other than `noeviction` lets Redis delete
 * keys the guarantees stand on when memory runs out: `allkeys-*` can delete a
 * channel's history (a client resuming over it would not learn of the gap),
 * `volatile-*` the at-most-once marks of calls (a resent call could store its
 * events twice). Said once, as a process warning; a server that does not let
 * us ask (CONFIG renamed or denied, as some managed services do) is not asked
 * again.
 */

export const EVICTION_WARNING = 'SSE_RELAY_EVICTION_POLICY';

interface Node {
  call(...args: unknown[]): Promise<unknown>;
}

/** The policy in a `CONFIG GET maxmemory-policy` reply (RESP2 array or RESP3 map), or undefined. */
function policyOf(reply: unknown): string | undefined {
  if (Array.isArray(reply)) return typeof reply[1] === 'string' ? reply[1] : undefined;
  if (reply instanceof Map) return reply.get('maxmemory-policy') as string | undefined;
  if (reply !== null && typeof reply === 'object') return (reply as Record<string, string>)['maxmemory-policy'];
  return undefined;
}

export class ServerCheck {
  private done = false;

  /** Asks each node its eviction policy (the first time only); warns once when one can evict. */
  run(nodes: readonly Node[], where: (n: Node) => string): void {
    if (this.done) return;
    this.done = true;
    void Promise.all(
      nodes.map((n) =>
        n.call('CONFIG', 'GET', 'maxmemory-policy').then(
          (r) => ({ node: where(n), policy: policyOf(r) }),
          () => ({ node: where(n), policy: undefined }),
        ),
      ),
    ).then((answers) => {
      const evicting = answers.filter((a) => a.policy !== undefined && a.policy !== 'noeviction');
      if (evicting.length === 0) return;
      const list = evicting.map((a) => `${a.node} has ${a.policy}`).join(', ');
      process.emitWarning(
        `sse-relay: Redis may evict the broker's keys when memory runs out (${list}): a channel's history ` +
          "(allkeys-*) or a call's at-most-once mark (volatile-*). Set maxmemory-policy noeviction " +
          'for the guarantees in the README (publishes then fail with not-published instead).',
        { code: EVICTION_WARNING },
      );
    });
  }
}
