/**
 * RedisBroker's catch-up in pages, on real redis-servers: the page function
 * (lib/brokers/redis/scripts-page.ts) called directly, page after page, with
 * budgets from 1 seq and 100 bytes up.
 */
import type { BrokerEvent } from '../lib/brokers/broker';
import { PartitionKeys } from '../lib/brokers/redis/partitions';
import { FN_PAGE } from '../lib/brokers/redis/scripts';
import { redisFixtures } from './helpers/redis-fixtures';

jest.setTimeout(60_000);

const { prefix, broker, client, server } = redisFixtures('cu');

describe('a catch-up in pages', () => {
  test('one page call: at most <span> seqs past the lowest position, entries in (after, to], bytes within the budget plus one entry', async () => {
    const s = await server();
    const p = prefix();
    const pub = broker({ url: s.url, prefix: p });
    const chans = ['a', 'b', 'c', 'd'];
    const acked: BrokerEvent[] = [];
    for (let i = 0; i < 200; i++)
      acked.push(await pub.publish(chans[(i * i) % 4]!, { data: 'y'.repeat((i * 53) % 400) }, 1000));
    const redis = client(s.url);
    const k = new PartitionKeys(p, 0, 1);
    const afters = [0, 20, 5, 0];
    const got = new Map<string, number>();
    for (let n = 0; n < 200; n++) {
      const span = 1 + (n % 23);
      const bytes = 100 + ((n * 131) % 900);
      const reply = (await redis.call(
        'FCALL',
        FN_PAGE,
        2 + chans.length,
        k.base,
        k.dropped,
        ...chans.map((c) => k.channel(c)),
        '',
        0,
        'tcu',
        '',
        span,
        bytes,
        ...afters,
      )) as unknown[];
      const to = Number(reply[3]);
      const head = Number(reply[1]);
      expect(to).toBeLessThanOrEqual(Math.min(head, Math.min(...afters) + span));
      const entries: { seq: number; size: number }[] = [];
      chans.forEach((c, i) => {
        expect(reply[4 + 2 * i]).toBe(1);
        for (const [id, fields] of reply[5 + 2 * i] as [string, string[]][]) {
          const seq = Number(id.split('-')[0]);
          expect(seq).toBeGreaterThan(afters[i]!);
          expect(seq).toBeLessThanOrEqual(to);
          got.set(c + seq, (got.get(c + seq) ?? 0) + 1);
          entries.push({ seq, size: id.length + fields.reduce((a, f) => a + f.length, 0) });
        }
        afters[i] = Math.max(afters[i]!, to);
      });
      entries.sort((a, b) => a.seq - b.seq);
      const total = entries.reduce((a, e) => a + e.size, 0);
      expect(total - (entries.at(-1)?.size ?? 0)).toBeLessThanOrEqual(bytes);
      if (to === head) break;
      expect(entries.length).toBeGreaterThan(0); // every page that is not the last moves on
    }
    // every event after the starting positions exactly once
    const want = acked.filter((e) => e.seq > [0, 20, 5, 0][chans.indexOf(e.channel)]!).map((e) => e.channel + e.seq);
    expect([...got.keys()].sort()).toEqual(want.sort());
    expect([...got.values()].every((v) => v === 1)).toBe(true);
  });
});
