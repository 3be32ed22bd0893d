// RedisStore: the store contract on a real redis-server and on a real 3-master Redis Cluster, plus
// Redis-only behaviour: the partition streams (section-8 records, one stream per vehicle, seq order),
// the atomic check-and-append under racing writers, per-partition failures, and AOF durability.
import { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { partitionOf } from '../../src/cluster/ring.js';
import type { UplinkRecord } from '../../src/protocol/record.js';
import { RedisStore, type RedisStoreOptions } from '../../src/store/redis.js';
import type { UplinkWrite } from '../../src/store/types.js';
import {
  rawCommand,
  startRedis,
  startRedisCluster,
  type RedisCluster,
  type RedisServer,
} from '../helpers/redis.js';
import { storeContract, type StoreHarness } from './contract.js';

const T0 = 1_764_000_000_000;
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

let prefixCounter = 0;
function uniquePrefix(): string {
  return `t${process.pid}x${++prefixCounter}`;
}

/** Deletes every key under `prefix:` on a standalone server or on every master of a cluster. */
async function deleteKeys(urls: string[], prefix: string): Promise<void> {
  const scanDelete = async (node: Redis, del: (keys: string[]) => Promise<unknown>) => {
    let cursor = '0';
    for (let i = 0; i < 10_000; i++) {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length > 0) await del(keys);
      cursor = next;
      if (cursor === '0') return;
    }
    throw new Error('SCAN did not finish');
  };
  if (urls.length === 1) {
    const r = new Redis(urls[0]!, { lazyConnect: true });
    await r.connect();
    try {
      await scanDelete(r, (keys) => r.unlink(...keys));
    } finally {
      r.disconnect();
    }
    return;
  }
  const c = new Cluster(urls, { lazyConnect: true });
  await c.connect();
  try {
    for (const node of c.nodes('master')) {
      // One key per UNLINK: the keys of one SCAN span many slots.
      await scanDelete(node, (keys) => Promise.all(keys.map((k) => c.unlink(k))));
    }
  } finally {
    c.disconnect();
  }
}

type Harness = StoreHarness & { keyPrefix: string; open: () => Promise<RedisStore> };

async function redisHarness(
  urls: string[],
  extra: Partial<RedisStoreOptions> = {},
): Promise<Harness> {
  const keyPrefix = uniquePrefix();
  const opened: RedisStore[] = [];
  const open = async () => {
    const s = new RedisStore({ urls, keyPrefix, ...extra });
    await s.open();
    opened.push(s);
    return s;
  };
  const store = await open();
  return {
    keyPrefix,
    store,
    open,
    reopen: open,
    cleanup: async () => {
      for (const s of opened) await s.close();
      await deleteKeys(urls, keyPrefix);
    },
  };
}

function telemetry(
  vehicleId: string,
  seq: number,
  extra: Partial<UplinkRecord> = {},
): UplinkRecord {
  return {
    vehicleId,
    seq,
    kind: 'telemetry',
    timestamp: T0 + seq * 1000,
    receivedAt: T0 + seq * 1000 + 12,
    data: { odometerKm: seq / 10, speedKmh: seq % 7 },
    ...extra,
  };
}

function run(vehicleId: string, from: number, to: number, tag = ''): UplinkWrite[] {
  const out: UplinkWrite[] = [];
  for (let seq = from; seq <= to; seq++) {
    const rec = telemetry(vehicleId, seq);
    if (tag !== '') rec.data.vendor = { '0x80': tag };
    out.push({ vehicleId, seq, record: rec });
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it resolves (bounded), returning its value. */
async function eventually<T>(fn: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      await sleep(100);
    }
  }
  throw last instanceof Error ? last : new Error(String(last));
}

/** Vehicle ids landing in `count` distinct partitions (of 16), one per partition. */
function vehiclesInDistinctPartitions(count: number, partitions = 16): string[] {
  const byPartition = new Map<number, string>();
  for (let i = 0; byPartition.size < count && i < 10_000; i++) {
    const id = `VIN${String(i).padStart(14, '0')}`;
    const p = partitionOf(id, partitions);
    if (!byPartition.has(p)) byPartition.set(p, id);
  }
  return [...byPartition.values()];
}

// ---------------------------------------------------------------------------------------------------

describe('RedisStore on a standalone redis-server', () => {
  let server: RedisServer;

  beforeAll(async () => {
    server = await startRedis();
  });

  afterAll(async () => {
    await server?.stop();
  });

  storeContract('RedisStore (standalone)', () => redisHarness([server.url]));

  describe('specifics', () => {
    let h: Harness;
    let raw: Redis;

    beforeEach(async () => {
      h = await redisHarness([server.url]);
      raw = new Redis(server.url);
    });

    afterEach(async () => {
      raw.disconnect();
      await h.cleanup();
    });

    const store = () => h.store as RedisStore;

    it('declares engine redis with per-vehicle append failures', () => {
      expect(h.store.capabilities).toEqual({ engine: 'redis', partialAppend: true });
      expect(store().partitions).toBe(16);
    });

    it('fences: a vehicle marked seen with a higher fence refuses writes of a lower one, nothing written', async () => {
      // Cluster: a stalled node that resumes after a takeover must not store its old session's uplink.
      const id = 'VIN-FENCE';
      const fenced = (ws: UplinkWrite[], fence: number | undefined) =>
        ws.map((w) => ({ ...w, fence }));
      await h.store.markSeen('VIN-OTHER', T0);
      expect((await h.store.markSeen(id, T0, 4)).fence).toBe(4);
      expect(await h.store.appendUplink(fenced(run(id, 1, 3), 4))).toEqual(new Map());
      expect((await h.store.markSeen(id, T0 + 1, 5)).fence).toBe(5); // the next session
      const refused = await h.store.appendUplink([
        ...fenced(run(id, 4, 6, 'old'), 4),
        ...fenced(run('VIN-OTHER', 1, 2), 1),
      ]);
      expect(refused).toEqual(new Map([[id, { kind: 'fenced' }]]));
      expect((await h.store.getVehicle(id))!.lastUplinkSeq).toBe(3);
      expect((await h.store.listUplink(id, 0, 10)).map((r) => r.seq)).toEqual([1, 2, 3]);
      expect((await h.store.getVehicle('VIN-OTHER'))!.lastUplinkSeq).toBe(2);
      // The later session's writes go through; a lower markSeen does not lower the fence.
      expect(await h.store.appendUplink(fenced(run(id, 4, 5, 'new'), 5))).toEqual(new Map());
      expect((await h.store.markSeen(id, T0 + 2, 3)).fence).toBe(5);
      expect(await h.store.appendUplink(fenced(run(id, 6, 6), 3))).toEqual(
        new Map([[id, { kind: 'fenced' }]]),
      );
      // Writes without a fence (one node) are not checked; a vehicle never fenced has no fence.
      expect(await h.store.appendUplink(run(id, 6, 6))).toEqual(new Map());
      expect((await h.store.markSeen('VIN-OTHER', T0)).fence).toBeUndefined();
      const tags = (await h.store.listUplink(id, 3, 10)).map(
        (r) => (r.data.vendor as Record<string, string> | undefined)?.['0x80'],
      );
      expect(tags).toEqual(['new', 'new', undefined]);
    });

    it('validates its options', () => {
      expect(() => new RedisStore({ urls: [] })).toThrow();
      expect(() => new RedisStore({ urls: [server.url], keyPrefix: 'a{b}' })).toThrow();
      expect(() => new RedisStore({ urls: [server.url], partitions: 0 })).toThrow(RangeError);
    });

    it('writes each record to its partition stream in the section-8 JSON form', async () => {
      const vehicleId = 'LSVAU2180N2183294';
      const records: UplinkRecord[] = [
        telemetry(vehicleId, 1, {
          traceparent: TRACEPARENT,
          data: { latitude: 31.2304, longitude: 121.4737, vendor: { '0x80': 'dead' } },
        }),
        {
          vehicleId,
          seq: 3,
          kind: 'event',
          timestamp: T0,
          receivedAt: T0 + 12,
          data: { eventCode: 1, severity: 3, detail: 'collision ✓' },
        },
      ];
      await h.store.appendUplink([
        { vehicleId, seq: 1, record: records[0]! },
        { vehicleId, seq: 2, record: null },
        { vehicleId, seq: 3, record: records[1]! },
      ]);
      const p = partitionOf(vehicleId, 16);
      const key = `${h.keyPrefix}:{p${p}}:uplink`;
      expect(store().streamKey(p)).toBe(key);
      const entries = await raw.xrange(key, '-', '+');
      expect(entries).toHaveLength(2); // the hole is not in the stream
      expect(entries.map(([, f]) => f)).toEqual([
        [
          'v',
          vehicleId,
          's',
          '1',
          'r',
          '{"vehicleId":"LSVAU2180N2183294","seq":1,"kind":"telemetry","timestamp":1764000001000,' +
            '"receivedAt":1764000001012,"traceparent":"' +
            TRACEPARENT +
            '","data":{"latitude":31.2304,"longitude":121.4737,"vendor":{"0x80":"dead"}}}',
        ],
        [
          'v',
          vehicleId,
          's',
          '3',
          'r',
          '{"vehicleId":"LSVAU2180N2183294","seq":3,"kind":"event","timestamp":1764000000000,' +
            '"receivedAt":1764000000012,"data":{"eventCode":1,"severity":3,"detail":"collision ✓"}}',
        ],
      ]);
      for (const [, f] of entries) expect(JSON.parse(f[5]!)).toStrictEqual(records.shift());
      // Nothing of this vehicle in any other partition stream.
      for (let q = 0; q < 16; q++) {
        if (q !== p) expect(await raw.xlen(store().streamKey(q))).toBe(0);
      }
    });

    it("keeps all of a vehicle's records in one partition stream, in seq order", async () => {
      const vehicles = Array.from({ length: 40 }, (_, i) => `FLEET-${i}`);
      const next = new Map(vehicles.map((v) => [v, 1]));
      for (let call = 0; call < 12; call++) {
        const writes: UplinkWrite[] = [];
        for (const [i, v] of vehicles.entries()) {
          if ((i + call) % 3 === 0) continue;
          const from = next.get(v)!;
          const n = 1 + ((i + call) % 4);
          writes.push(...run(v, from, from + n - 1));
          next.set(v, from + n);
        }
        expect(await h.store.appendUplink(writes)).toEqual(new Map());
      }
      const seen = new Map<string, { partition: number; seqs: number[] }>();
      let total = 0;
      for (let p = 0; p < 16; p++) {
        const entries = await raw.xrange(store().streamKey(p), '-', '+');
        total += entries.length;
        for (const [, f] of entries) {
          const vehicleId = f[1]!;
          const rec = JSON.parse(f[5]!) as UplinkRecord;
          expect(rec.vehicleId).toBe(vehicleId);
          expect(String(rec.seq)).toBe(f[3]);
          expect(partitionOf(vehicleId, 16)).toBe(p);
          const s = seen.get(vehicleId) ?? { partition: p, seqs: [] };
          expect(s.partition).toBe(p);
          s.seqs.push(rec.seq);
          seen.set(vehicleId, s);
        }
      }
      expect(seen.size).toBe(vehicles.length);
      for (const v of vehicles) {
        const expected = Array.from({ length: next.get(v)! - 1 }, (_, i) => i + 1);
        expect(seen.get(v)!.seqs, v).toEqual(expected);
      }
      expect(total).toBe([...next.values()].reduce((a, n) => a + n - 1, 0));
      // The vehicles spread over several partitions.
      expect(new Set([...seen.values()].map((s) => s.partition)).size).toBeGreaterThan(8);
    });

    it('lets exactly one of two stores racing the same seqs win (atomic check-and-append)', async () => {
      const other = await h.open();
      const vehicleId = 'RACE-1';
      for (let round = 0; round < 40; round++) {
        const from = round * 3 + 1;
        const [a, b] = await Promise.all([
          h.store.appendUplink(run(vehicleId, from, from + 2, `a${round}`)),
          other.appendUplink(run(vehicleId, from, from + 2, `b${round}`)),
        ]);
        const winners = [a, b].filter((f) => f.size === 0);
        expect(winners, `round ${round}`).toHaveLength(1);
        const loser = a.size === 0 ? b : a;
        expect(loser.get(vehicleId)).toEqual({ kind: 'conflict', lastSeq: from + 2 });
        const tag = a.size === 0 ? `a${round}` : `b${round}`;
        const stored = await h.store.listUplink(vehicleId, from - 1, 10);
        expect(stored.map((r) => [r.seq, r.data.vendor?.['0x80']])).toEqual([
          [from, tag],
          [from + 1, tag],
          [from + 2, tag],
        ]);
      }
      const all = await h.store.listUplink(vehicleId, 0, 1000);
      expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
      const p = store().partitionOf(vehicleId);
      expect(await raw.xlen(store().streamKey(p))).toBe(120);
    });

    it('races of many stores on many vehicles keep every stream gap- and duplicate-free', async () => {
      const stores = [h.store, await h.open(), await h.open(), await h.open()];
      const vehicles = ['R-A', 'R-B', 'R-C', 'R-D', 'R-E', 'R-F'];
      // Each store believes it should write seq 1..30 of every vehicle, in calls of 3.
      await Promise.all(
        stores.map(async (s, si) => {
          for (let from = 1; from <= 30; from += 3) {
            const writes = vehicles.flatMap((v) => run(v, from, from + 2, `s${si}`));
            // Conflicts are expected; a failed vehicle simply continues with the next run, and
            // may never catch up again (its next write is not lastSeq + 1) — that is the point.
            await s.appendUplink(writes);
          }
        }),
      );
      for (const v of vehicles) {
        const listed = await h.store.listUplink(v, 0, 1000);
        expect(listed.map((r) => r.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
        // Every call of 3 is whole: the three records of a run carry one writer's tag.
        for (let i = 0; i < 30; i += 3) {
          const tags = new Set(listed.slice(i, i + 3).map((r) => r.data.vendor?.['0x80']));
          expect(tags.size).toBe(1);
        }
        await h.store.markSeen(v, T0);
        expect((await h.store.getVehicle(v))?.lastUplinkSeq).toBe(30);
      }
    });

    it('reports a failing partition per vehicle, writes the others, rejects when all fail', async () => {
      const [a, b, c] = vehiclesInDistinctPartitions(3);
      const pa = store().partitionOf(a!);
      // Corrupt A's partition stream: XADD on it fails with WRONGTYPE.
      await raw.set(store().streamKey(pa), 'not a stream');
      const f = await h.store.appendUplink([...run(a!, 1, 2), ...run(b!, 1, 2), ...run(c!, 1, 1)]);
      expect([...f.keys()]).toEqual([a]);
      const failure = f.get(a!)!;
      expect(failure.kind).toBe('error');
      if (failure.kind === 'error') expect(failure.error.message).toMatch(/WRONGTYPE/);
      expect((await h.store.listUplink(b!, 0, 10)).map((r) => r.seq)).toEqual([1, 2]);
      expect((await h.store.listUplink(c!, 0, 10)).map((r) => r.seq)).toEqual([1]);
      // Nothing of A was written: its seq state, history and latest are untouched.
      expect(await h.store.listUplink(a!, 0, 10)).toEqual([]);
      expect(await h.store.markSeen(a!, T0)).toMatchObject({ lastUplinkSeq: 0, latest: {} });

      // Every partition of a call failing → the call rejects.
      // (B's latest hash made a string: also caught by the checks before any write.)
      const latestB = `${h.keyPrefix}:{p${store().partitionOf(b!)}}:l:${b}`;
      await raw.set(latestB, 'not a hash');
      await expect(h.store.appendUplink([...run(a!, 1, 1), ...run(b!, 3, 3)])).rejects.toThrow(
        /WRONGTYPE/,
      );
      // Checked before any write: even a call of holes (no stream write) fails on it.
      await expect(h.store.appendUplink([{ vehicleId: a!, seq: 1, record: null }])).rejects.toThrow(
        /WRONGTYPE/,
      );

      // Repaired, the store continues where each vehicle was.
      await raw.del(store().streamKey(pa), latestB);
      expect(await h.store.appendUplink([...run(a!, 1, 1), ...run(b!, 3, 3)])).toEqual(new Map());
      expect((await h.store.listUplink(a!, 0, 10)).map((r) => r.seq)).toEqual([1]);
      expect((await h.store.listUplink(b!, 0, 10)).map((r) => r.seq)).toEqual([1, 2, 3]);
      expect((await h.store.markSeen(b!, T0)).latest).toEqual({ odometerKm: 0.3, speedKmh: 3 });
    });

    it('refuses to open data written with another partition count', async () => {
      const s = new RedisStore({ urls: [server.url], keyPrefix: h.keyPrefix, partitions: 8 });
      await expect(s.open()).rejects.toThrow(/16 partitions, not 8/);
      await s.close();
    });

    it('rejects calls after close() and closes twice harmlessly', async () => {
      await h.store.close();
      await h.store.close();
      await expect(h.store.ping()).rejects.toThrow(/not open/);
      await expect(h.store.appendUplink(run('X', 1, 1))).rejects.toThrow(/not open/);
      await expect(h.store.getMeta('k')).rejects.toThrow(/not open/);
    });

    it('prunes the partition stream together with the history, keeping seq state and latest', async () => {
      const [a, b] = vehiclesInDistinctPartitions(2);
      for (let seq = 1; seq <= 5; seq++) {
        await h.store.appendUplink([
          { vehicleId: a!, seq, record: telemetry(a!, seq, { receivedAt: T0 + seq }) },
          { vehicleId: b!, seq, record: telemetry(b!, seq, { receivedAt: T0 + seq }) },
        ]);
      }
      expect(await h.store.pruneUplink(T0 + 4, 100)).toBe(6);
      const pa = store().partitionOf(a!);
      const left = await raw.xrange(store().streamKey(pa), '-', '+');
      expect(left.map(([, f]) => `${f[1]}/${f[3]}`)).toEqual([`${a}/4`, `${a}/5`]);
      expect((await h.store.listUplink(a!, 0, 10)).map((r) => r.seq)).toEqual([4, 5]);
      expect((await h.store.listUplink(b!, 0, 10)).map((r) => r.seq)).toEqual([4, 5]);
      // Everything pruned: the history key itself is gone, the seq state stays.
      expect(await h.store.pruneUplink(T0 + 100, 100)).toBe(4);
      expect(await raw.exists(`${h.keyPrefix}:{p${pa}}:h:${a}`)).toBe(0);
      expect((await h.store.appendUplink(run(a!, 5, 5))).get(a!)).toEqual({
        kind: 'conflict',
        lastSeq: 5,
      });
      expect(await h.store.appendUplink(run(a!, 6, 6))).toEqual(new Map());
      expect((await h.store.markSeen(a!, T0)).latest).toEqual({ odometerKm: 0.6, speedKmh: 6 });
    });

    it('prunes in bounded steps across read chunks and partitions', async () => {
      const vehicles = vehiclesInDistinctPartitions(3);
      let at = T0;
      for (let from = 1; from <= 400; from += 50) {
        const writes: UplinkWrite[] = [];
        for (const v of vehicles) {
          for (let seq = from; seq < from + 50; seq++) {
            writes.push({ vehicleId: v, seq, record: telemetry(v, seq, { receivedAt: ++at }) });
          }
        }
        expect(await h.store.appendUplink(writes)).toEqual(new Map());
      }
      // 1200 records; the 1000 oldest by arrival (all received before the cutoff) go first.
      expect(await h.store.pruneUplink(T0 + 1001, 700)).toBe(700);
      expect(await h.store.pruneUplink(T0 + 1001, 700)).toBe(300);
      expect(await h.store.pruneUplink(T0 + 1001, 700)).toBe(0);
      let left = 0;
      for (const v of vehicles) left += (await h.store.listUplink(v, 0, 1000)).length;
      expect(left).toBe(200);
      for (const v of vehicles) {
        const p = store().partitionOf(v);
        expect(await raw.xlen(store().streamKey(p))).toBe(
          (await h.store.listUplink(v, 0, 1000)).length,
        );
      }
    });

    it('drops an expiry entry without its command only after a grace period', async () => {
      const idx = `${h.keyPrefix}:cmd:idx`;
      const exp = `${h.keyPrefix}:cmd:exp`;
      const now = T0 + 10_000_000;
      // A creation that stopped after the index and expiry entries (a crash between the steps).
      await raw.hset(idx, 'orphan', 'V-ORPHAN');
      await raw.zadd(exp, now - 10, 'orphan');
      await h.store.createCommand({
        id: 'real',
        vehicleId: 'V-REAL',
        name: 'n',
        params: null,
        createdAt: T0,
        expiresAt: now - 5,
        traceparent: null,
      });
      // The orphan (older) does not take the batch's only place, and is kept for now.
      expect((await h.store.expireCommands(now, 1)).map((c) => c.id)).toEqual(['real']);
      expect(await raw.zscore(exp, 'orphan')).not.toBeNull();
      expect(await h.store.expireCommands(now + 120_000, 10)).toEqual([]);
      expect(await raw.zscore(exp, 'orphan')).toBeNull();
      expect(await raw.zcard(exp)).toBe(0);
      expect(await h.store.getCommand('orphan')).toBeUndefined();
      // The id can still be used for that vehicle (the leftover index entry is reused).
      expect(
        (
          await h.store.createCommand({
            id: 'orphan',
            vehicleId: 'V-ORPHAN',
            name: 'n',
            params: null,
            createdAt: T0,
            expiresAt: now + 1,
            traceparent: null,
          })
        ).seq,
      ).toBe(1);
      // A duplicate id is refused.
      await expect(
        h.store.createCommand({
          id: 'real',
          vehicleId: 'V-OTHER',
          name: 'n',
          params: null,
          createdAt: T0,
          expiresAt: now + 1,
          traceparent: null,
        }),
      ).rejects.toThrow(/already exists/);
    });

    it('keeps acked data across kill -9 and restart of redis-server (AOF, fsync always)', async () => {
      // A dedicated server: this test kills it.
      const own = await startRedis();
      const s = new RedisStore({ urls: [own.url], commandTimeoutMs: 1000 });
      try {
        await s.open();
        await s.markSeen('DUR-1', T0);
        for (let seq = 1; seq <= 50; seq++) {
          expect(await s.appendUplink(run('DUR-1', seq, seq))).toEqual(new Map());
        }
        const cmd = await s.createCommand({
          id: 'dur-c1',
          vehicleId: 'DUR-1',
          name: 'door.lock',
          params: '{"a":1}',
          createdAt: T0,
          expiresAt: T0 + 1000,
          traceparent: null,
        });
        await s.addDevice({
          id: 'DUR-1',
          secretHash: 'h',
          scopes: ['telemetry:write'],
          createdAt: T0,
          revokedAt: null,
        });
        await s.setMeta('k', 'v');
        const before = await s.getVehicle('DUR-1');
        await own.kill();

        // While the server is down calls fail (within the command timeout) instead of hanging.
        await expect(s.ping()).rejects.toThrow();
        await expect(s.appendUplink(run('DUR-1', 51, 51))).rejects.toThrow();

        await own.restart();
        // The same instance recovers on its own once the server is back.
        await eventually(() => s.ping());
        expect(await s.getVehicle('DUR-1')).toEqual(before);
        expect((await s.listUplink('DUR-1', 0, 100)).map((r) => r.seq)).toEqual(
          Array.from({ length: 50 }, (_, i) => i + 1),
        );
        expect(await s.getCommand('dur-c1')).toEqual(cmd);
        expect((await s.getDevice('DUR-1'))?.scopes).toEqual(['telemetry:write']);
        expect(await s.getMeta('k')).toBe('v');
        expect(await s.appendUplink(run('DUR-1', 51, 51))).toEqual(new Map());
        // A fresh store over the restarted server sees the same.
        const fresh = new RedisStore({ urls: [own.url] });
        await fresh.open();
        try {
          expect((await fresh.getVehicle('DUR-1'))?.lastUplinkSeq).toBe(51);
        } finally {
          await fresh.close();
        }
      } finally {
        await s.close();
        await own.stop();
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------------

describe('RedisStore on a 3-master Redis Cluster', () => {
  let cluster: RedisCluster;

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  storeContract('RedisStore (cluster)', () => redisHarness(cluster.urls));

  describe('specifics', () => {
    it('spreads the partitions over the masters and keeps each script on one slot', async () => {
      const h = await redisHarness(cluster.urls);
      try {
        const store = h.store as RedisStore;
        const vehicles = vehiclesInDistinctPartitions(16);
        const writes = vehicles.flatMap((v) => run(v, 1, 3));
        expect(await store.appendUplink(writes)).toEqual(new Map());
        for (const v of vehicles) {
          expect((await store.listUplink(v, 0, 10)).map((r) => r.seq)).toEqual([1, 2, 3]);
        }
        // Which master holds each partition stream.
        const holders = new Set<number>();
        for (let p = 0; p < 16; p++) {
          const key = store.streamKey(p);
          for (const node of cluster.nodes) {
            const reply = await rawCommand(node.port, `XLEN ${key}`);
            if (reply === ':3') holders.add(node.port);
          }
        }
        expect(holders.size).toBeGreaterThan(1);
        await store.ping();
      } finally {
        await h.cleanup();
      }
    });

    it('two stores racing the same seqs: exactly one wins', async () => {
      const h = await redisHarness(cluster.urls);
      try {
        const other = await h.open();
        for (let round = 0; round < 15; round++) {
          const from = round * 2 + 1;
          const [a, b] = await Promise.all([
            h.store.appendUplink(run('CRACE', from, from + 1, 'a')),
            other.appendUplink(run('CRACE', from, from + 1, 'b')),
          ]);
          expect([a, b].filter((f) => f.size === 0)).toHaveLength(1);
          expect((a.size === 0 ? b : a).get('CRACE')).toEqual({
            kind: 'conflict',
            lastSeq: from + 1,
          });
        }
        expect((await h.store.listUplink('CRACE', 0, 100)).map((r) => r.seq)).toEqual(
          Array.from({ length: 30 }, (_, i) => i + 1),
        );
      } finally {
        await h.cleanup();
      }
    });
  });
});

describe('RedisStore on a Redis Cluster losing a master', () => {
  let cluster: RedisCluster;

  beforeAll(async () => {
    // Without full coverage the surviving masters keep serving their slots.
    cluster = await startRedisCluster(3, { requireFullCoverage: false, nodeTimeoutMs: 1000 });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it(
    'fails only the vehicles whose partition is on the dead master',
    { timeout: 60_000 },
    async () => {
      const store = new RedisStore({ urls: cluster.urls, commandTimeoutMs: 1500 });
      await store.open();
      try {
        const vehicles = vehiclesInDistinctPartitions(16);
        expect(await store.appendUplink(vehicles.flatMap((v) => run(v, 1, 1)))).toEqual(new Map());
        // The master holding partition 0's keys dies.
        const victim = cluster.nodes[0]!;
        const slotOwner = async (key: string) => {
          for (const n of cluster.nodes) {
            if ((await rawCommand(n.port, `EXISTS ${key}`)) === ':1') return n;
          }
          return undefined;
        };
        const onVictim = new Set<string>();
        for (const v of vehicles) {
          if ((await slotOwner(store.streamKey(store.partitionOf(v)))) === victim) onVictim.add(v);
        }
        expect(onVictim.size).toBeGreaterThan(0);
        expect(onVictim.size).toBeLessThan(vehicles.length);
        await victim.kill();

        const f = await store.appendUplink(vehicles.flatMap((v) => run(v, 2, 2)));
        expect(new Set(f.keys())).toEqual(onVictim);
        for (const failure of f.values()) expect(failure.kind).toBe('error');
        for (const v of vehicles) {
          if (onVictim.has(v)) continue;
          expect((await store.listUplink(v, 0, 10)).map((r) => r.seq)).toEqual([1, 2]);
        }
        await expect(store.ping()).rejects.toThrow();

        // The master comes back (same port, data dir and nodes.conf): the same store resumes on
        // its own, and the failed vehicles continue from their last stored seq.
        await victim.restart();
        await eventually(() => store.ping(), 30_000);
        const retry = await eventually(async () => {
          const f = await store.appendUplink([...onVictim].flatMap((v) => run(v, 2, 2)));
          if (f.size > 0) throw new Error(`still failing: ${[...f.keys()].join(',')}`);
          return f;
        }, 30_000);
        expect(retry).toEqual(new Map());
        for (const v of vehicles) {
          expect((await store.listUplink(v, 0, 10)).map((r) => r.seq)).toEqual([1, 2]);
        }
      } finally {
        await store.close();
      }
    },
  );
});
