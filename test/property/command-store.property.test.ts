// Model-based test of the stores' command outbox (fast-check): random sequences of createCommand
// (2–4 vehicles; names, params as JSON text or none, small and large TTLs, a traceparent or none),
// the transitions the gateway makes (Downlink: pending → delivered when sent; open → a final result
// with its payload; pending → cancelled by the API; open → expired by Downlink.current), arbitrary
// compare-and-sets (wrong current status, already final, empty from-set, unknown ids), expiry sweeps
// with small limits, a few of these at once (a race), markSeen and uplink of the same vehicles, clean
// reopens and crashes, on a clock of the test's own (never wall time: Date is faked far away from
// it), each step checked against a plain model:
// - a created command gets its vehicle's next seq (1, 2, 3…, never reused, across reopens and
//   crashes), pending, result null, updatedAt = createdAt, every field as given;
// - a transition happens iff the status is in its from-set, and then sets status and updatedAt =
//   now, and result only when one is given (JSON round trip); otherwise undefined, row unchanged:
//   the first final result wins;
// - expireCommands(now, limit) returns min(limit, due) distinct commands, each open with
//   expiresAt ≤ now, now expired with updatedAt = now; a sweep repeated until a batch is short
//   (Downlink.expire) leaves none due;
// - openCommands(vehicle, now) is exactly the pending/delivered commands with expiresAt > now, by
//   seq (so an expired command is never shown open); getCommand is the model's row;
// - a race is linearizable: some order of its calls, run on the model one by one, gives what each
//   call returned.
// Two modes:
// - SQLite in-process (background: false, so nothing runs between two calls): a crash copies the
//   files then and opens the copy, as the next process would find them.
// - Redis (a real redis-server, AOF with fsync always): a crash is a SIGKILL of the server and a
//   restart, under the open store (its client reconnects; the server has lost its scripts).
// 200 + 100 cases per run of the suite; a longer hunt: VMCP_PROP_RUNS=1000
// VMCP_PROP_TIMEOUT=1200000 (with -t to pick a mode).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { RedisStore } from '../../src/store/redis.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import {
  COMMAND_STATUSES,
  OPEN_STATUSES,
  RESULT_STATUS,
  type CommandRow,
  type CommandStatus,
  type NewCommand,
  type Store,
} from '../../src/store/types.js';
import { crashRedis, emptyRedis, startRedis, type RedisServer } from '../helpers/redis.js';
import { copyCrashImage } from '../helpers/sqlite.js';

const T0 = 1_790_000_000_000;
/** Date.now() during a case: far from the case's clock, so a store reading it would be caught. */
const WALL = T0 + 5 * 365 * 86_400_000;
const TRACEPARENTS = [
  '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00',
];
const STATUSES: readonly CommandStatus[] = COMMAND_STATUSES;

/** Which command a transition aims at: an index (open ones preferred), or -1 for an unknown id. */
type Target = number;
/** The calls the gateway makes (downlink.ts), and any other compare-and-set (`cas`). */
type Transition =
  | { t: 'send'; c: Target }
  | { t: 'result'; c: Target; code: number; result: unknown; lag: number }
  | { t: 'cancel'; c: Target }
  | { t: 'lapse'; c: Target }
  | { t: 'cas'; c: Target; from: CommandStatus[]; to: CommandStatus; result: unknown };
type Create = {
  t: 'create';
  v: number;
  name: string;
  params: string | null;
  ttl: number;
  tp: number;
};
type Sweep = { t: 'sweep'; limit: number; lag: number };
type Sub = Transition | Create | Sweep;
type Op =
  | Sub
  | { t: 'drain'; limit: number }
  | { t: 'advance'; ms: number }
  // The clock to a command's expiresAt - 1, exactly, or + 1 (when that is not in the past).
  | { t: 'toExpiry'; c: Target; delta: number }
  | { t: 'seen'; v: number }
  // Calls at once; `same`: every transition aims at the first one's command.
  | { t: 'race'; subs: Sub[]; same: boolean }
  | { t: 'reopen' }
  | { t: 'crash' };

const target: fc.Arbitrary<Target> = fc.oneof(
  { weight: 9, arbitrary: fc.nat() },
  { weight: 1, arbitrary: fc.constant(-1) },
);
const lag = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 3_000 }) },
);
/** What parseResultPayload gives: null (no payload), a JSON value, or a text (any UTF-16). */
const resultValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.jsonValue({ maxDepth: 2 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
);
const ttl = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 50 }) },
  { weight: 4, arbitrary: fc.integer({ min: 51, max: 5_000 }) },
  // The API's default and maximum (24 h, 7 days).
  { weight: 2, arbitrary: fc.constantFrom(86_400_000, 604_800_000) },
);

const transition: fc.Arbitrary<Transition> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ t: fc.constant('send' as const), c: target }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('result' as const),
      c: target,
      code: fc.integer({ min: 0, max: RESULT_STATUS.length - 1 }),
      result: resultValue,
      lag,
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('cancel' as const), c: target }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('lapse' as const), c: target }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('cas' as const),
      c: target,
      from: fc.subarray([...STATUSES]),
      to: fc.constantFrom(...STATUSES),
      result: fc.option(resultValue, { nil: undefined }),
    }),
  },
);
const create: fc.Arbitrary<Create> = fc.record({
  t: fc.constant('create' as const),
  v: fc.nat(),
  name: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }),
  params: fc.option(fc.json({ maxDepth: 2, stringUnit: 'grapheme' }), { freq: 3 }),
  ttl,
  tp: fc.integer({ min: -1, max: TRACEPARENTS.length - 1 }),
});
const sweep: fc.Arbitrary<Sweep> = fc.record({
  t: fc.constant('sweep' as const),
  limit: fc.integer({ min: 1, max: 4 }),
  lag,
});

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: create },
  { weight: 7, arbitrary: transition },
  { weight: 3, arbitrary: sweep },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('drain' as const),
      limit: fc.integer({ min: 1, max: 3 }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('advance' as const),
      ms: fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: 0, max: 60 }) },
        { weight: 4, arbitrary: fc.integer({ min: 61, max: 6_000 }) },
        { weight: 1, arbitrary: fc.constantFrom(86_400_000, 604_800_000) },
      ),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('toExpiry' as const),
      c: fc.nat(),
      delta: fc.integer({ min: -1, max: 1 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('seen' as const), v: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('race' as const),
      subs: fc.array(
        fc.oneof({ weight: 4, arbitrary: transition }, { weight: 1, arbitrary: create }, sweep),
        { minLength: 2, maxLength: 3 },
      ),
      same: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('reopen' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('crash' as const) }) },
);

/** One store call with its arguments fixed (ids and times chosen from the model before the call). */
type Call =
  | { k: 'create'; cmd: NewCommand }
  | {
      k: 'transition';
      id: string;
      from: CommandStatus[];
      to: CommandStatus;
      now: number;
      result: unknown;
    }
  | { k: 'expire'; now: number; limit: number };

const isOpen = (s: CommandStatus): boolean => OPEN_STATUSES.includes(s);
/** What a store gives back for a result it was handed: stored as JSON text, parsed on read. */
const stored = (v: unknown): unknown => JSON.parse(JSON.stringify(v)) as unknown;

/** What the store must hold: the commands (rows replaced, never mutated) and each vehicle's next seq. */
class Model {
  constructor(
    readonly rows = new Map<string, CommandRow>(),
    readonly nextSeq = new Map<string, number>(),
  ) {}

  clone(): Model {
    return new Model(new Map(this.rows), new Map(this.nextSeq));
  }

  of(vehicleId: string): CommandRow[] {
    return [...this.rows.values()].filter((r) => r.vehicleId === vehicleId);
  }

  /** openCommands: neither final nor expired at `now`, by seq. */
  open(vehicleId: string, now: number): CommandRow[] {
    return this.of(vehicleId)
      .filter((r) => isOpen(r.status) && r.expiresAt > now)
      .sort((a, b) => a.seq - b.seq);
  }

  /** Open commands an expiry sweep at `now` must take: expiresAt ≤ now (the contract's edge). */
  due(now: number): CommandRow[] {
    return [...this.rows.values()].filter((r) => isOpen(r.status) && r.expiresAt <= now);
  }

  /** Checks what one call returned against the model as it is, and applies it (throws if wrong). */
  apply(call: Call, got: unknown): void {
    switch (call.k) {
      case 'create': {
        const { cmd } = call;
        const seq = this.nextSeq.get(cmd.vehicleId) ?? 1;
        const row: CommandRow = {
          id: cmd.id,
          vehicleId: cmd.vehicleId,
          seq,
          name: cmd.name,
          params: cmd.params,
          createdAt: cmd.createdAt,
          expiresAt: cmd.expiresAt,
          status: 'pending',
          result: null,
          // Both stores set it to createdAt; the contract only says it is a number, and the model
          // (and every later check of getCommand) follows the row the store returned.
          updatedAt: (got as CommandRow | undefined)?.updatedAt ?? cmd.createdAt,
          traceparent: cmd.traceparent,
        };
        expect(typeof row.updatedAt, `${cmd.id} updatedAt`).toBe('number');
        expect(got, `createCommand ${cmd.id}`).toStrictEqual(row);
        this.rows.set(cmd.id, row);
        this.nextSeq.set(cmd.vehicleId, seq + 1);
        return;
      }
      case 'transition': {
        const row = this.rows.get(call.id);
        if (row === undefined || !call.from.includes(row.status)) {
          expect(
            got,
            `transitionCommand ${call.id} [${call.from.join(',')}] → ${call.to} from ${row?.status ?? 'nothing'}`,
          ).toBeUndefined();
          return;
        }
        const next: CommandRow = {
          ...row,
          status: call.to,
          updatedAt: call.now,
          result: call.result === undefined ? row.result : stored(call.result),
        };
        expect(
          got,
          `transitionCommand ${call.id} [${call.from.join(',')}] → ${call.to} from ${row.status}`,
        ).toStrictEqual(next);
        this.rows.set(call.id, next);
        return;
      }
      case 'expire': {
        const rows = got as CommandRow[];
        const due = new Map(this.due(call.now).map((r) => [r.id, r]));
        // The contract leaves open which due commands a short sweep takes and in what order (both
        // stores take the earliest expiresAt first): any distinct due ones, as many as allowed.
        // Fewer than `limit` means none is left due (Downlink.expire stops on a short batch).
        expect(
          rows.map((r) => r.id),
          `expireCommands(${call.now}, ${call.limit}) of ${[...due.keys()].join(',')}`,
        ).toHaveLength(Math.min(call.limit, due.size));
        expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
        for (const r of rows) {
          const before = due.get(r.id);
          expect(before, `${r.id} expired by a sweep at ${call.now}`).toBeDefined();
          const next: CommandRow = { ...before!, status: 'expired', updatedAt: call.now };
          expect(r).toStrictEqual(next);
          this.rows.set(r.id, next);
        }
        return;
      }
    }
  }
}

/** Where the commands go: SQLite in-process, or a real redis-server. */
type Mode = { kind: 'sqlite' } | { kind: 'redis'; server: RedisServer };

let prefixes = 0;

/** One case: a store, the model, the clock, the vehicles. */
class Case {
  store!: Store;
  model = new Model();
  clock = T0;
  generation = 0;
  created = 0;
  /** The Redis keys of this case (one server serves every case). */
  readonly keyPrefix = `cprop${process.pid}x${++prefixes}`;
  readonly vehicles: { id: string; uplinkSeq: number }[];

  constructor(
    readonly dir: string,
    readonly mode: Mode,
    count: number,
    readonly rand: () => number,
  ) {
    this.vehicles = Array.from({ length: count }, (_, v) => ({ id: `VIN-C${v}`, uplinkSeq: 0 }));
  }

  path(): string {
    return join(this.dir, `g${this.generation}`, 'vmcp.db');
  }

  async open(): Promise<void> {
    if (this.mode.kind === 'redis') {
      this.store = new RedisStore({ urls: [this.mode.server.url], keyPrefix: this.keyPrefix });
    } else {
      // No periodic upkeep: nothing runs between two calls, so a copy of the files is a crash.
      this.store = new SqliteStore({ path: this.path(), sync: 'normal', background: false });
    }
    await this.store.open();
  }

  /** The id a transition aims at: mostly an open command, sometimes any, now and then unknown. */
  private pick(c: Target): string {
    const all = [...this.model.rows.values()];
    if (c < 0 || all.length === 0) return `cmd-unknown-${c}`;
    const open = all.filter((r) => isOpen(r.status));
    const pool = c % 3 !== 0 && open.length > 0 ? open : all;
    return pool[Math.floor(c / 3) % pool.length]!.id;
  }

  /** The concrete call of a sub-operation at the current clock. */
  private call(s: Sub, aim?: string): Call {
    const now = this.clock;
    switch (s.t) {
      case 'create': {
        const n = ++this.created;
        return {
          k: 'create',
          cmd: {
            // Ids in no relation to the seqs or the creation order.
            id: `c${(n * 7919) % 10_007}-${n}`,
            vehicleId: this.vehicles[s.v % this.vehicles.length]!.id,
            name: s.name,
            params: s.params,
            createdAt: now,
            expiresAt: now + s.ttl,
            traceparent: s.tp < 0 ? null : TRACEPARENTS[s.tp]!,
          },
        };
      }
      case 'sweep':
        return { k: 'expire', now: now - s.lag, limit: s.limit };
      case 'send': // Downlink.pumpLoop, attach
        return {
          k: 'transition',
          id: aim ?? this.pick(s.c),
          from: ['pending'],
          to: 'delivered',
          now,
          result: undefined,
        };
      case 'result': // Downlink.recordResult: at the ack's time, perhaps written again later
        return {
          k: 'transition',
          id: aim ?? this.pick(s.c),
          from: [...OPEN_STATUSES],
          to: RESULT_STATUS[s.code]!,
          now: now - s.lag,
          result: s.result,
        };
      case 'cancel': // Downlink.cancel
        return {
          k: 'transition',
          id: aim ?? this.pick(s.c),
          from: ['pending'],
          to: 'cancelled',
          now,
          result: undefined,
        };
      case 'lapse': // Downlink.current
        return {
          k: 'transition',
          id: aim ?? this.pick(s.c),
          from: [...OPEN_STATUSES],
          to: 'expired',
          now,
          result: undefined,
        };
      case 'cas':
        return {
          k: 'transition',
          id: aim ?? this.pick(s.c),
          from: s.from,
          to: s.to,
          now,
          result: s.result,
        };
    }
  }

  private exec(call: Call): Promise<unknown> {
    switch (call.k) {
      case 'create':
        return this.store.createCommand(call.cmd);
      case 'transition':
        return call.result === undefined
          ? this.store.transitionCommand(call.id, call.from, call.to, call.now)
          : this.store.transitionCommand(call.id, call.from, call.to, call.now, call.result);
      case 'expire':
        return this.store.expireCommands(call.now, call.limit);
    }
  }

  /** The vehicles a call touches (undefined: any). */
  private touched(call: Call): string | undefined {
    if (call.k === 'create') return call.cmd.vehicleId;
    if (call.k === 'transition') return this.model.rows.get(call.id)?.vehicleId ?? '';
    return undefined;
  }

  /** Runs one operation and checks it; returns the vehicles to check (undefined: all). */
  async run(o: Op): Promise<Set<string> | undefined> {
    switch (o.t) {
      case 'advance':
        this.clock += o.ms;
        return undefined;
      case 'toExpiry': {
        const all = [...this.model.rows.values()];
        if (all.length > 0)
          this.clock = Math.max(this.clock, all[o.c % all.length]!.expiresAt + o.delta);
        return undefined;
      }
      case 'seen': {
        // The vehicle's row (SQLite keeps the command seq counter in it) written by the uplink side.
        const m = this.vehicles[o.v % this.vehicles.length]!;
        await this.store.markSeen(m.id, this.clock);
        const seq = m.uplinkSeq + 1;
        const failures = await this.store.appendUplink([
          {
            vehicleId: m.id,
            seq,
            record: {
              vehicleId: m.id,
              seq,
              kind: 'telemetry',
              timestamp: this.clock,
              receivedAt: this.clock,
              data: { speedKmh: seq },
            },
          },
        ]);
        expect(failures.size).toBe(0);
        m.uplinkSeq = seq;
        if (this.store instanceof SqliteStore) await this.store.maintain('tick');
        return new Set([m.id]);
      }
      case 'drain': {
        // Downlink.expire with a small batch: sweeps until one is short; every due one goes.
        const now = this.clock;
        const bound = Math.ceil(this.model.due(now).length / o.limit) + 1;
        for (let i = 0; ; i++) {
          expect(i, 'sweeps to drain').toBeLessThanOrEqual(bound);
          const call: Call = { k: 'expire', now, limit: o.limit };
          const got = (await this.exec(call)) as CommandRow[];
          this.model.apply(call, got);
          if (got.length < o.limit) break;
        }
        expect(this.model.due(now)).toEqual([]);
        return undefined;
      }
      case 'race':
        return this.race(o.subs, o.same);
      case 'reopen':
        await this.store.close();
        await this.open();
        return undefined;
      case 'crash':
        await this.crash();
        return undefined;
      default: {
        const call = this.call(o);
        const vehicle = this.touched(call);
        this.model.apply(call, await this.exec(call));
        return vehicle === undefined ? undefined : new Set([vehicle]);
      }
    }
  }

  /**
   * Calls at once (on Redis they interleave on the wire; SQLite runs each whole): some order of
   * them, applied to the model one by one, must give what each returned and what the store holds
   * after (two orders may return the same and differ only there, e.g. which of two writes of a
   * result came last). Checks every vehicle itself: returns an empty set.
   */
  private async race(subs: Sub[], same: boolean): Promise<Set<string>> {
    let aim: string | undefined;
    const calls = subs.map((s) => {
      if (!same || s.t === 'create' || s.t === 'sweep') return this.call(s);
      const c = this.call(s, aim);
      if (c.k === 'transition') aim ??= c.id;
      return c;
    });
    const got = await Promise.all(calls.map((c) => this.exec(c)));
    const before = this.model;
    const errors: string[] = [];
    for (const order of permutations(calls.length)) {
      const m = before.clone();
      try {
        for (const i of order) m.apply(calls[i]!, got[i]);
        this.model = m;
        await this.check();
        return new Set();
      } catch (err) {
        errors.push(`order ${order.join(',')}: ${(err as Error).message}`);
      }
    }
    throw new Error(
      `no order of the race explains its results and the store after it\ncalls: ${JSON.stringify(calls)}\nresults: ${JSON.stringify(got)}\n${errors.join('\n')}`,
    );
  }

  private async crash(): Promise<void> {
    if (this.mode.kind === 'redis') {
      // SIGKILL of the server (AOF, fsync always): what it acked must come back on restart. The
      // store stays open, as a gateway's does: its client reconnects by itself, and the restarted
      // server has lost the scripts it had loaded.
      return crashRedis(this.mode.server, () => this.store.ping());
    }
    // The files as they are between two calls: what a process killed now leaves behind.
    const from = this.path();
    this.generation++;
    copyCrashImage(from, this.path());
    await this.store.close(); // writes to the old files only
    await this.open();
  }

  /** The store against the model for these vehicles (all when undefined). */
  async check(only?: Set<string>): Promise<void> {
    for (const { id } of this.vehicles) {
      if (only !== undefined && !only.has(id)) continue;
      const mine = this.model.of(id);
      const rows = await Promise.all(mine.map((r) => this.store.getCommand(r.id)));
      mine.forEach((r, i) => expect(rows[i], `getCommand ${r.id}`).toStrictEqual(r));
      expect(await this.store.openCommands(id, this.clock), `open ${id}`).toStrictEqual(
        this.model.open(id, this.clock),
      );
      // And at one of its commands' expiry edges (or 0: the past, when all were open).
      const edges = mine.flatMap((r) => [r.expiresAt - 1, r.expiresAt]);
      const at = edges.length === 0 ? 0 : edges[Math.floor(this.rand() * edges.length)]!;
      expect(await this.store.openCommands(id, at), `open ${id} at ${at}`).toStrictEqual(
        this.model.open(id, at),
      );
    }
  }

  /** At the end: nothing unknown is found, and each vehicle's next seq follows its last. */
  async finish(): Promise<void> {
    expect(await this.store.getCommand('cmd-unknown')).toBeUndefined();
    for (const [v] of this.vehicles.entries()) {
      await this.run({ t: 'create', v, name: 'last', params: null, ttl: 1_000, tp: -1 });
    }
    await this.check();
  }
}

function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  return permutations(n - 1).flatMap((p) =>
    Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)]),
  );
}

describe.each([
  // One transaction per call; a crash is a copy of the files between two calls.
  { mode: 'SQLite in-process', kind: 'sqlite', runs: 200 },
  // Several round trips per call (index, expiry set, a Lua script); crashes are SIGKILLs.
  { mode: 'Redis', kind: 'redis', runs: 100 },
] as const)('command store against a model ($mode)', ({ kind, runs }) => {
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
    vi.setSystemTime(WALL);
    dirs = [];
  });
  afterEach(() => {
    vi.useRealTimers();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it(
    'gives seqs once, lets the first final result win, expires on time, through reopens and crashes',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 2, max: 4 }),
          // A command or more first: a transition or sweep before any has nothing to act on.
          fc
            .tuple(
              fc.array(create, { minLength: 1, maxLength: 3 }),
              fc.array(op, { minLength: 4, maxLength: 40 }),
            )
            .map(([a, b]) => [...a, ...b]),
          fc.integer(),
          async (count, ops, seed) => {
            const dir = mkdtempSync(join(tmpdir(), 'vmcp-cprop-'));
            dirs.push(dir);
            let x = seed >>> 0 || 1;
            const rand = (): number => {
              // xorshift32: the instants checked are part of the case, so a failure replays.
              x ^= x << 13;
              x ^= x >>> 17;
              x ^= x << 5;
              return (x >>> 0) / 2 ** 32;
            };
            const c = new Case(
              dir,
              kind === 'redis' ? { kind, server: server! } : { kind },
              count,
              rand,
            );
            await c.open();
            try {
              for (const o of ops) await c.check(await c.run(o));
              // Whatever the sequence, a clean reopen at the end reads the same.
              await c.run({ t: 'reopen' });
              await c.check();
              await c.finish();
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
