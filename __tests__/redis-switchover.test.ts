/**
 * A switchover behind one address (a VIP, a DNS name, a proxy standing for "the
 * master", as a managed Redis' primary endpoint is): the replica is promoted
 * (REPLICAOF NO ONE), the old master follows it (REPLICAOF) and the address now
 * leads to the new master, while connections already open stay on the old one,
 * which answers every write READONLY. What a user relies on: publishing resumes
 * (the publish Redis refused rejects not-published, the next ones go through the
 * new master), the listener gets every acknowledged event once in order with the
 * one reset per channel that a promotion makes, and its subscriber connection
 * follows the address too: live delivery does not hang on the old node still
 * replicating.
 */
import type Redis from 'ioredis';
import type { BrokerEvent } from '../lib/brokers/broker';
import type { RedisBroker } from '../lib/brokers/redis';
import type { SseRelayError } from '../lib/errors';
import { Recorder } from '../lib/testing';
import { redisFixtures } from './helpers/redis-fixtures';
import { until } from './helpers/wait';

jest.setTimeout(60_000);

const { prefix, broker, client, client6, server, proxy } = redisFixtures('so');

/** What ioredis' documentation gives for a switchover behind one address, on the caller's own client. */
const reconnectOnError = (err: Error): boolean => err.message.startsWith('READONLY');

const modes = {
  url: 'the connections the broker opens (url)',
  caller5: "the caller's ioredis 5 client with reconnectOnError (redis)",
  caller6: "the caller's ioredis 6 client with reconnectOnError (redis)",
} as const;

async function linkUp(admin: Redis): Promise<boolean> {
  return /master_link_status:up/.test((await admin.info('replication')) as string);
}

describe('a switchover behind one address (REPLICAOF NO ONE on the replica, REPLICAOF on the old master)', () => {
  for (const mode of Object.keys(modes) as (keyof typeof modes)[]) {
    test(`${modes[mode]}: publishing resumes on the new master, every acknowledged event once in order, one reset per channel`, async () => {
      // (no 5 s wait for more replicas before a sync)
      const fast = ['--repl-diskless-sync-delay', '0'];
      const m = await server({ args: fast });
      const r = await server({ args: [...fast, '--replicaof', '127.0.0.1', String(m.port)] });
      const [mAdmin, rAdmin] = [client(m.url), client(r.url)];
      await until(() => linkUp(rAdmin), 'the replica in sync');
      const address = await proxy(m.port);
      const options = { prefix: prefix(), commandTimeout: 2000, healthCheckInterval: 300 };
      const b: RedisBroker =
        mode === 'url'
          ? broker({ url: address.url, ...options })
          : broker({
              redis: (mode === 'caller5' ? client : client6)(address.url, { reconnectOnError }),
              ...options,
            });
      const rec = new Recorder();
      await b.subscribe('a', rec);
      await b.subscribe('b', rec);
      const acked: BrokerEvent[] = [];
      for (let i = 0; i < 10; i++) acked.push(await b.publish(i % 2 ? 'a' : 'b', { data: 'before' + i }, 1000));
      await rec.until(() => rec.events.length === 10, 'the events before the switchover');
      const replicated = async (): Promise<number> =>
        Number(await rAdmin.call('XLEN', b.keyOf('a'))) + Number(await rAdmin.call('XLEN', b.keyOf('b')));
      await until(async () => (await replicated()) === 10, 'the events before on the replica');
      const lastBefore = acked[acked.length - 1]!;

      // the switchover: connections open stay on the old master, new ones go to the promoted replica
      await rAdmin.call('REPLICAOF', 'NO', 'ONE');
      await mAdmin.call('REPLICAOF', '127.0.0.1', String(r.port));
      address.retarget(r.port);
      await until(() => linkUp(mAdmin), 'the old master following the new one');

      const refused: { i: number; outcome: string | undefined; message: string }[] = [];
      for (let i = 0; i < 20; i++) {
        try {
          acked.push(await b.publish(i % 2 ? 'a' : 'b', { data: 'after' + i }, 1000));
        } catch (err) {
          const e = err as SseRelayError;
          refused.push({ i, outcome: e.outcome, message: e.message });
        }
      }
      // Redis refused the first (nothing stored); it showed the connection leads to a replica
      expect(refused).toEqual([
        { i: 0, outcome: 'not-published', message: expect.stringMatching(/\(READONLY You can't write/) as string },
      ]);
      const after = acked.slice(10);
      expect(after).toHaveLength(19);
      expect(new Set(after.map((e) => e.epoch)).size).toBe(1);
      expect(after[0]!.epoch).not.toBe(lastBefore.epoch); // a promotion starts a new epoch

      await rec.until(() => rec.events.length >= acked.length, 'every acknowledged event', 20_000);
      expect(rec.events.map((e) => e.data)).toEqual(acked.map((e) => e.data));
      expect(rec.events).toEqual(acked); // the same ids and fields, each once
      const head = { partition: 0, epoch: after[0]!.epoch, seq: lastBefore.seq };
      expect([...rec.resets].sort((x, y) => x.channel.localeCompare(y.channel))).toEqual([
        { channel: 'a', head },
        { channel: 'b', head },
      ]);

      // the subscriber connection followed the address as well: one, on the new master
      const onNewMaster = (): boolean => {
        const subs = address.find('sse-relay:sub');
        return subs.length === 1 && subs[0]!.upstream.remotePort === r.port;
      };
      await until(onNewMaster, 'the subscriber connection on the new master');
      // the old node leaves replication (taken out of service, still running): live delivery goes on
      await mAdmin.call('REPLICAOF', 'NO', 'ONE');
      const last = await b.publish('a', { data: 'last' }, 1000);
      await rec.has(last.id);
      expect(rec.events.slice(acked.length)).toEqual([last]);
      expect(rec.resets).toHaveLength(2);
      expect(b.stats().connections).toBe(1);
    });
  }
});
