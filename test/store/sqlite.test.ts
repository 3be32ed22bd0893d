// SqliteStore: the store contract on a real file (both sync modes), plus SQLite-only behaviour:
// whole-batch commits, WAL on disk, and acked uplink surviving a kill -9 of the writing process.
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RecordData, UplinkRecord } from '../../src/protocol/record.js';
import {
  decodeEventSample,
  decodeTelemetrySample,
  encodeEvent,
  encodeTelemetry,
  eventData,
  telemetryData,
  type EventMessage,
  type TelemetryMessage,
} from '../../src/protocol/index.js';
import { UplinkTracer } from '../../src/observability/trace.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import {
  CHECKPOINTS_PER_TICK,
  CHECKPOINTS_PER_WRITE,
  INDEX_RUNS_PER_WRITE,
  UplinkAppender,
  VehicleStateReader,
  type FlatRows,
} from '../../src/store/sqlite-append.js';
import {
  INDEXED_UPTO_KEY,
  INDEX_WRITE_ENTRIES,
  INDEX_WRITE_RUNS,
  PACKED_TRACEPARENT_BYTES,
  PendingIndex,
  RUN_TARGET,
  UplinkRowReader,
  packTraceparent,
  traceparentOf,
  type UplinkRow,
} from '../../src/store/sqlite-index.js';
import { forEachLogEntry } from '../../src/store/sqlite-log.js';
import {
  INSERT_RUN_SQL,
  PendingList,
  RUN_MAX,
  decodeEntries,
  insertRuns,
  runBody,
  trimRun,
  type EntryValues,
} from '../../src/store/sqlite-runs.js';
import type { Store, UplinkWrite } from '../../src/store/types.js';
import { storeContract, type StoreHarness } from './contract.js';

const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const SQLITE_MODULE = pathToFileURL(join(REPO_ROOT, 'src/store/sqlite.ts')).href;

type Sync = 'full' | 'normal';

async function sqliteHarness(
  sync: Sync,
  worker = false,
): Promise<StoreHarness & { dir: string; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'vmcp-store-'));
  // A parent directory that does not exist yet: open() creates it.
  const path = join(dir, 'data', 'vmcp.db');
  const opened: SqliteStore[] = [];
  const reopen = async () => {
    const s = new SqliteStore({ path, sync, worker });
    await s.open();
    opened.push(s);
    return s;
  };
  let store: SqliteStore;
  try {
    store = await reopen();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    path,
    store,
    reopen,
    cleanup: async () => {
      for (const s of opened) await s.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

for (const sync of ['full', 'normal'] as const) {
  storeContract(`SqliteStore (sync ${sync})`, () => sqliteHarness(sync));
}
// Uplink appends in a worker thread (the built dist/store/sqlite-worker.js; npm test builds first).
storeContract('SqliteStore (sync full, worker thread)', () => sqliteHarness('full', true));

/** The vehicles and meta tables as schemas 0–4 wrote them (the migration tests build such files). */
const OLD_VEHICLES_TABLE = `CREATE TABLE vehicles (id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL DEFAULT 0,
  latest TEXT NOT NULL DEFAULT '{}', latest_seq INTEGER NOT NULL DEFAULT 0,
  next_cmd_seq INTEGER NOT NULL DEFAULT 1, first_seen INTEGER, last_seen INTEGER) WITHOUT ROWID;`;
const OLD_META_TABLE =
  'CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;';

/** The records in runs (holes too), decoded, with their vehicle keys: [vkey, row], by vkey and seq. */
function runRows(db: Database.Database): [number, UplinkRow][] {
  const out: [number, UplinkRow][] = [];
  const runs = db
    .prepare('SELECT vkey, first_seq, last_seq, body FROM uplink_runs ORDER BY vkey, first_seq')
    .raw()
    .all() as [number, number, number, Uint8Array][];
  for (const [vkey, first, last, body] of runs) {
    const rows: UplinkRow[] = [];
    decodeEntries(body, 0, body.length, first, 0, -1, -1, rows, true);
    expect(rows.map((r) => r.seq)).toEqual(
      Array.from({ length: last - first + 1 }, (_, i) => first + i),
    );
    for (const r of rows) out.push([vkey, r]);
  }
  return out;
}

/** The records in runs as [vkey, seq] (holes too), by vkey and seq. */
function indexEntries(db: Database.Database): [number, number][] {
  return runRows(db).map(([vkey, r]) => [vkey, r.seq]);
}

/** The records in the uplink log as [vkey, seq, position], in log order. */
function logEntries(db: Database.Database): [number, number, number][] {
  const out: [number, number, number][] = [];
  const logs = db.prepare('SELECT id, last, body FROM uplink_log ORDER BY id').raw().all() as [
    number,
    number,
    Uint8Array,
  ][];
  for (const [id, last, body] of logs) {
    forEachLogEntry(id, body, (vkey, seq, pos) => out.push([vkey, seq, pos]));
    expect(out[out.length - 1]![2]).toBe(last);
  }
  return out;
}

/** Entries of the seq index, read on a connection of its own. */
function indexCount(path: string): number {
  const raw = new Database(path, { readonly: true });
  try {
    return indexEntries(raw).length;
  } finally {
    raw.close();
  }
}

function rec(vehicleId: string, seq: number): UplinkRecord {
  return {
    vehicleId,
    seq,
    kind: 'telemetry',
    timestamp: 1,
    receivedAt: 2,
    data: { speedKmh: seq },
  };
}

/**
 * Makes SQLite itself refuse, in the middle of an append's transaction, the first write of
 * `vehicleId`: the creation of its key (a trigger raising an error).
 */
function failInsertsOf(path: string, vehicleId: string): void {
  const raw = new Database(path);
  try {
    raw.exec(
      `CREATE TRIGGER fail_inserts BEFORE INSERT ON vehicle_keys WHEN NEW.id = '${vehicleId}'
       BEGIN SELECT RAISE(ABORT, 'injected failure'); END`,
    );
  } finally {
    raw.close();
  }
}

/** Makes SQLite refuse every uplink log write while `meta.fail_log` exists. */
function failLogWrites(path: string): void {
  const raw = new Database(path);
  try {
    raw.exec(
      `CREATE TRIGGER fail_log BEFORE INSERT ON uplink_log WHEN EXISTS (SELECT 1 FROM meta WHERE key = 'fail_log')
       BEGIN SELECT RAISE(ABORT, 'injected failure'); END;
       INSERT INTO meta (key, value) VALUES ('fail_log', '1');`,
    );
  } finally {
    raw.close();
  }
}

/** Records written with their TLVs (UplinkWrite.raw) read back as the JSON of the data given. */
async function tlvRoundTrip(h: Awaited<ReturnType<typeof sqliteHarness>>): Promise<void> {
  const samples: TelemetryMessage[] = [
    {
      seq: 1,
      timestamp: 1_700_000_000_123,
      latitude: 31_230_400,
      longitude: 121_473_700,
      speed: 523,
    },
    {
      seq: 2,
      timestamp: 1_700_000_001_000,
      heading: 3599,
      altitude: -120,
      odometer: 123_456_789,
      fuelOrSoc: 77,
      statusFlags: 5,
      engineRpm: 2100,
      batteryMv: 12_600,
      vendor: { '0x80': '01ff', '0xfe': '' },
    },
  ];
  const event: EventMessage = {
    seq: 3,
    timestamp: 1_700_000_002_000,
    latitude: -33_868_800,
    eventCode: 7,
    severity: 2,
    detail: 'harsh braking ✓',
    vendor: { '0x90': 'ab' },
  };
  const writes: UplinkWrite[] = [];
  for (const m of samples) {
    const bytes = encodeTelemetry(m);
    const sample = decodeTelemetrySample(bytes, 4, bytes.length);
    writes.push({
      vehicleId: 'T',
      seq: m.seq,
      record: { ...rec('T', m.seq), timestamp: sample.timestamp, data: telemetryData(sample) },
      raw: bytes.slice(4),
    });
  }
  const evBytes = encodeEvent(event);
  const ev = decodeEventSample(evBytes, 4, evBytes.length);
  writes.push({
    vehicleId: 'T',
    seq: 3,
    record: { ...rec('T', 3), kind: 'event', timestamp: ev.timestamp, data: eventData(ev) },
    raw: evBytes.slice(4),
  });
  // As the gateway hands them over: views into one shared pool (its TLV copies slice Node's Buffer
  // pool), at offsets, between junk bytes. A store (or a worker hand-off) that read the view's
  // whole buffer instead of its bytes would keep junk.
  const pool = new Uint8Array(16 + writes.reduce((n, w) => n + w.raw!.length + 7, 0)).fill(0xee);
  let at = 16;
  for (const w of writes) {
    pool.set(w.raw!, at);
    w.raw = pool.subarray(at, at + w.raw!.length);
    at += w.raw.length + 7;
  }
  expect(await h.store.appendUplink(writes)).toEqual(new Map());
  // What the API serves is JSON: the TLV rows must give exactly the JSON of the data written.
  const asJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v));
  const expected = writes.map((w) => asJson(w.record));
  expect(asJson(await h.store.listUplink('T', 0, 10))).toEqual(expected);
  await h.store.close();
  const store = await h.reopen(); // the latest state now comes from the rows, not the cache
  expect(asJson(await store.listUplink('T', 0, 10))).toEqual(expected);
  await store.markSeen('T', 5);
  expect(asJson((await store.getVehicle('T'))?.latest ?? null)).toEqual(
    asJson({ ...writes[0]!.record!.data, ...writes[1]!.record!.data }),
  );
  // Kept as the TLVs received, byte for byte (the close wrote them into runs).
  const raw = new Database(h.path, { readonly: true });
  try {
    const data = runRows(raw).map(([, r]) => r.data);
    expect(data.map((d) => Buffer.isBuffer(d) && d)).toEqual(
      writes.map((w) => Buffer.from(w.raw!)),
    );
  } finally {
    raw.close();
  }
}

describe('SqliteStore specifics', () => {
  let h: Awaited<ReturnType<typeof sqliteHarness>>;

  beforeEach(async () => {
    h = await sqliteHarness('full');
  });

  afterEach(async () => {
    const dir = h.dir;
    await h.cleanup();
    expect(existsSync(dir)).toBe(false);
  });

  it('declares engine sqlite with whole-batch appends', () => {
    expect(h.store.capabilities).toEqual({ engine: 'sqlite', partialAppend: false });
  });

  it('creates the data directory and keeps the file in WAL mode', () => {
    expect(existsSync(h.path)).toBe(true);
    const raw = new Database(h.path, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      raw.close();
    }
  });

  for (const failing of ['key', 'log'] as const)
    it(`commits a batch whole: a failing write rejects and writes no vehicle of the call (${failing})`, async () => {
      // A write that SQLite itself refuses (a trigger raising an error for B's key, or for the log
      // row), so the transaction fails part-way, after A's key went in.
      if (failing === 'key') failInsertsOf(h.path, 'B');
      else failLogWrites(h.path);
      await h.store.markSeen('A', 1);
      await expect(
        h.store.appendUplink([
          { vehicleId: 'A', seq: 1, record: rec('A', 1) },
          { vehicleId: 'B', seq: 1, record: rec('B', 1) },
        ]),
      ).rejects.toThrow();
      expect(await h.store.listUplink('A', 0, 10)).toEqual([]);
      expect((await h.store.getVehicle('A'))?.lastUplinkSeq).toBe(0);
      expect((await h.store.getVehicle('A'))?.latest).toEqual({});
      if (failing === 'log') {
        const raw = new Database(h.path);
        raw.exec("DELETE FROM meta WHERE key = 'fail_log'");
        raw.close();
      }
      // The store still works afterwards.
      expect(await h.store.appendUplink([{ vehicleId: 'A', seq: 1, record: rec('A', 1) }])).toEqual(
        new Map(),
      );
    });

  it('keeps a vehicle created by a failed batch usable: its key went with the rollback', async () => {
    // NEW is a vehicle without a key yet; the batch creates it, then fails on FAIL's row.
    failInsertsOf(h.path, 'FAIL');
    await expect(
      h.store.appendUplink([
        { vehicleId: 'NEW', seq: 1, record: rec('NEW', 1) },
        { vehicleId: 'FAIL', seq: 1, record: rec('FAIL', 1) },
      ]),
    ).rejects.toThrow();
    // A cached key from the rolled-back transaction would point the rows at nothing.
    expect(
      await h.store.appendUplink([{ vehicleId: 'NEW', seq: 1, record: rec('NEW', 1) }]),
    ).toEqual(new Map());
    expect((await h.store.listUplink('NEW', 0, 10)).map((r) => r.seq)).toEqual([1]);
    await h.store.markSeen('NEW', 3);
    expect((await h.store.getVehicle('NEW'))?.lastUplinkSeq).toBe(1);
  });

  it('migrates a database of schema 0 (uplink keyed by the id text) without losing a row', async () => {
    await h.store.close();
    await rm(h.path);
    // The first schema's tables as they were written, with rows in them: A has a checkpoint and
    // rows after it, B only rows (one a hole), C a checkpoint only.
    const raw = new Database(h.path);
    try {
      raw.pragma('journal_mode = WAL');
      raw.exec(`
        ${OLD_VEHICLES_TABLE}
        CREATE TABLE uplink (id INTEGER PRIMARY KEY, vehicle_id TEXT NOT NULL, seq INTEGER NOT NULL,
          kind INTEGER NOT NULL, ts INTEGER NOT NULL, received_at INTEGER NOT NULL, traceparent TEXT, data TEXT);
        CREATE UNIQUE INDEX uplink_vehicle_seq ON uplink (vehicle_id, seq);
        ${OLD_META_TABLE}
        INSERT INTO vehicles VALUES ('A', 2, '{"speedKmh":2}', 2, 1, 10, 20);
        INSERT INTO vehicles VALUES ('C', 7, '{"speedKmh":7}', 7, 1, 10, 20);
        INSERT INTO uplink VALUES (1, 'A', 1, 0, 100, 110, NULL, '{"speedKmh":1}');
        INSERT INTO uplink VALUES (2, 'B', 1, 0, 100, 110, NULL, '{"speedKmh":11}');
        INSERT INTO uplink VALUES (3, 'A', 2, 0, 100, 110, NULL, '{"speedKmh":2}');
        INSERT INTO uplink VALUES (4, 'B', 2, -1, 0, 110, NULL, NULL);
        INSERT INTO uplink VALUES (5, 'A', 3, 1, 100, 110, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '{"eventCode":1}');
        INSERT INTO uplink VALUES (6, 'A', 4, 0, 100, 110, NULL, '{"speedKmh":4,"odometerKm":9}');
        INSERT INTO uplink VALUES (7, 'B', 3, 0, 100, 110, NULL, '{"speedKmh":13}');
        INSERT INTO meta VALUES ('k', 'v');
      `);
    } finally {
      raw.close();
    }
    const store = await h.reopen();
    expect((await store.listUplink('A', 0, 10)).map((r) => [r.seq, r.kind, r.data])).toEqual([
      [1, 'telemetry', { speedKmh: 1 }],
      [2, 'telemetry', { speedKmh: 2 }],
      [3, 'event', { eventCode: 1 }],
      [4, 'telemetry', { speedKmh: 4, odometerKm: 9 }],
    ]);
    expect((await store.listUplink('A', 2, 1))[0]?.traceparent).toBe(
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    );
    expect((await store.listUplink('B', 0, 10)).map((r) => r.seq)).toEqual([1, 3]);
    expect(await store.getVehicle('A')).toMatchObject({
      lastUplinkSeq: 4,
      latest: { speedKmh: 4, odometerKm: 9 },
    });
    expect(await store.getVehicle('C')).toMatchObject({ lastUplinkSeq: 7 });
    expect(await store.getMeta('k')).toBe('v');
    // Appends continue where each vehicle's rows left off.
    const next = await store.appendUplink([
      { vehicleId: 'A', seq: 5, record: null },
      { vehicleId: 'B', seq: 4, record: null },
      { vehicleId: 'C', seq: 9, record: null },
    ]);
    expect([...next]).toEqual([['C', { kind: 'conflict', lastSeq: 7 }]]);
    await store.close();
    const check = new Database(h.path, { readonly: true });
    try {
      expect(check.pragma('user_version', { simple: true })).toBe(6);
      expect(
        check.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'uplink'").pluck().get(),
      ).toBe(0);
      // Every migrated row (and the new ones, written at close) is in its vehicle's runs.
      expect(indexEntries(check)).toEqual([
        [1, 1],
        [1, 2],
        [1, 3],
        [1, 4],
        [1, 5],
        [2, 1],
        [2, 2],
        [2, 3],
        [2, 4],
      ]);
      expect(logEntries(check)).toEqual([]);
    } finally {
      check.close();
    }
  });

  it('reads rows whose index entries were never written (a crash before the bulk index write)', async () => {
    // The first store appends and is never closed (as after kill -9): its index entries are only in
    // its memory. A second connection must find the rows from the table's tail, and a new store's
    // appender must rebuild them.
    for (let seq = 1; seq <= 5; seq++)
      await h.store.appendUplink([
        { vehicleId: 'A', seq, record: rec('A', seq) },
        { vehicleId: 'B', seq, record: seq === 3 ? null : rec('B', seq) },
      ]);
    const raw = new Database(h.path, { readonly: true });
    try {
      expect(logEntries(raw)).toHaveLength(10);
      expect(indexEntries(raw)).toEqual([]);
    } finally {
      raw.close();
    }
    const other = await h.reopen();
    expect((await other.listUplink('A', 2, 10)).map((r) => r.seq)).toEqual([3, 4, 5]);
    expect((await other.listUplink('B', 0, 10)).map((r) => r.seq)).toEqual([1, 2, 4, 5]);
    expect((await other.listUplink('B', 0, 2)).map((r) => r.seq)).toEqual([1, 2]);
    expect(await other.appendUplink([{ vehicleId: 'B', seq: 6, record: rec('B', 6) }])).toEqual(
      new Map(),
    );
    expect((await other.getVehicle('B')) ?? { lastUplinkSeq: 6 }).toMatchObject({
      lastUplinkSeq: 6,
    });
  });

  it('writes a commit as one log row: each record keeps its own position, seq and data', async () => {
    // 97 records in one call, with a vehicle whose seq conflicts (its rows are left out) between
    // the others. Every record must be found by its seq, from the log before the runs are written
    // and through the runs after it.
    const mine = (v: number, seq: number): UplinkRecord => ({
      vehicleId: `M${v}`,
      seq,
      kind: 'telemetry',
      timestamp: 1_700_000_000_000 + seq,
      receivedAt: 2,
      data: { speedKmh: seq, odometerKm: v },
    });
    const counts = [70, 17, 6, 5, 3, 1];
    await h.store.appendUplink([{ vehicleId: 'M3', seq: 1, record: mine(3, 1) }]);
    const writes: UplinkWrite[] = [];
    counts.forEach((count, v) => {
      // M3 already holds seq 1: its group (seqs 1–5 again) conflicts and is written by no one.
      for (let seq = 1; seq <= count; seq++)
        writes.push({ vehicleId: `M${v}`, seq, record: mine(v, seq) });
    });
    const failures = await h.store.appendUplink(writes);
    expect([...failures.keys()]).toEqual(['M3']);
    const check = async (store: typeof h.store): Promise<void> => {
      for (const [v, count] of counts.entries()) {
        const want =
          v === 3 ? [mine(3, 1)] : Array.from({ length: count }, (_, k) => mine(v, k + 1));
        const got = await store.listUplink(`M${v}`, 0, 100);
        expect(
          got.map((r) => [r.seq, r.data]),
          `M${v}`,
        ).toEqual(want.map((r) => [r.seq, r.data]));
        if (count > 40) {
          const page = await store.listUplink(`M${v}`, 37, 5);
          expect(page.map((r) => r.data.speedKmh)).toEqual([38, 39, 40, 41, 42]);
        }
      }
    };
    await check(h.store);
    const log = new Database(h.path, { readonly: true });
    try {
      // Two commits, two log rows: positions 1 and 2…98, the accepted records in batch order.
      expect(log.prepare('SELECT id, last FROM uplink_log ORDER BY id').raw().all()).toEqual([
        [1, 1],
        [2, 98],
      ]);
      const keys = new Map(
        log.prepare('SELECT key, id FROM vehicle_keys').raw().all() as [number, string][],
      );
      expect(logEntries(log).map(([k, seq, pos]) => `${keys.get(k)}:${seq}@${pos}`)).toEqual([
        'M3:1@1',
        ...writes
          .filter((w) => w.vehicleId !== 'M3')
          .map((w, i) => `${w.vehicleId}:${w.seq}@${i + 2}`),
      ]);
    } finally {
      log.close();
    }
    const other = await h.reopen(); // another connection: reads the log past the mark
    await check(other);
    await h.store.close(); // writes the runs; the log is empty after
    const after = await h.reopen();
    const raw = new Database(h.path, { readonly: true });
    try {
      expect(indexEntries(raw)).toHaveLength(98);
      expect(logEntries(raw)).toEqual([]);
      // A run per vehicle, keyed by its last record's position.
      expect(
        raw
          .prepare('SELECT last_id, first_seq, last_seq FROM uplink_runs ORDER BY last_id')
          .raw()
          .all(),
      ).toEqual([
        [1, 1, 1],
        [71, 1, 70],
        [88, 1, 17],
        [94, 1, 6],
        [97, 1, 3],
        [98, 1, 1],
      ]);
    } finally {
      raw.close();
    }
    await check(after);
  });

  it('commits markSeen without its own flush and flushes every other commit again (sync full)', async () => {
    const synchronous = (): number =>
      (h.store as unknown as { db: Database.Database }).db.pragma('synchronous', {
        simple: true,
      }) as number;
    const FULL = 2;
    expect(synchronous()).toBe(FULL);
    const seen = await Promise.all([h.store.markSeen('S1', 10), h.store.markSeen('S2', 11)]);
    expect(seen.map((v) => [v.id, v.lastSeenAt])).toEqual([
      ['S1', 10],
      ['S2', 11],
    ]);
    expect(synchronous()).toBe(FULL);
    // A markSeen that SQLite refuses leaves the connection flushing too.
    const raw = new Database(h.path);
    raw.exec(
      `CREATE TRIGGER fail_seen BEFORE UPDATE ON vehicles WHEN NEW.id = 'S1'
       BEGIN SELECT RAISE(ABORT, 'injected failure'); END`,
    );
    raw.close();
    await expect(h.store.markSeen('S1', 12)).rejects.toThrow(/injected failure/);
    expect(synchronous()).toBe(FULL);
    expect(await h.store.appendUplink([{ vehicleId: 'S2', seq: 1, record: rec('S2', 1) }])).toEqual(
      new Map(),
    );
    // Nothing of it is lost to another connection, nor after a close and reopen.
    await h.store.close();
    const again = await h.reopen();
    expect((await again.getVehicle('S2'))?.lastSeenAt).toBe(11);
    expect((await again.getVehicle('S2'))?.lastUplinkSeq).toBe(1);
  });

  it('lists across the index mark: indexed rows, then rows written after the last index write', async () => {
    for (let seq = 1; seq <= 4; seq++)
      await h.store.appendUplink([
        { vehicleId: 'A', seq, record: seq === 2 ? null : rec('A', seq) },
      ]);
    await h.store.close(); // writes the index
    const store = await h.reopen();
    for (let seq = 5; seq <= 7; seq++)
      await store.appendUplink([{ vehicleId: 'A', seq, record: seq === 6 ? null : rec('A', seq) }]);
    expect((await store.listUplink('A', 0, 100)).map((r) => r.seq)).toEqual([1, 3, 4, 5, 7]);
    expect((await store.listUplink('A', 0, 3)).map((r) => r.seq)).toEqual([1, 3, 4]);
    expect((await store.listUplink('A', 3, 2)).map((r) => r.seq)).toEqual([4, 5]);
    expect((await store.listUplink('A', 4, 5)).map((r) => r.seq)).toEqual([5, 7]);
    expect((await store.listUplink('A', 5, 5)).map((r) => r.seq)).toEqual([7]);
  });

  it('a retention pass with nothing old enough writes nothing: no checkpoints, no index', async () => {
    // It used to flush every pending index entry and every dirty checkpoint first: with 19,000
    // reporting vehicles, one long transaction every 10 s.
    for (let seq = 1; seq <= 3; seq++)
      await h.store.appendUplink([
        { vehicleId: 'A', seq, record: rec('A', seq) },
        { vehicleId: 'B', seq, record: rec('B', seq) },
      ]);
    expect(await h.store.pruneUplink(0, 1_000)).toBe(0);
    const raw = new Database(h.path, { readonly: true });
    try {
      expect(raw.prepare('SELECT count(*) FROM vehicles WHERE latest_seq > 0').pluck().get()).toBe(
        0,
      );
      expect(indexEntries(raw)).toEqual([]);
    } finally {
      raw.close();
    }
    expect((await h.store.listUplink('B', 1, 10)).map((r) => r.seq)).toEqual([2, 3]);
  });

  it('deletes whole runs, and turns the old records of a run it keeps into holes', async () => {
    // Three run writes (each close writes one): runs A 1–2 / B 1–2, A 3–4 / B 3–4, A 5–6 / B 5–6.
    let store = h.store;
    for (let seq = 1; seq <= 6; seq++) {
      await store.appendUplink([
        { vehicleId: 'A', seq, record: { ...rec('A', seq), receivedAt: seq } },
        { vehicleId: 'B', seq, record: seq === 4 ? null : { ...rec('B', seq), receivedAt: seq } },
      ]);
      if (seq % 2 === 0) {
        await store.close();
        store = await h.reopen();
      }
    }
    // Records received before 4 go: A 1–3, B 1–3. B's hole at 4 is received "now", but its run
    // (B 3–4) is left without a record, so it goes whole: the checkpoint keeps B's last seq.
    expect(await store.pruneUplink(4, 1_000)).toBe(6);
    expect((await store.listUplink('A', 0, 10)).map((r) => r.seq)).toEqual([4, 5, 6]);
    expect((await store.listUplink('B', 0, 10)).map((r) => r.seq)).toEqual([5, 6]);
    expect((await store.listUplink('A', 0, 1)).map((r) => r.seq)).toEqual([4]);
    await store.close();
    const raw = new Database(h.path, { readonly: true });
    try {
      // The first runs went whole, and B 3–4 too; A 3–4 stays, with 3 a hole now.
      const entries = indexEntries(raw);
      expect(entries.map(([vkey, seq]) => [vkey, seq])).toEqual([
        [1, 3],
        [1, 4],
        [1, 5],
        [1, 6],
        [2, 5],
        [2, 6],
      ]);
      expect(
        runRows(raw)
          .filter(([, r]) => r.kind < 0)
          .map(([k, r]) => [k, r.seq]),
      ).toEqual([[1, 3]]);
      expect(
        raw.prepare('SELECT records FROM uplink_runs ORDER BY vkey, first_seq').pluck().all(),
      ).toEqual([1, 2, 2]);
      expect(raw.prepare('SELECT last_seq FROM vehicles WHERE id = ?').pluck().get('B')).toBe(6);
    } finally {
      raw.close();
    }
  });

  it('migrates a database of schema 5: its runs get the index retention goes by', async () => {
    await h.store.appendUplink([{ vehicleId: 'M', seq: 1, record: rec('M', 1) }]);
    await h.store.close();
    const raw = new Database(h.path);
    try {
      raw.exec('DROP INDEX uplink_runs_first_at');
      raw.pragma('user_version = 5');
    } finally {
      raw.close();
    }
    const store = await h.reopen();
    expect((await store.listUplink('M', 0, 10)).map((r) => r.seq)).toEqual([1]);
    await store.close();
    const check = new Database(h.path, { readonly: true });
    try {
      expect(check.pragma('user_version', { simple: true })).toBe(6);
      const plan = check
        .prepare(
          'EXPLAIN QUERY PLAN SELECT last_id FROM uplink_runs WHERE first_at < ? ORDER BY first_at LIMIT 3',
        )
        .all(1) as { detail: string }[];
      expect(plan.map((p) => p.detail).join('; ')).toContain('uplink_runs_first_at');
    } finally {
      check.close();
    }
  });

  it('prunes by the oldest record of each run: a run that spans a long time is not passed over', async () => {
    // S reports rarely: its first record (received at 1,000) waits in memory while four other
    // vehicles write full runs (received at 5,000), and its run is written last, with S's second
    // record (6,000). In the order of last positions S's run comes after theirs; retention used to
    // go by that order, so a step of 3 looked at three recent runs only and reported 0 while S's
    // old record was left.
    await h.store.close();
    const store = new SqliteStore({ path: h.path, sync: 'normal', holdRows: 1_000 });
    await store.open();
    try {
      const appender = (store as unknown as { appender: UplinkAppender }).appender;
      const at = (vehicleId: string, seq: number, receivedAt: number): UplinkWrite => ({
        vehicleId,
        seq,
        record: { ...rec(vehicleId, seq), receivedAt },
      });
      await store.appendUplink([at('S', 1, 1_000)]);
      for (const f of ['F0', 'F1', 'F2', 'F3'])
        await store.appendUplink(Array.from({ length: RUN_TARGET }, (_, i) => at(f, i + 1, 5_000)));
      // The full runs go; S's one record waits (not a full run, not 1,000 records behind).
      expect(appender.writeIndex(100, false)).toBe(4);
      expect(appender.pending.entries).toBe(1);
      await store.appendUplink([at('S', 2, 6_000)]);
      appender.writeIndex();
      const raw = new Database(h.path, { readonly: true });
      try {
        const order = raw
          .prepare(
            'SELECT k.id FROM uplink_runs r JOIN vehicle_keys k ON k.key = r.vkey ORDER BY r.last_id',
          )
          .pluck()
          .all();
        expect(order).toEqual(['F0', 'F1', 'F2', 'F3', 'S']);
      } finally {
        raw.close();
      }
      expect(await store.pruneUplink(2_000, 3)).toBe(1);
      expect((await store.listUplink('S', 0, 10)).map((r) => r.seq)).toEqual([2]);
      // Nothing older than 2,000 is left: fewer than the budget says so.
      expect(await store.pruneUplink(2_000, 3)).toBe(0);
      for (const f of ['F0', 'F1', 'F2', 'F3'])
        expect(await store.listUplink(f, 0, 100)).toHaveLength(RUN_TARGET);
      // A step of 3 at 5,500: three of F0's records (its run trimmed), then the rest, step by step.
      expect(await store.pruneUplink(5_500, 3)).toBe(3);
      expect((await store.listUplink('F0', 0, 3)).map((r) => r.seq)).toEqual([4, 5, 6]);
      let total = 3;
      for (let n = 3; n === 3; total += n) n = await store.pruneUplink(5_500, 3);
      expect(total).toBe(4 * RUN_TARGET);
      expect((await store.listUplink('S', 0, 10)).map((r) => r.seq)).toEqual([2]);
      // Its records gone, a vehicle's seqs stay consumed.
      expect((await store.markSeen('F3', 9_000)).lastUplinkSeq).toBe(RUN_TARGET);
    } finally {
      await store.close();
    }
  });

  it('counts what a trim removes, not what its run holds: a step takes its whole budget across runs that straddle the line', async () => {
    // Ten vehicles, one run each: 2 records received at 1,000, then 30 at 5,000. A step of 20 at
    // 2,000 has exactly 20 old records to take, 2 from each run.
    let store = h.store;
    for (let v = 0; v < 10; v++)
      await store.appendUplink(
        Array.from({ length: 32 }, (_, i) => ({
          vehicleId: `W${v}`,
          seq: i + 1,
          record: { ...rec(`W${v}`, i + 1), receivedAt: i < 2 ? 1_000 : 5_000 },
        })),
      );
    await store.close();
    store = await h.reopen();
    expect(await store.pruneUplink(2_000, 20)).toBe(20);
    for (let v = 0; v < 10; v++)
      expect((await store.listUplink(`W${v}`, 0, 1))[0]?.seq, `W${v}`).toBe(3);
    expect(await store.pruneUplink(2_000, 20)).toBe(0);
  });

  for (const version of [3, 4])
    it(`migrates a database of schema ${version} (rows, and an index of their ids) into runs, rows above its mark too`, async () => {
      await h.store.close();
      await rm(h.path);
      // A file as a version-3 or -4 gateway that crashed between two index writes leaves it: rows
      // 1–4 indexed (A 1–2, B 1–2 with B 2 a hole), rows 5–8 above the mark.
      const raw = new Database(h.path);
      try {
        raw.pragma('journal_mode = WAL');
        raw.exec(`
          ${OLD_VEHICLES_TABLE}
          CREATE TABLE vehicle_keys (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
          CREATE TABLE uplink (id INTEGER PRIMARY KEY, vkey INTEGER NOT NULL, seq INTEGER NOT NULL,
            kind INTEGER NOT NULL, ts INTEGER NOT NULL, received_at INTEGER NOT NULL, traceparent TEXT, data BLOB);
          ${OLD_META_TABLE}
          INSERT INTO vehicle_keys VALUES (1, 'A'), (2, 'B');
          INSERT INTO uplink VALUES (1, 1, 1, 0, 100, 110, NULL, '{"speedKmh":1}');
          INSERT INTO uplink VALUES (2, 2, 1, 0, 100, 110, NULL, '{"speedKmh":11}');
          INSERT INTO uplink VALUES (3, 1, 2, 0, 100, 110, NULL, '{"speedKmh":2}');
          INSERT INTO uplink VALUES (4, 2, 2, -1, 0, 110, NULL, NULL);
          INSERT INTO uplink VALUES (5, 1, 3, 1, 100, 110, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '{"eventCode":1}');
          INSERT INTO uplink VALUES (6, 2, 3, 0, 100, 110, NULL, '{"speedKmh":13}');
          INSERT INTO uplink VALUES (7, 1, 4, 0, 100, 110, NULL, '{"speedKmh":4}');
          INSERT INTO uplink VALUES (8, 2, 4, 0, 100, 110, NULL, '{"speedKmh":14}');
          INSERT INTO meta VALUES ('uplink_indexed_upto', '4');
        `);
        if (version === 3)
          raw.exec(`CREATE TABLE uplink_seq (vkey INTEGER NOT NULL, seq INTEGER NOT NULL, id INTEGER NOT NULL,
            PRIMARY KEY (vkey, seq)) WITHOUT ROWID;
            INSERT INTO uplink_seq SELECT vkey, seq, id FROM uplink WHERE id <= 4;`);
        else
          raw.exec(`CREATE TABLE uplink_runs (last_id INTEGER PRIMARY KEY, vkey INTEGER NOT NULL,
            first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, ids BLOB NOT NULL);
            CREATE INDEX uplink_runs_vkey ON uplink_runs (vkey, last_seq);
            INSERT INTO uplink_runs VALUES (3, 1, 1, 2, x'0102'), (4, 2, 1, 2, x'0202');`);
        raw.pragma(`user_version = ${version}`);
      } finally {
        raw.close();
      }
      const store = await h.reopen();
      expect((await store.listUplink('A', 0, 10)).map((r) => [r.seq, r.data])).toEqual([
        [1, { speedKmh: 1 }],
        [2, { speedKmh: 2 }],
        [3, { eventCode: 1 }],
        [4, { speedKmh: 4 }],
      ]);
      expect((await store.listUplink('A', 2, 1))[0]?.traceparent).toBe(
        '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      );
      expect((await store.listUplink('B', 1, 10)).map((r) => r.seq)).toEqual([3, 4]);
      expect(await store.appendUplink([{ vehicleId: 'B', seq: 5, record: rec('B', 5) }])).toEqual(
        new Map(),
      );
      await store.close();
      const check = new Database(h.path, { readonly: true });
      try {
        expect(check.pragma('user_version', { simple: true })).toBe(6);
        expect(
          check
            .prepare("SELECT count(*) FROM sqlite_master WHERE name IN ('uplink', 'uplink_seq')")
            .pluck()
            .get(),
        ).toBe(0);
        expect(indexEntries(check)).toEqual([
          [1, 1],
          [1, 2],
          [1, 3],
          [1, 4],
          [2, 1],
          [2, 2],
          [2, 3],
          [2, 4],
          [2, 5],
        ]);
        // The old row ids are the positions; the new record takes the next one.
        expect(
          check.prepare('SELECT last_id FROM uplink_runs ORDER BY last_id').pluck().all(),
        ).toEqual([7, 8, 9]);
      } finally {
        check.close();
      }
    });

  for (const worker of [false, true]) {
    it(`keeps records given as TLVs and reads them back as the same JSON data${worker ? ' (worker thread)' : ''}`, async () => {
      const w = worker ? await sqliteHarness('full', true) : h;
      try {
        await tlvRoundTrip(w);
      } finally {
        if (worker) await w.cleanup();
      }
    });
  }

  it('writes the index as soon as enough entries wait, without waiting for the timer (worker thread)', async () => {
    // The worker's readers are on another connection (tail scans): every vehicle's entries go.
    const w = await sqliteHarness('full', true);
    try {
      // INDEX_WRITE_ENTRIES rows (holes are rows too), in calls of 64 vehicles.
      let seq = 0;
      while (seq * 64 < INDEX_WRITE_ENTRIES) {
        seq++;
        const writes: UplinkWrite[] = [];
        for (let v = 0; v < 64; v++) writes.push({ vehicleId: `V${v}`, seq, record: null });
        await w.store.appendUplink(writes);
      }
      expect(seq * 64).toBe(INDEX_WRITE_ENTRIES);
      // The worker writes it on its own next turn: well before the 2 s timer.
      const started = Date.now();
      while (indexCount(w.path) < INDEX_WRITE_ENTRIES && Date.now() - started < 1_500)
        await new Promise((r) => setTimeout(r, 20));
      expect(indexCount(w.path)).toBe(INDEX_WRITE_ENTRIES);
      // And the reads agree with the rows whichever way they find them.
      expect(
        (
          await w.store.appendUplink([
            { vehicleId: 'V0', seq: seq + 1, record: rec('V0', seq + 1) },
          ])
        ).size,
      ).toBe(0);
      expect((await w.store.listUplink('V0', seq - 1, 10)).map((r) => r.seq)).toEqual([seq + 1]);
    } finally {
      await w.cleanup();
    }
  });

  it('writes the index in-process as soon as enough vehicles have a full run, without the timer', async () => {
    // In-process, short runs wait (INDEX_HOLD_ROWS); INDEX_WRITE_RUNS vehicles with RUN_TARGET
    // entries each make a write due on the next turn of the event loop.
    const vehicles = INDEX_WRITE_RUNS;
    // A vehicle with one row: its run waits, even through the timer's tick.
    await h.store.appendUplink([{ vehicleId: 'W', seq: 1, record: rec('W', 1) }]);
    await (h.store as SqliteStore).maintain('tick');
    expect(indexCount(h.path)).toBe(0);
    for (let seq = 1; seq <= RUN_TARGET; seq++) {
      for (let from = 0; from < vehicles; from += 256) {
        const writes: UplinkWrite[] = [];
        for (let v = from; v < from + 256; v++)
          writes.push({ vehicleId: `V${v}`, seq, record: null });
        await h.store.appendUplink(writes);
      }
    }
    expect(indexCount(h.path)).toBe(0); // due, written on the next turn of the event loop
    await new Promise((r) => setImmediate(r));
    expect(indexCount(h.path)).toBe(vehicles * RUN_TARGET);
    expect((await h.store.listUplink('V7', RUN_TARGET - 2, 10)).map((r) => r.seq)).toEqual([]);
    expect(
      (await h.store.appendUplink([{ vehicleId: 'V7', seq: RUN_TARGET + 1, record: rec('V7', 1) }]))
        .size,
    ).toBe(0);
    expect((await h.store.listUplink('V7', RUN_TARGET - 1, 10)).map((r) => r.seq)).toEqual([
      RUN_TARGET + 1,
    ]);
  });

  it('holds short runs until RUN_TARGET entries or holdRows rows behind; reads and reloads meanwhile are exact', async () => {
    await h.store.close(); // the store created the schema; an appender of its own on the file
    const db = new Database(h.path);
    const other = new Database(h.path);
    const mark = (): number =>
      Number(db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get(INDEXED_UPTO_KEY) ?? 0);
    try {
      const appender = new UplinkAppender(db, { holdRows: 100 });
      const here = new VehicleStateReader(db, appender.pending).rows;
      const there = new UplinkRowReader(other, null);
      const seqs: Record<string, number> = {};
      const append = (vehicleId: string, count: number): void => {
        const rows: FlatRows = [];
        for (let i = 0; i < count; i++) {
          const seq = (seqs[vehicleId] = (seqs[vehicleId] ?? 0) + 1);
          rows.push(vehicleId, seq, 0, 1, 2, null, `{"speedKmh":${seq}}`);
        }
        expect(appender.append(rows)).toEqual([]);
      };
      const exact = (): void => {
        for (const [v, last] of Object.entries(seqs)) {
          const want = Array.from({ length: last }, (_, i) => i + 1);
          expect(here.rows(v, 0, -1, -1).map((r) => r.seq)).toEqual(want);
          expect(there.rows(v, 0, -1, -1).map((r) => r.seq)).toEqual(want);
          expect(here.rows(v, last - 2, -1, -1).map((r) => r.seq)).toEqual(want.slice(-2));
        }
        // A crash now: a new appender's entries are the rows above the mark that no run holds.
        expect(new PendingIndex(other).entries).toBe(appender.pending.entries);
      };
      // Ten vehicles, one row each (ids 1–10): a tick writes nothing, none is 100 rows behind.
      for (let v = 0; v < 10; v++) append(`V${v}`, 1);
      appender.tick();
      expect(indexEntries(db)).toEqual([]);
      expect(mark()).toBe(0);
      exact();
      // V1 writes a second row (id 11); V0 reaches RUN_TARGET entries (ids 12–44): its run goes,
      // the others still wait. The mark stops below V1's first row (id 2), the first one waiting.
      append('V1', 1);
      append('V0', RUN_TARGET + 1);
      appender.tick();
      expect(indexEntries(db)).toHaveLength(RUN_TARGET + 2);
      expect(mark()).toBe(1);
      exact();
      // V10 writes 67 rows (ids 45–111): V1…V9 are now 100 rows behind, and V10 has a full run.
      append('V10', 67);
      appender.tick();
      expect(indexEntries(db)).toHaveLength(111);
      expect(mark()).toBe(111);
      expect(appender.pending.entries).toBe(0);
      exact();
      // A short run still waiting is written on flush (close).
      append('V3', 2);
      appender.tick();
      expect(indexEntries(db)).toHaveLength(111);
      exact();
      appender.flush();
      expect(indexEntries(db)).toHaveLength(113);
      expect(mark()).toBe(113);
      exact();
    } finally {
      other.close();
      db.close();
    }
  });

  it('commits index runs and checkpoints without a flush of their own, every uplink commit with one (sync full)', async () => {
    const db = (h.store as unknown as { db: Database.Database }).db;
    const FULL = 2;
    const NORMAL = 1;
    // Follow the level the connection is set to, and record it whenever a table is written.
    let level = db.pragma('synchronous', { simple: true }) as number;
    expect(level).toBe(FULL);
    const pragma = db.pragma.bind(db);
    db.pragma = ((source: string, options?: Database.PragmaOptions) => {
      const m = /^synchronous = (\w+)$/.exec(source);
      if (m) level = m[1] === 'NORMAL' ? NORMAL : m[1] === 'FULL' ? FULL : Number(m[1]);
      return pragma(source, options);
    }) as typeof db.pragma;
    const seen = new Map<string, Set<number>>();
    db.function('observe', (table: unknown) => {
      const set = seen.get(String(table)) ?? new Set<number>();
      set.add(db.inTransaction ? level : -1);
      seen.set(String(table), set);
      return null;
    });
    db.exec(`
      CREATE TEMP TRIGGER o_uplink AFTER INSERT ON uplink_log BEGIN SELECT observe('uplink'); END;
      CREATE TEMP TRIGGER o_runs AFTER INSERT ON uplink_runs BEGIN SELECT observe('runs'); END;
      CREATE TEMP TRIGGER o_cp AFTER UPDATE OF latest ON vehicles BEGIN SELECT observe('checkpoint'); END;
      CREATE TEMP TRIGGER o_cpi AFTER INSERT ON vehicles BEGIN SELECT observe('checkpoint'); END;`);
    for (let seq = 1; seq <= 3; seq++) {
      const writes: UplinkWrite[] = [];
      for (let v = 0; v < 50; v++)
        writes.push({ vehicleId: `V${v}`, seq, record: rec(`V${v}`, seq) });
      expect(await h.store.appendUplink(writes)).toEqual(new Map());
    }
    await h.store.close(); // writes every index run and checkpoint still pending
    expect(seen.get('uplink')).toEqual(new Set([FULL]));
    expect(seen.get('runs')).toEqual(new Set([NORMAL]));
    expect(seen.get('checkpoint')).toEqual(new Set([NORMAL]));
    expect(level).toBe(FULL);
    // Nothing of it is lost to another connection, nor after a reopen.
    const again = await h.reopen();
    expect((await again.listUplink('V49', 0, 10)).map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(indexCount(h.path)).toBe(150);
    const raw = new Database(h.path, { readonly: true });
    try {
      expect(raw.prepare("SELECT last_seq FROM vehicles WHERE id = 'V49'").pluck().get()).toBe(3);
    } finally {
      raw.close();
    }
  });

  it('writes the index of many vehicles in slices; reads between slices and after a crash are exact', async () => {
    await h.store.close(); // the store created the schema; an appender of its own on the file
    const db = new Database(h.path);
    const other = new Database(h.path);
    try {
      const appender = new UplinkAppender(db);
      const n = INDEX_RUNS_PER_WRITE + 100;
      for (const seq of [1, 2]) {
        const rows: FlatRows = [];
        for (let v = 0; v < n; v++) rows.push(`V${v}`, seq, 0, 1, 2, null, `{"speedKmh":${seq}}`);
        expect(appender.append(rows)).toEqual([]);
      }
      const ids = (vehicleId: string, reader: UplinkRowReader): number[] =>
        reader.rows(vehicleId, 0, -1, -1).map((r) => r.seq);
      const here = new VehicleStateReader(db, appender.pending).rows;
      const there = new UplinkRowReader(other, null);
      appender.tick(); // the first slice now, the rest on the next turn of the event loop
      expect(indexEntries(db)).toHaveLength(2 * INDEX_RUNS_PER_WRITE);
      // The mark stops below the first row still waiting: seq 1 took ids 1…n and seq 2 ids n+1…2n,
      // so after the slice V0…V4095 the first row waiting is V4096's seq 1 (id 4097). Rows above
      // the mark that the slice indexed (V0's seq 2, say) must not be read twice.
      const mark = Number(
        db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get(INDEXED_UPTO_KEY),
      );
      expect(mark).toBe(INDEX_RUNS_PER_WRITE);
      for (const v of [0, INDEX_RUNS_PER_WRITE - 1, INDEX_RUNS_PER_WRITE, n - 1]) {
        expect(ids(`V${v}`, here)).toEqual([1, 2]);
        expect(ids(`V${v}`, there)).toEqual([1, 2]);
      }
      // A crash now: a new appender's entries are the rows above the mark that no run holds.
      expect(new PendingIndex(other).entries).toBe(2 * 100);
      await new Promise((r) => setImmediate(r));
      expect(indexEntries(db)).toHaveLength(2 * n);
      expect(ids(`V${n - 1}`, there)).toEqual([1, 2]);
      expect(new PendingIndex(other).entries).toBe(0);
    } finally {
      other.close();
      db.close();
    }
  });

  it('moves checkpoints in slices per tick, one slice per turn of the loop, all of them on flush', async () => {
    await h.store.close(); // the store created the schema; an appender of its own on the file
    const db = new Database(h.path);
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    try {
      const appender = new UplinkAppender(db);
      const n = CHECKPOINTS_PER_TICK + 500;
      const rows: FlatRows = [];
      for (let v = 0; v < n; v++) rows.push(`V${v}`, 1, 0, 1, 2, null, '{"speedKmh":1}');
      expect(appender.append(rows)).toEqual([]);
      const checkpoints = (): unknown =>
        db.prepare('SELECT count(*) FROM vehicles WHERE last_seq = 1').pluck().get();
      appender.tick();
      // The index's first slice at once; the checkpoints from the next turn, one slice a turn.
      expect(indexEntries(db).length).toBe(Math.min(n, INDEX_RUNS_PER_WRITE));
      expect(checkpoints()).toBe(0);
      await turn();
      expect(checkpoints()).toBe(CHECKPOINTS_PER_WRITE);
      for (let i = 0; i < 10; i++) await turn();
      expect(checkpoints()).toBe(CHECKPOINTS_PER_TICK);
      appender.tick();
      for (let i = 0; i < 10; i++) await turn();
      expect(checkpoints()).toBe(n);
      rows.length = 0;
      for (let v = 0; v < n; v++) rows.push(`V${v}`, 2, 0, 1, 2, null, '{"speedKmh":2}');
      appender.append(rows);
      appender.flush();
      expect(db.prepare('SELECT count(*) FROM vehicles WHERE last_seq = 2').pluck().get()).toBe(n);
    } finally {
      db.close();
    }
  });

  it('refuses a database written by a newer schema', async () => {
    await h.store.close();
    const raw = new Database(h.path);
    try {
      raw.pragma('user_version = 99');
    } finally {
      raw.close();
    }
    await expect(h.reopen()).rejects.toThrow(/newer than this gateway/);
  });

  it('rejects calls after close()', async () => {
    await h.store.close();
    await expect(h.store.ping()).rejects.toThrow();
    await expect(
      h.store.appendUplink([{ vehicleId: 'A', seq: 1, record: null }]),
    ).rejects.toThrow();
    await expect(
      h.store.createCommand({
        id: 'c',
        vehicleId: 'A',
        name: 'n',
        params: null,
        createdAt: 1,
        expiresAt: 2,
        traceparent: null,
      }),
    ).rejects.toThrow();
    await expect(h.store.getMeta('k')).rejects.toThrow();
  });
});

// The writer killed with SIGKILL: it prints one line per acknowledged appendUplink call (the writes
// of that call, as JSON) only after the call resolved.
const WRITER = `
import { SqliteStore } from ${JSON.stringify(SQLITE_MODULE)};

const [path, sync, maxCalls, maxMs] = process.argv.slice(2);
const store = new SqliteStore({ path, sync });
await store.open();
await store.markSeen('KILL-A', Date.now());
await store.markSeen('KILL-B', Date.now());

function record(vehicleId, seq) {
  const base = { vehicleId, seq, timestamp: 1_700_000_000_000 + seq, receivedAt: Date.now() };
  if (seq % 5 === 0) {
    return { ...base, kind: 'event', data: { eventCode: seq % 3, detail: 'e' + seq, latitude: 31.2304 } };
  }
  const rec = {
    ...base,
    kind: 'telemetry',
    data: { odometerKm: seq / 10, speedKmh: (seq % 1000) / 10, latitude: 31.2304, longitude: 121.4737 },
  };
  if (seq % 4 === 0) rec.data.vendor = { '0x80': seq.toString(16) };
  if (seq % 2 === 0) rec.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  return rec;
}

const started = Date.now();
let a = 0;
let b = 0;
for (let call = 0; call < Number(maxCalls) && Date.now() - started < Number(maxMs); call++) {
  const writes = [];
  for (let k = 0; k <= call % 3; k++) {
    a++;
    writes.push({ vehicleId: 'KILL-A', seq: a, record: a % 7 === 3 ? null : record('KILL-A', a) });
  }
  b++;
  writes.push({ vehicleId: 'KILL-B', seq: b, record: record('KILL-B', b) });
  const failures = await store.appendUplink(writes);
  if (failures.size > 0) {
    process.stderr.write('unexpected failures ' + JSON.stringify([...failures]) + '\\n');
    process.exit(2);
  }
  // Wait until the line is handed to the pipe: this loop would otherwise never yield to the event
  // loop (appendUplink resolves in a microtask) and a full pipe would hold the acks back.
  await new Promise((done) => process.stdout.write(JSON.stringify(writes) + '\\n', done));
}
process.stdout.write('finished\\n');
`;

interface WriterRun {
  acked: UplinkWrite[][];
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Runs the writer, SIGKILLs it once it has printed `killAfter` acks, collects complete lines. */
function runWriter(
  script: string,
  path: string,
  sync: Sync,
  killAfter: number,
): Promise<WriterRun> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx/esm', script, path, sync, '200000', '20000'],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const acked: UplinkWrite[][] = [];
    let pending = '';
    let stderr = '';
    let finished = false;
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line === 'finished') finished = true;
        else acked.push(JSON.parse(line) as UplinkWrite[]);
      }
      if (acked.length >= killAfter && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    // 'close': stdout fully read. A partial last line (cut by the kill) is not an ack.
    child.on('close', (code, signal) => {
      if (finished) stderr += '\n(writer finished its loop before being killed)';
      resolvePromise({ acked, code, signal, stderr });
    });
  });
}

describe('SqliteStore durability under kill -9', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmcp-kill-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const sync of ['full', 'normal'] as const) {
    it(`keeps every acknowledged uplink write (sync ${sync})`, { timeout: 60_000 }, async () => {
      const script = join(dir, 'writer.mts');
      const path = join(dir, 'vmcp.db');
      await writeFile(script, WRITER);
      const run = await runWriter(script, path, sync, 150);
      expect(run.signal, `writer exit ${run.code}; stderr:\n${run.stderr}`).toBe('SIGKILL');
      expect(run.acked.length).toBeGreaterThanOrEqual(150);

      const store = new SqliteStore({ path, sync });
      await store.open();
      try {
        const lastLine = new Map<string, number>();
        for (const vehicleId of ['KILL-A', 'KILL-B']) {
          const acked = run.acked.flat().filter((x) => x.vehicleId === vehicleId);
          // The acks themselves are 1..n without gaps.
          expect(acked.map((x) => x.seq)).toEqual(acked.map((_, i) => i + 1));
          const maxAcked = acked.length;

          const v = await store.getVehicle(vehicleId);
          expect(v).toBeDefined();
          const lastSeq = v!.lastUplinkSeq;
          expect(lastSeq).toBeGreaterThanOrEqual(maxAcked);
          // At most the one call in flight at the kill is durable without its ack.
          expect(lastSeq - maxAcked).toBeLessThanOrEqual(vehicleId === 'KILL-A' ? 3 : 1);
          lastLine.set(vehicleId, lastSeq - maxAcked);

          const listed = await store.listUplink(vehicleId, 0, 1_000_000);
          const listedSeqs = listed.map((r) => r.seq);
          for (let i = 1; i < listedSeqs.length; i++) {
            expect(listedSeqs[i]).toBeGreaterThan(listedSeqs[i - 1]!);
          }
          expect(listedSeqs.every((s) => s >= 1 && s <= lastSeq)).toBe(true);
          // Every acked record is there exactly as written; acked holes are not listed.
          const bySeq = new Map(listed.map((r) => [r.seq, r]));
          for (const x of acked) {
            if (x.record === null) expect(bySeq.has(x.seq), `hole ${x.seq}`).toBe(false);
            else expect(bySeq.get(x.seq), `seq ${x.seq}`).toStrictEqual(x.record);
          }
          expect(listed.filter((r) => r.seq <= maxAcked)).toHaveLength(
            acked.filter((x) => x.record !== null).length,
          );
          // latest is the merge of the stored telemetry, in seq order.
          const latest: RecordData = {};
          for (const r of listed) if (r.kind === 'telemetry') Object.assign(latest, r.data);
          expect(v!.latest).toEqual(latest);

          // The store continues from its last consumed seq.
          expect(await store.appendUplink([{ vehicleId, seq: lastSeq + 1, record: null }])).toEqual(
            new Map(),
          );
        }
        // The in-flight call was committed whole or not at all.
        expect(lastLine.get('KILL-A')! > 0).toBe(lastLine.get('KILL-B')! > 0);
      } finally {
        await store.close();
      }
    });
  }
});

describe('uplink runs', () => {
  const tracer = new UplinkTracer();
  /** Entries of every form: packed, text and no traceparent; TLVs, JSON text, holes; wide numbers. */
  const sample = (): EntryValues[] => [
    // seq, position, kind, ts, received_at, traceparent, data
    [1, 1, 0, 1_700_000_000_123, 1_700_000_000_200, tracer.ids, Buffer.from([1, 2, 3])],
    [2, 130, 0, 1_700_000_000_900, 1_700_000_000_201, tracer.ids, Buffer.alloc(300, 7)],
    [3, 2 ** 32 + 7, 1, 0, 2 ** 45, tracer.traceparent(3), '{"eventCode":1,"detail":"✓"}'],
    [4, 2 ** 40, -1, 0, 1_700_000_000_500, null, null],
    [5, 2 ** 52 + 1, 0, 2 ** 53 - 1, 5, 'not a traceparent é', Buffer.alloc(0)],
    [6, 2 ** 52 + 2, 0, 17, 1_700_000_000_600, tracer.ids, Buffer.from([9])],
  ];
  const expected = (rows: ReturnType<typeof sample>): UplinkRow[] =>
    rows.map(([seq, , kind, ts, receivedAt, tp, data]) => ({
      seq,
      kind,
      ts: kind < 0 ? 0 : ts,
      received_at: receivedAt,
      traceparent:
        typeof tp === 'string' && packTraceparent(tp, seq, Buffer.alloc(PACKED_TRACEPARENT_BYTES))
          ? Buffer.from(tracer.ids)
          : tp === null
            ? null
            : typeof tp === 'string'
              ? tp
              : Buffer.from(tp),
      data: data === null ? null : typeof data === 'string' ? data : Buffer.from(data),
    }));
  const normal = (rows: UplinkRow[]): unknown[] =>
    rows.map((r) => ({
      ...r,
      traceparent: r.traceparent instanceof Uint8Array ? Buffer.from(r.traceparent) : r.traceparent,
      data: r.data instanceof Uint8Array ? Buffer.from(r.data) : r.data,
    }));

  it('round-trips every form of entry, in memory and as a run body, from any seq on', () => {
    const list = new PendingList(16); // grows as entries come
    for (const e of sample()) list.add(...e);
    const want = expected(sample());
    for (let after = 0; after <= 6; after++) {
      const mem: UplinkRow[] = [];
      list.rows(after, -1, -1, mem);
      expect(normal(mem)).toEqual(normal(want.filter((r) => r.seq > after)));
    }
    const body = Buffer.from(runBody(list, 0, list.count));
    const rows: UplinkRow[] = [];
    decodeEntries(body, 0, body.length, 1, 0, -1, -1, rows, true);
    expect(normal(rows)).toEqual(normal(want));
    // Records only, after a seq, at most a limit.
    const some: UplinkRow[] = [];
    decodeEntries(body, 0, body.length, 1, 2, 0, 2, some, true);
    expect(some.map((r) => r.seq)).toEqual([3, 5]);
  });

  it("writes a session's repeated traceparent once per run: each next entry refers to it", () => {
    const many = new PendingList();
    const one = new PendingList();
    for (let seq = 1; seq <= 32; seq++)
      many.add(seq, seq, 0, 1_000 + seq, 1_000 + seq, tracer.ids, Buffer.from([seq]));
    one.add(1, 1, 0, 1_001, 1_001, tracer.ids, Buffer.from([1]));
    const perEntry = runBody(one, 0, 1).length - PACKED_TRACEPARENT_BYTES;
    expect(runBody(many, 0, 32).length).toBe(32 * perEntry + PACKED_TRACEPARENT_BYTES);
    // A run that starts inside the list carries the traceparent in its own first entry.
    const body = Buffer.from(runBody(many, 5, 9));
    const rows: UplinkRow[] = [];
    decodeEntries(body, 0, body.length, 6, 0, -1, -1, rows, true);
    expect(rows.map((r) => [r.seq, traceparentOf(r.traceparent!, r.seq)])).toEqual(
      [6, 7, 8, 9].map((seq) => [seq, tracer.traceparent(seq)]),
    );
  });

  it('splits runs at a seq gap, at positions that do not ascend, and at RUN_MAX entries', () => {
    const db = new Database(':memory:');
    try {
      db.exec(`CREATE TABLE uplink_runs (last_id INTEGER PRIMARY KEY, vkey INTEGER NOT NULL,
        first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, first_at INTEGER NOT NULL,
        last_at INTEGER NOT NULL, records INTEGER NOT NULL, body BLOB NOT NULL)`);
      const list = new PendingList();
      // seqs 1–3 (positions 10, 20, 30; 2 a hole), a gap, seqs 5–6 (positions 40, 35: not
      // ascending), a gap, then RUN_MAX + 2 consecutive seqs.
      const add = (seq: number, pos: number, hole = false): void =>
        list.add(seq, pos, hole ? -1 : 0, 1, 1_000 + seq, null, hole ? null : '{}');
      add(1, 10);
      add(2, 20, true);
      add(3, 30);
      add(5, 40);
      add(6, 35);
      for (let i = 0; i < RUN_MAX + 2; i++) add(8 + i, 100 + i);
      insertRuns(db.prepare(INSERT_RUN_SQL), 9, list);
      const runs = db
        .prepare(
          'SELECT vkey, first_seq, last_seq, last_id, first_at, last_at, records FROM uplink_runs ORDER BY first_seq',
        )
        .raw()
        .all();
      expect(runs).toEqual([
        [9, 1, 3, 30, 1_001, 1_003, 2],
        [9, 5, 5, 40, 1_005, 1_005, 1],
        [9, 6, 6, 35, 1_006, 1_006, 1],
        [9, 8, 7 + RUN_MAX, 99 + RUN_MAX, 1_008, 1_007 + RUN_MAX, RUN_MAX],
        [9, 8 + RUN_MAX, 9 + RUN_MAX, 101 + RUN_MAX, 1_008 + RUN_MAX, 1_009 + RUN_MAX, 2],
      ]);
      expect(indexEntries(db).map(([, seq]) => seq)).toEqual(
        Array.from({ length: list.count }, (_, i) => list.entries[3 * i]),
      );
    } finally {
      db.close();
    }
  });

  it('trims a run: old records become holes up to a budget, in seq order; the rest is unchanged', () => {
    const list = new PendingList();
    for (const e of sample()) list.add(...e);
    const body = Buffer.from(runBody(list, 0, list.count));
    const want = normal(expected(sample()));
    // Received before 1_700_000_000_300: seqs 1, 2 and 5 (4 is a hole already); budget 2.
    const t = trimRun(body, 1, 1_700_000_000_300, 2);
    expect(t.removed).toBe(2);
    const rows: UplinkRow[] = [];
    decodeEntries(t.body, 0, t.body.length, 1, 0, -1, -1, rows, true);
    const got = normal(rows);
    for (const seq of [1, 2])
      expect(got[seq - 1]).toEqual({
        seq,
        kind: -1,
        ts: 0,
        received_at: (want[seq - 1] as UplinkRow).received_at,
        traceparent: null,
        data: null,
      });
    expect(got.slice(2)).toEqual(want.slice(2));
    expect([t.records, t.firstAt, t.lastAt]).toEqual([3, 5, 2 ** 45]);
    // Everything past the line: every record a hole, none counted.
    const all = trimRun(t.body, 1, Infinity, Infinity);
    expect([all.removed, all.records]).toEqual([3, 0]);
  });
});

describe('packed uplink traceparents', () => {
  const tracer = new UplinkTracer();
  const seqs = [0, 1, 9, 10, 255, 256, 65_535, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];

  it("packs the gateway's own traceparents into 21 bytes and gives back the exact string", () => {
    const out = Buffer.alloc(PACKED_TRACEPARENT_BYTES);
    for (const seq of [...seqs, ...Array.from({ length: 200 }, (_, i) => i * 21_474_836 + 7)]) {
      const tp = tracer.traceparent(seq);
      expect(packTraceparent(tp, seq, out), tp).toBe(true);
      expect(traceparentOf(Buffer.from(out), seq)).toBe(tp);
      // Another session's tracer: other ids, same form.
      const other = new UplinkTracer().traceparent(seq);
      expect(packTraceparent(other, seq, out)).toBe(true);
      expect(traceparentOf(out, seq)).toBe(other);
    }
  });

  it("is what the tracer's ids are: the gateway passes those instead of packing its text", () => {
    const out = Buffer.alloc(PACKED_TRACEPARENT_BYTES);
    for (let i = 0; i < 50; i++) {
      const t = new UplinkTracer();
      expect(t.ids).toHaveLength(PACKED_TRACEPARENT_BYTES);
      for (const seq of seqs) {
        expect(packTraceparent(t.traceparent(seq), seq, out)).toBe(true);
        expect(Buffer.from(t.ids).equals(out)).toBe(true);
        expect(traceparentOf(t.ids, seq)).toBe(t.traceparent(seq));
      }
    }
  });

  it('leaves every other string as text, and whatever it packs round-trips exactly', () => {
    const out = Buffer.alloc(PACKED_TRACEPARENT_BYTES);
    const tp = tracer.traceparent(0x1234_abcd);
    const seq = 0x1234_abcd;
    const unpacked = [
      tracer.traceparent(seq + 1), // another row's seq in the trace id
      tp.toUpperCase(),
      `01${tp.slice(2)}`, // version 01
      `${tp}0`,
      tp.slice(0, 54),
      `${tp.slice(0, 35)}_${tp.slice(36)}`,
      `${tp.slice(0, 10)}é${tp.slice(11)}`,
      `${tp.slice(0, 40)}G${tp.slice(41)}`,
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // a foreign trace id
      '',
    ];
    for (const s of unpacked) expect(packTraceparent(s, seq, out), s).toBe(false);
    for (const bad of [-1, 2 ** 32, 1.5, Number.NaN])
      expect(packTraceparent(tp, bad, out)).toBe(false);
    // Single-character mutations at every position: packed only when the result still has the
    // form, and then unpacked to the same string.
    const alphabet = '0123456789abcdefABCDEF-_ zé';
    let packed = 0;
    for (let i = 0; i < tp.length; i++) {
      for (const c of alphabet) {
        const s = tp.slice(0, i) + c + tp.slice(i + 1);
        if (!packTraceparent(s, seq, out)) continue;
        packed++;
        expect(traceparentOf(out, seq)).toBe(s);
      }
    }
    // The 42 hex digits of the ids and flags take any of 16 digits; the other 13 positions (the
    // version, the dashes, the seq digits) only the character they have.
    expect(packed).toBe(42 * 16 + 13);
  });

  it('keeps the text when the trace bytes given are not the tracer layout (another length)', async () => {
    const h = await sqliteHarness('full');
    try {
      const t = new UplinkTracer();
      const writes: UplinkWrite[] = [20, 22, 0].map((n, i) => ({
        vehicleId: 'Q',
        seq: i + 1,
        record: { ...rec('Q', i + 1), traceparent: t.traceparent(i + 1) },
        traceIds: Buffer.alloc(n, 0xab),
      }));
      expect(await h.store.appendUplink(writes)).toEqual(new Map());
      const want = writes.map((w) => w.record!.traceparent);
      expect((await h.store.listUplink('Q', 0, 10)).map((r) => r.traceparent)).toEqual(want);
      await h.store.close();
      const again = await h.reopen();
      expect((await again.listUplink('Q', 0, 10)).map((r) => r.traceparent)).toEqual(want);
    } finally {
      await h.cleanup();
    }
  });

  for (const worker of [false, true]) {
    it(`stores the gateway's traceparents packed, others as text, and reads both back exactly${worker ? ' (worker thread)' : ''}`, async () => {
      const h = await sqliteHarness('full', worker);
      try {
        const foreign = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
        const writes: UplinkWrite[] = [];
        // 70 rows: an INSERT of 64 and smaller ones, each row with its own packed buffer.
        for (let seq = 1; seq <= 70; seq++) {
          const r = rec('P', seq);
          let traceIds: Uint8Array | undefined;
          if (seq % 10 === 0) r.traceparent = foreign;
          else if (seq % 7 !== 0) {
            const own = new UplinkTracer(); // its own ids
            r.traceparent = own.traceparent(seq);
            // Half of them come with the tracer's bytes, as the gateway passes them.
            if (seq % 2 === 0) traceIds = own.ids;
          }
          writes.push({ vehicleId: 'P', seq, record: r, traceIds });
        }
        expect(await h.store.appendUplink(writes)).toEqual(new Map());
        const want = writes.map((w) => w.record!.traceparent);
        const read = async (s: Store) =>
          (await s.listUplink('P', 0, 100)).map((r) => r.traceparent);
        expect(await read(h.store)).toEqual(want);
        await h.store.close();
        const raw = new Database(h.path, { readonly: true });
        try {
          const kinds = runRows(raw).map(([, r]) => ({
            seq: r.seq,
            t:
              r.traceparent === null ? 'null' : typeof r.traceparent === 'string' ? 'text' : 'blob',
            n: r.traceparent?.length,
          }));
          expect(kinds).toHaveLength(70);
          for (const { seq, t, n } of kinds) {
            if (seq % 10 === 0) expect([seq, t, n]).toEqual([seq, 'text', 55]);
            else if (seq % 7 === 0) expect([seq, t]).toEqual([seq, 'null']);
            else expect([seq, t, n]).toEqual([seq, 'blob', PACKED_TRACEPARENT_BYTES]);
          }
        } finally {
          raw.close();
        }
        expect(await read(await h.reopen())).toEqual(want);
      } finally {
        await h.cleanup();
      }
    });
  }
});
