// Model-based test of the uplink stores (fast-check): random sequences of appends (several
// vehicles; telemetry as TLVs or JSON, events, holes; the gateway's traceparents packed or as text,
// foreign ones, none), retention, clean reopens and crashes, and for SQLite its upkeep (run writes
// in slices, checkpoints), each step checked against a plain model: every acked record is listed
// exactly, in seq order, from any seq and page size; a vehicle's last consumed seq and latest state
// follow every consumed seq, holes and pruned records included; a write that does not continue its
// vehicle's seqs is refused with the store's last seq; retention removes only records older than
// its line, at most its budget, and reports fewer than its budget only when no such record is left.
// Three modes:
// - SQLite in-process, and with appends in its worker thread (--store-worker; it runs from dist,
//   so build first when running this file alone). The periodic upkeep is off (background: false)
//   and driven by the steps, so nothing runs between two calls: a crash copies the files then, and
//   opens the copy as the next process would find them.
// - Redis (a real redis-server, AOF with fsync always): a crash is a SIGKILL of the server and a
//   restart, under the open store (its client reconnects; the server has lost its scripts).
// 200 + 50 + 100 cases per run of the suite; a longer hunt: VMCP_PROP_RUNS=1500
// VMCP_PROP_TIMEOUT=1200000 (with -t to pick a mode).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { UplinkTracer } from '../../src/observability/trace.js';
import { decodeTelemetrySample, encodeTelemetry, telemetryData } from '../../src/protocol/index.js';
import { mergeTelemetry, type RecordData, type UplinkRecord } from '../../src/protocol/record.js';
import { RedisStore } from '../../src/store/redis.js';
import { SqliteStore, type Upkeep } from '../../src/store/sqlite.js';
import type { Store, UplinkWrite } from '../../src/store/types.js';
import { crashRedis, emptyRedis, startRedis, type RedisServer } from '../helpers/redis.js';
import { copyCrashImage } from '../helpers/sqlite.js';

const VEHICLES = 5;
const FOREIGN_TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const T0 = 1_790_000_000_000;

type Item = {
  kind: 'tel' | 'evt' | 'hole';
  tp: 'none' | 'own' | 'ownIds' | 'foreign' | 'odd';
  tlv: boolean;
  speed: number;
  lat: number | null;
  tsOffset: number;
};
type Group = { v: number; items: Item[]; gap: number };
type Op =
  | { t: 'append'; groups: Group[]; advance: number }
  | { t: 'index'; max: number }
  | { t: 'tick' }
  | { t: 'checkpoints'; max: number }
  // The line: `back` ms before now, or (`at` set) exactly at the time some record was received.
  | { t: 'prune'; back: number; at: number | null; limit: number }
  | { t: 'session'; v: number }
  | { t: 'reopen' }
  | { t: 'crash' };

const item: fc.Arbitrary<Item> = fc.record({
  kind: fc.constantFrom('tel', 'tel', 'tel', 'evt', 'hole'),
  tp: fc.constantFrom('none', 'own', 'own', 'ownIds', 'ownIds', 'foreign', 'odd'),
  tlv: fc.boolean(),
  speed: fc.integer({ min: 0, max: 3000 }),
  lat: fc.option(fc.integer({ min: -900_000_000, max: 900_000_000 })),
  tsOffset: fc.integer({ min: -5_000, max: 5_000 }),
});

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      t: fc.constant('append' as const),
      groups: fc.uniqueArray(
        fc.record({
          v: fc.integer({ min: 0, max: VEHICLES - 1 }),
          items: fc.array(item, { minLength: 1, maxLength: 6 }),
          gap: fc.integer({ min: 0, max: 11 }),
        }),
        { selector: (g) => g.v, minLength: 1, maxLength: VEHICLES },
      ),
      advance: fc.integer({ min: 1, max: 4_000 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('index' as const),
      max: fc.constantFrom(1, 2, 3, Infinity),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('tick' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('checkpoints' as const),
      max: fc.integer({ min: 1, max: 3 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('prune' as const),
      back: fc.integer({ min: 0, max: 30_000 }),
      at: fc.option(fc.nat(), { freq: 2 }),
      limit: fc.integer({ min: 1, max: 15 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('session' as const),
      v: fc.integer({ min: 0, max: VEHICLES - 1 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('reopen' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('crash' as const) }) },
);

/** What the store must hold for one vehicle. */
interface VehicleModel {
  id: string;
  lastSeq: number;
  records: UplinkRecord[];
  latest: RecordData;
  tracer: UplinkTracer;
  seen: boolean;
}

/** Where the records go: SQLite in-process or with its worker thread, or a real redis-server. */
type Mode = { kind: 'sqlite'; worker: boolean } | { kind: 'redis'; server: RedisServer };

let prefixes = 0;

/** One case: a store, the model, and the clock (Date is faked: holes take Date.now()). */
class Case {
  store!: Store;
  clock = T0;
  generation = 0;
  /** The Redis keys of this case (one server serves every case). */
  readonly keyPrefix = `prop${process.pid}x${++prefixes}`;
  readonly vehicles: VehicleModel[] = Array.from({ length: VEHICLES }, (_, v) => ({
    id: `VIN-P${v}`,
    lastSeq: 0,
    records: [],
    latest: {},
    tracer: new UplinkTracer(),
    seen: false,
  }));

  constructor(
    readonly dir: string,
    readonly mode: Mode,
  ) {}

  path(): string {
    return join(this.dir, `g${this.generation}`, 'vmcp.db');
  }

  async open(): Promise<void> {
    if (this.mode.kind === 'redis') {
      // Two partitions for five vehicles: retention walks streams shared by several vehicles.
      this.store = new RedisStore({
        urls: [this.mode.server.url],
        keyPrefix: this.keyPrefix,
        partitions: 2,
      });
    } else {
      // Few records per short run, so that runs are written, split and trimmed in a short case
      // (in-process; the worker writes every vehicle's runs when asked). The 2 s timer's writes
      // would make a case depend on wall time: the test drives them, so nothing runs between calls.
      this.store = new SqliteStore({
        path: this.path(),
        sync: 'normal',
        holdRows: 12,
        worker: this.mode.worker,
        background: false,
      });
    }
    await this.store.open();
  }

  /** The SQLite store's upkeep, run by the steps (Redis has none: every write is final). */
  private async upkeep(work: Upkeep, max = Infinity): Promise<void> {
    if (this.store instanceof SqliteStore) await this.store.maintain(work, max);
  }

  async run(o: Op): Promise<void> {
    switch (o.t) {
      case 'append':
        return this.append(o.groups, o.advance);
      case 'index':
        return this.upkeep('index', o.max);
      case 'tick':
        return this.upkeep('tick');
      case 'checkpoints':
        return this.upkeep('checkpoints', o.max);
      case 'prune':
        return this.prune(this.line(o.back, o.at), o.limit);
      case 'session':
        this.vehicles[o.v]!.tracer = new UplinkTracer();
        return;
      case 'reopen':
        await this.store.close();
        return this.open();
      case 'crash': {
        if (this.mode.kind === 'redis') {
          // SIGKILL of the server (AOF, fsync always): what it acked must come back on restart.
          // The store stays open, as a gateway's does: its client reconnects by itself, and the
          // restarted server has lost the scripts it had loaded.
          return crashRedis(this.mode.server, () => this.store.ping());
        }
        // The files as they are between two calls: what a process killed now leaves behind.
        const from = this.path();
        this.generation++;
        copyCrashImage(from, this.path());
        await this.store.close(); // writes to the old files only
        return this.open();
      }
    }
  }

  private async append(groups: Group[], advance: number): Promise<void> {
    this.clock += advance;
    vi.setSystemTime(this.clock);
    const writes: UplinkWrite[] = [];
    const expected = new Map<string, { m: VehicleModel; added: (UplinkRecord | null)[] }>();
    const refused = new Map<string, number>();
    for (const g of groups) {
      const m = this.vehicles[g.v]!;
      if (!m.seen) {
        await this.store.markSeen(m.id, this.clock);
        m.seen = true;
      }
      // Two groups in twelve do not continue the vehicle's seqs: one ahead of them, one a resend.
      const first =
        g.gap === 0 ? m.lastSeq + 2 : g.gap === 1 && m.lastSeq > 0 ? m.lastSeq : m.lastSeq + 1;
      const ok = first === m.lastSeq + 1;
      const added: (UplinkRecord | null)[] = [];
      g.items.forEach((it, k) => {
        const seq = first + k;
        if (it.kind === 'hole') {
          writes.push({ vehicleId: m.id, seq, record: null });
          added.push(null);
          return;
        }
        const timestamp = this.clock + it.tsOffset;
        let data: RecordData;
        let raw: Uint8Array | undefined;
        if (it.kind === 'evt') data = { eventCode: it.speed % 50, detail: `e${seq}` };
        else if (it.tlv) {
          const bytes = encodeTelemetry({
            seq,
            timestamp,
            speed: it.speed,
            ...(it.lat === null ? {} : { latitude: it.lat }),
          });
          data = telemetryData(decodeTelemetrySample(bytes, 4, bytes.length));
          raw = bytes.slice(4);
        } else
          data = {
            speedKmh: it.speed / 10,
            ...(it.lat === null ? {} : { latitude: it.lat / 1e7 }),
          };
        const rec: UplinkRecord = {
          vehicleId: m.id,
          seq,
          kind: it.kind === 'evt' ? 'event' : 'telemetry',
          timestamp,
          receivedAt: this.clock,
          data,
        };
        let traceIds: Uint8Array | undefined;
        if (it.tp === 'own' || it.tp === 'ownIds') rec.traceparent = m.tracer.traceparent(seq);
        if (it.tp === 'ownIds') traceIds = m.tracer.ids;
        if (it.tp === 'foreign') rec.traceparent = FOREIGN_TP;
        if (it.tp === 'odd') rec.traceparent = `vendor-trace-${seq}`;
        writes.push({ vehicleId: m.id, seq, record: rec, raw, traceIds });
        added.push(rec);
      });
      if (ok) expected.set(m.id, { m, added });
      else refused.set(m.id, m.lastSeq);
    }
    const failures = await this.store.appendUplink(writes);
    expect(failures).toEqual(
      new Map([...refused].map(([id, last]) => [id, { kind: 'conflict', lastSeq: last }])),
    );
    for (const { m, added } of expected.values()) {
      for (const r of added) {
        m.lastSeq++;
        if (r === null) continue;
        m.records.push(r);
        if (r.kind === 'telemetry') mergeTelemetry(m.latest, r.data);
      }
    }
  }

  /** A retention line: `back` ms before now, or exactly when a record still held was received. */
  private line(back: number, at: number | null): number {
    const times = [...new Set(this.vehicles.flatMap((m) => m.records.map((r) => r.receivedAt)))];
    if (at === null || times.length === 0) return this.clock - back;
    return times.sort((a, b) => a - b)[at % times.length]!;
  }

  private async prune(before: number, limit: number): Promise<void> {
    const n = await this.store.pruneUplink(before, limit);
    expect(n).toBeGreaterThanOrEqual(0);
    expect(n).toBeLessThanOrEqual(limit);
    let removed = 0;
    let oldLeft = 0;
    for (const m of this.vehicles) {
      const listed = await this.store.listUplink(m.id, 0, 1_000_000);
      const bySeq = new Map(m.records.map((r) => [r.seq, r]));
      for (const r of listed) expect(r).toEqual(bySeq.get(r.seq));
      const kept = new Set(listed.map((r) => r.seq));
      for (const r of m.records) {
        if (kept.has(r.seq)) {
          if (r.receivedAt < before) oldLeft++;
        } else {
          // Only records older than the line go.
          expect(r.receivedAt, `${m.id} seq ${r.seq} pruned`).toBeLessThan(before);
          removed++;
        }
      }
      m.records = m.records.filter((r) => kept.has(r.seq));
    }
    expect(removed).toBe(n);
    // Fewer than the budget: nothing older than the line is left to delete now.
    if (n < limit) expect(oldLeft).toBe(0);
  }

  /** The store against the model: every listing, page and vehicle state. */
  async check(rand: () => number): Promise<void> {
    for (const m of this.vehicles) {
      const all = await this.store.listUplink(m.id, 0, 1_000_000);
      expect(all).toEqual(m.records);
      // A page from anywhere, of any size (listUplink's limit is ≥ 1).
      const after = Math.floor(rand() * (m.lastSeq + 2));
      const limit = 1 + Math.floor(rand() * 8);
      expect(await this.store.listUplink(m.id, after, limit)).toEqual(
        m.records.filter((r) => r.seq > after).slice(0, limit),
      );
      if (!m.seen) continue;
      const row = await this.store.getVehicle(m.id);
      expect(row?.lastUplinkSeq).toBe(m.lastSeq);
      expect(row?.latest).toEqual(m.latest);
    }
  }
}

describe.each([
  { mode: 'SQLite in-process', kind: 'sqlite', worker: false, runs: 200 },
  // Its own connection and thread: reads here find the records not in runs yet by scanning the log.
  { mode: 'SQLite worker thread', kind: 'sqlite', worker: true, runs: 50 },
  // Lua scripts over streams, sorted sets and hashes; crashes are SIGKILLs of the server.
  { mode: 'Redis', kind: 'redis', worker: false, runs: 100 },
] as const)('uplink store against a model ($mode)', ({ kind, worker, runs }) => {
  let dirs: string[] = [];
  let server: RedisServer | undefined;
  beforeAll(async () => {
    if (kind === 'redis') server = await startRedis();
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
  });
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    dirs = [];
  });
  afterEach(() => {
    vi.useRealTimers();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it(
    'keeps every acked record, in order, through retention, reopens and crashes',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(op, { minLength: 5, maxLength: 45 }),
          fc.integer(),
          async (ops, seed) => {
            const dir = mkdtempSync(join(tmpdir(), 'vmcp-prop-'));
            dirs.push(dir);
            const c = new Case(
              dir,
              kind === 'redis' ? { kind, server: server! } : { kind, worker },
            );
            vi.setSystemTime(c.clock);
            await c.open();
            let x = seed >>> 0 || 1;
            const rand = (): number => {
              // xorshift32: the pages read are part of the case, so a failure replays.
              x ^= x << 13;
              x ^= x >>> 17;
              x ^= x << 5;
              return (x >>> 0) / 2 ** 32;
            };
            try {
              for (const o of ops) {
                await c.run(o);
                await c.check(rand);
              }
              // Whatever the sequence, a clean reopen at the end reads the same.
              await c.run({ t: 'reopen' });
              await c.check(rand);
            } finally {
              await c.store.close();
              if (server !== undefined) await emptyRedis(server);
            }
          },
        ),
        { numRuns: Number(process.env.VMCP_PROP_RUNS ?? runs) },
      );
    },
    Number(process.env.VMCP_PROP_TIMEOUT ?? 120_000),
  );
});
