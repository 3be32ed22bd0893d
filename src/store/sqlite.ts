// The embedded store: SQLite (better-sqlite3, WAL) in the data dir. One process owns the file.
import Database from 'better-sqlite3';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  HOLE,
  INDEX_HOLD_ROWS,
  ROW_STRIDE,
  UplinkAppender,
  VehicleStateReader,
  runUpkeep,
  type FlatFailures,
  type FlatRows,
  type Upkeep,
  type WorkerCall,
  type WorkerInit,
} from './sqlite-append.js';
import {
  INSERT_RUN_SQL,
  PendingList,
  insertRuns,
  trimRun,
  type EntryValues,
} from './sqlite-runs.js';
import {
  INDEXED_UPTO_KEY,
  PACKED_TRACEPARENT_BYTES,
  rowData,
  traceparentOf,
  type UplinkRow,
} from './sqlite-index.js';
import type { RecordData, UplinkRecord } from '../protocol/record.js';
import type {
  AppendFailure,
  CommandRow,
  CommandStatus,
  DeviceRow,
  NewCommand,
  Store,
  StoreCapabilities,
  UplinkWrite,
  VehiclePage,
  VehicleRow,
} from './types.js';

export interface SqliteStoreOptions {
  /** Database file path, or ':memory:'. */
  path: string;
  /** 'full' fsyncs the WAL on every commit (survives power loss); 'normal' survives process crashes only. */
  sync?: 'full' | 'normal';
  /** Run uplink appends in a worker thread (a second connection), off the event loop. */
  worker?: boolean;
  /**
   * In-process: how far (in records) a short run may wait above the mark (PendingIndexOptions;
   * default INDEX_HOLD_ROWS). Tests set it low to see runs written after a few records.
   */
  holdRows?: number;
  /**
   * false: the index and checkpoints are written only when maintain() asks (and on close), not on
   * the periodic timer. Tests drive them that way; with nothing running between two calls, a copy
   * of the files is then what a process killed at that moment leaves, in either mode. Default true.
   */
  background?: boolean;
}

export type { Upkeep };

/**
 * PRAGMA user_version of the current schema. 0: the first one (uplink keyed by the vehicle id
 * text); 2: integer vehicle keys with a (vkey, seq) index on uplink; 3: that index deferred
 * (uplink_seq, written in bulk); 4: the deferred index in runs, one row per vehicle per index write
 * (uplink_runs: sqlite-index.ts); 5: the runs hold their records (sqlite-runs.ts), which wait in a
 * log row per commit (uplink_log: sqlite-log.ts) until then; no `uplink` table; 6: an index on the
 * runs' oldest record time, which retention goes by.
 */
const SCHEMA_VERSION = 6;

/**
 * Pages of runs one retention step goes through at most: each page deletes or trims every run it
 * lists, so a page that spends none of the budget deleted runs of holes only; the bound keeps the
 * step's transaction short whatever the file holds.
 */
const PRUNE_PAGES = 4;

/** A run retention may act on (oldestRuns): last_id, vkey, last_seq, first_at, last_at, records. */
type PruneCandidate = [number, number, number, number, number, number];

/** Rows of one vehicle a migration turns into runs at a time (a multiple of RUN_MAX). */
const MIGRATE_ROWS = 65_536;

/** The uplink table of schemas 2–4 (one row per record), which a migration turns into runs. */
const UPLINK_V2_TABLE = `
CREATE TABLE IF NOT EXISTS uplink (
  id INTEGER PRIMARY KEY,
  vkey INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  traceparent TEXT,
  data BLOB
);`;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS vehicles (
  id TEXT PRIMARY KEY,
  last_seq INTEGER NOT NULL DEFAULT 0,
  latest TEXT NOT NULL DEFAULT '{}',
  -- The checkpoint: last_seq and latest include every uplink row up to latest_seq; rows after it
  -- are folded in on read (the appender moves the checkpoint every few seconds, not per commit).
  latest_seq INTEGER NOT NULL DEFAULT 0,
  next_cmd_seq INTEGER NOT NULL DEFAULT 1,
  first_seen INTEGER,
  last_seen INTEGER
) WITHOUT ROWID;
-- A small integer per vehicle id: the uplink index holds (key, seq), not the id text. Each commit
-- touches one index page per vehicle in it, so the entry size is most of what a row costs to write.
CREATE TABLE IF NOT EXISTS vehicle_keys (
  key INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE
);
-- The uplink log (sqlite-log.ts): one row per group commit, its records (positions id…last, the
-- oldest received at first_at) until they are all in runs. What an ack stands on.
CREATE TABLE IF NOT EXISTS uplink_log (
  id INTEGER PRIMARY KEY,
  last INTEGER NOT NULL,
  first_at INTEGER NOT NULL,
  body BLOB NOT NULL
);
-- The uplink records, one vehicle's consecutive seqs first_seq…last_seq per row, written every few
-- seconds from the log (sqlite-index.ts), whose rows are then deleted below the mark
-- meta.uplink_indexed_upto; body holds the records (sqlite-runs.ts). Keyed by the position of its
-- last record. first_at: the oldest received_at of a record (of any entry when it has none),
-- last_at: the newest of any entry; records: holes not counted. Retention goes through the runs in
-- first_at order: a run that spans a long time (a vehicle that reports rarely) has its last
-- position late but its first records early.
CREATE TABLE IF NOT EXISTS uplink_runs (
  last_id INTEGER PRIMARY KEY,
  vkey INTEGER NOT NULL,
  first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  first_at INTEGER NOT NULL,
  last_at INTEGER NOT NULL,
  records INTEGER NOT NULL,
  body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS uplink_runs_vkey ON uplink_runs (vkey, last_seq);
CREATE INDEX IF NOT EXISTS uplink_runs_first_at ON uplink_runs (first_at);
CREATE TABLE IF NOT EXISTS commands (
  id TEXT PRIMARY KEY,
  vehicle_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  name TEXT NOT NULL,
  params TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  status TEXT NOT NULL,
  result TEXT,
  updated_at INTEGER NOT NULL,
  traceparent TEXT
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS commands_vehicle_seq ON commands (vehicle_id, seq);
CREATE INDEX IF NOT EXISTS commands_open ON commands (expires_at) WHERE status IN ('pending', 'delivered');
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL,
  scopes TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
`;

/**
 * Brings a database of an earlier version to SCHEMA_VERSION in one transaction (a crash in between
 * leaves the old version, tried again on the next open). Version 0 → 2: uplink rows get the
 * vehicle's integer key instead of its id text; versions 2–4 → 5: every uplink row goes into its
 * vehicle's runs (one vehicle at a time, the row ids as positions) and the table is dropped.
 */
function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version === SCHEMA_VERSION) return;
  if (version > SCHEMA_VERSION)
    throw new Error(
      `database schema version ${version} is newer than this gateway's (${SCHEMA_VERSION}): upgrade the gateway`,
    );
  db.transaction(() => {
    const columns = db.prepare("SELECT name FROM pragma_table_info('uplink')").pluck().all();
    if (columns.includes('vehicle_id')) {
      db.exec(`
        CREATE TABLE IF NOT EXISTS vehicle_keys (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
        INSERT OR IGNORE INTO vehicle_keys (id) SELECT DISTINCT vehicle_id FROM uplink ORDER BY vehicle_id;
        ALTER TABLE uplink RENAME TO uplink_v0;
        ${UPLINK_V2_TABLE}
        INSERT INTO uplink (id, vkey, seq, kind, ts, received_at, traceparent, data)
          SELECT u.id, k.key, u.seq, u.kind, u.ts, u.received_at, u.traceparent, u.data
          FROM uplink_v0 u JOIN vehicle_keys k ON k.id = u.vehicle_id ORDER BY u.id;
        DROP TABLE uplink_v0;
      `);
    }
    // The old indexes of uplink (version 2's on the table, 3's entries, 4's runs of row ids): the
    // rows themselves are what the new runs are made of.
    db.exec('DROP INDEX IF EXISTS uplink_key_seq; DROP TABLE IF EXISTS uplink_seq;');
    const hadRows = columns.length > 0;
    if (hadRows) db.exec('DROP TABLE IF EXISTS uplink_runs');
    db.exec(SCHEMA);
    if (hadRows) {
      db.exec('CREATE INDEX uplink_migrate ON uplink (vkey, seq)');
      const insert = db.prepare(INSERT_RUN_SQL);
      const rows = db
        .prepare(
          `SELECT seq, id, kind, ts, received_at, traceparent, data FROM uplink
           WHERE vkey = ? AND seq > ? ORDER BY seq LIMIT ${MIGRATE_ROWS}`,
        )
        .raw();
      const keys = db.prepare('SELECT DISTINCT vkey FROM uplink ORDER BY vkey').pluck().all();
      for (const vkey of keys as number[]) {
        // A slice of the vehicle's rows at a time: memory stays bounded however many it has.
        for (let after = 0; ;) {
          const list = new PendingList();
          const slice = rows.all(vkey, after) as EntryValues[];
          for (const [seq, id, kind, ts, at, tp, data] of slice) {
            list.add(seq, id, kind, ts, at, tp, data);
            after = seq;
          }
          if (list.count > 0) insertRuns(insert, vkey, list);
          if (slice.length < MIGRATE_ROWS) break;
        }
      }
      const top = db.prepare('SELECT coalesce(max(id), 0) FROM uplink').pluck().get() as number;
      db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(
        INDEXED_UPTO_KEY,
        String(top),
      );
      db.exec('DROP TABLE uplink');
    }
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

interface VehicleDbRow {
  id: string;
  last_seq: number;
  latest: string;
  latest_seq: number;
  first_seen: number | null;
  last_seen: number | null;
}

interface CommandDbRow {
  id: string;
  vehicle_id: string;
  seq: number;
  name: string;
  params: string | null;
  created_at: number;
  expires_at: number;
  status: string;
  result: string | null;
  updated_at: number;
  traceparent: string | null;
}

interface DeviceDbRow {
  id: string;
  secret_hash: string;
  scopes: string;
  created_at: number;
  revoked_at: number | null;
}

const KIND_CODE = { telemetry: 0, event: 1 } as const;
const KIND_NAME = ['telemetry', 'event'] as const;

function toVehicle(r: VehicleDbRow, reader: VehicleStateReader): VehicleRow {
  const st = reader.fold(r.id, r.last_seq, r.latest, r.latest_seq);
  return {
    id: r.id,
    lastUplinkSeq: st.lastSeq,
    latest: st.latest as RecordData,
    firstSeenAt: r.first_seen,
    lastSeenAt: r.last_seen,
  };
}

function toRecord(vehicleId: string, r: UplinkRow): UplinkRecord {
  const rec: UplinkRecord = {
    vehicleId,
    seq: r.seq,
    kind: KIND_NAME[r.kind] ?? 'telemetry',
    timestamp: r.ts,
    receivedAt: r.received_at,
    data: rowData(r.kind, r.data!),
  };
  if (r.traceparent !== null) rec.traceparent = traceparentOf(r.traceparent, r.seq);
  return rec;
}

function toCommand(r: CommandDbRow): CommandRow {
  return {
    id: r.id,
    vehicleId: r.vehicle_id,
    seq: r.seq,
    name: r.name,
    params: r.params,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    status: r.status as CommandStatus,
    result: r.result === null ? null : (JSON.parse(r.result) as unknown),
    updatedAt: r.updated_at,
    traceparent: r.traceparent,
  };
}

function toDevice(r: DeviceDbRow): DeviceRow {
  return {
    id: r.id,
    secretHash: r.secret_hash,
    scopes: JSON.parse(r.scopes) as string[],
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
  };
}

const OPEN = `status IN ('pending', 'delivered')`;

export class SqliteStore implements Store {
  readonly capabilities: StoreCapabilities = { engine: 'sqlite', partialAppend: false };
  private db: Database.Database | undefined;
  private stmts: ReturnType<SqliteStore['prepare']> | undefined;
  /** Folds the rows after each vehicle's checkpoint (reads on this connection). */
  private reader: VehicleStateReader | undefined;
  /** In-process appends (no worker). */
  private appender: UplinkAppender | undefined;
  /** The worker thread running appends on its own connection, with its pending calls. */
  private worker: Worker | undefined;
  private readonly calls = new Map<
    number,
    { resolve(f: FlatFailures): void; reject(e: Error): void }
  >();
  private nextCall = 0;

  private createCommandTx: Database.Transaction<(cmd: NewCommand) => CommandRow> | undefined;
  private seenQueue: {
    vehicleId: string;
    at: number;
    resolve(row: VehicleRow): void;
    reject(err: Error): void;
  }[] = [];

  constructor(private readonly options: SqliteStoreOptions) {}

  async open(): Promise<void> {
    if (this.options.path !== ':memory:')
      mkdirSync(dirname(this.options.path), { recursive: true });
    const db = new Database(this.options.path);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${this.options.sync === 'normal' ? 'NORMAL' : 'FULL'}`);
    db.pragma('busy_timeout = 5000');
    migrate(db);
    this.db = db;
    const s = (this.stmts = this.prepare(db));

    if (this.options.worker === true && this.options.path !== ':memory:') {
      // The worker's appender holds the unindexed entries: reads here scan the uplink tail.
      this.reader = new VehicleStateReader(db, null);
      await this.startWorker();
    } else {
      // Reads share this connection and find unindexed rows in memory: short runs may wait.
      const appender = (this.appender = new UplinkAppender(db, {
        holdRows: this.options.holdRows ?? INDEX_HOLD_ROWS,
      }));
      this.reader = new VehicleStateReader(db, appender.pending);
      // The index and checkpoints every few seconds; reads use the rows and memory meanwhile.
      if (this.options.background !== false) appender.start();
    }

    this.createCommandTx = db.transaction((cmd: NewCommand) => {
      s.ensureVehicle.run(cmd.vehicleId);
      const { seq } = s.takeCommandSeq.get(cmd.vehicleId) as { seq: number };
      s.insertCommand.run(
        cmd.id,
        cmd.vehicleId,
        seq,
        cmd.name,
        cmd.params,
        cmd.createdAt,
        cmd.expiresAt,
        cmd.createdAt,
        cmd.traceparent,
      );
      return toCommand(s.getCommand.get(cmd.id) as CommandDbRow);
    });
  }

  private prepare(db: Database.Database) {
    return {
      // markSeen and createCommand may have created the row already (with seq 0 and '{}').
      // The oldest records not in a run yet (the log above the mark).
      oldestTail: db
        .prepare('SELECT first_at FROM uplink_log WHERE last > ? ORDER BY id LIMIT 1')
        .pluck(),
      indexedUpto: db.prepare('SELECT value FROM meta WHERE key = ?').pluck(),
      // Retention goes through the runs with a record (or, holes only, an entry) that old, oldest first.
      oldestRuns: db
        .prepare(
          'SELECT last_id, vkey, last_seq, first_at, last_at, records FROM uplink_runs WHERE first_at < ? ORDER BY first_at LIMIT ?',
        )
        .raw(),
      runBody: db.prepare('SELECT first_seq, body FROM uplink_runs WHERE last_id = ?').raw(),
      deleteRun: db.prepare('DELETE FROM uplink_runs WHERE last_id = ?'),
      updateRun: db.prepare(
        'UPDATE uplink_runs SET body = ?, first_at = ?, last_at = ?, records = ? WHERE last_id = ?',
      ),
      checkpointOf: db
        .prepare(
          `SELECT k.id, coalesce(v.latest_seq, 0) FROM vehicle_keys k LEFT JOIN vehicles v ON v.id = k.id
         WHERE k.key = ?`,
        )
        .raw(),
      checkpoint: db.prepare(
        `INSERT INTO vehicles (id, last_seq, latest, latest_seq) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq, latest = excluded.latest, latest_seq = excluded.latest_seq
         WHERE excluded.latest_seq > vehicles.latest_seq`,
      ),
      markSeen: db.prepare(
        `INSERT INTO vehicles (id, first_seen, last_seen) VALUES (?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET first_seen = coalesce(first_seen, excluded.first_seen), last_seen = excluded.last_seen`,
      ),
      getVehicle: db.prepare(
        'SELECT id, last_seq, latest, latest_seq, first_seen, last_seen FROM vehicles WHERE id = ? AND first_seen IS NOT NULL',
      ),
      listVehicles: db.prepare(
        'SELECT id, last_seq, latest, latest_seq, first_seen, last_seen FROM vehicles WHERE first_seen IS NOT NULL AND id > ? ORDER BY id LIMIT ?',
      ),
      ensureVehicle: db.prepare('INSERT OR IGNORE INTO vehicles (id) VALUES (?)'),
      takeCommandSeq: db.prepare(
        'UPDATE vehicles SET next_cmd_seq = next_cmd_seq + 1 WHERE id = ? RETURNING next_cmd_seq - 1 AS seq',
      ),
      insertCommand: db.prepare(
        `INSERT INTO commands (id, vehicle_id, seq, name, params, created_at, expires_at, status, result, updated_at, traceparent)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', NULL, ?, ?)`,
      ),
      getCommand: db.prepare('SELECT * FROM commands WHERE id = ?'),
      openCommands: db.prepare(
        `SELECT * FROM commands WHERE vehicle_id = ? AND ${OPEN} AND expires_at > ? ORDER BY seq`,
      ),
      expireCommands: db.prepare(
        `UPDATE commands SET status = 'expired', updated_at = ?
         WHERE id IN (SELECT id FROM commands WHERE ${OPEN} AND expires_at <= ? ORDER BY expires_at LIMIT ?) RETURNING *`,
      ),
      addDevice: db.prepare(
        `INSERT INTO devices (id, secret_hash, scopes, created_at, revoked_at) VALUES (?, ?, ?, ?, NULL)
         ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash, scopes = excluded.scopes,
           created_at = excluded.created_at, revoked_at = NULL
         WHERE devices.revoked_at IS NOT NULL`,
      ),
      getDevice: db.prepare('SELECT * FROM devices WHERE id = ?'),
      revokeDevice: db.prepare(
        'UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL',
      ),
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
      ping: db.prepare('SELECT 1'),
    };
  }

  private get s(): NonNullable<SqliteStore['stmts']> {
    if (this.stmts === undefined) throw new Error('store is not open');
    return this.stmts;
  }

  async close(): Promise<void> {
    const db = this.db;
    const worker = this.worker;
    try {
      this.appender?.stop();
    } catch {
      // Closing anyway: the rows after the checkpoints rebuild it on the next open.
    }
    this.db = undefined;
    this.stmts = undefined;
    this.appender = undefined;
    this.reader = undefined;
    this.worker = undefined;
    if (worker !== undefined) {
      const exited = new Promise((r) => worker.once('exit', r));
      worker.postMessage({ close: true });
      await exited;
    }
    db?.close();
  }

  async ping(): Promise<void> {
    this.s.ping.get();
  }

  async appendUplink(writes: readonly UplinkWrite[]): Promise<Map<string, AppendFailure>> {
    const rows: FlatRows = new Array<FlatRows[number]>(writes.length * ROW_STRIDE);
    const now = Date.now();
    let o = 0;
    for (const w of writes) {
      const rec = w.record;
      rows[o++] = w.vehicleId;
      rows[o++] = w.seq;
      rows[o++] = rec === null ? HOLE : KIND_CODE[rec.kind];
      rows[o++] = rec === null ? 0 : rec.timestamp;
      rows[o++] = rec === null ? now : rec.receivedAt;
      // The tracer's bytes where the gateway made the traceparent: nothing to parse on insert.
      rows[o++] =
        rec === null
          ? null
          : w.traceIds !== undefined && w.traceIds.length === PACKED_TRACEPARENT_BYTES
            ? w.traceIds
            : (rec.traceparent ?? null);
      // The TLVs as received when the gateway passed them (no JSON per message), else the JSON.
      rows[o++] = rec === null ? null : (w.raw ?? JSON.stringify(rec.data));
    }
    let flat: FlatFailures;
    if (this.worker !== undefined) flat = await this.callWorker({ rows });
    else if (this.appender !== undefined) {
      flat = this.appender.append(
        rows,
        writes.map((w) => w.record?.data),
      );
    } else throw new Error('store is not open');
    const failures = new Map<string, AppendFailure>();
    for (let i = 0; i < flat.length; i += 2) {
      failures.set(flat[i] as string, { kind: 'conflict', lastSeq: flat[i + 1] as number });
    }
    return failures;
  }

  /** A call to the worker (an append, or upkeep); resolves with the append's failures (none for upkeep). */
  private callWorker(call: WorkerCall): Promise<FlatFailures> {
    const id = ++this.nextCall;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.worker!.postMessage({ id, ...call });
    });
  }

  /**
   * Runs the store's upkeep now, wherever the appends run, and resolves when it is done: `index`
   * writes the runs of up to `max` vehicles (every vehicle waiting when `max` is Infinity, else
   * those due), `checkpoints` up to `max` vehicles' checkpoints, `tick` the timer's round (its
   * slices over successive turns). With background: false this is the only way they are written
   * before close.
   */
  async maintain(work: Upkeep, max = Infinity): Promise<void> {
    if (this.worker !== undefined) {
      await this.callWorker({ upkeep: work, max });
      return;
    }
    const appender = this.appender;
    if (appender === undefined) throw new Error('store is not open');
    await runUpkeep(appender, work, max);
  }

  /**
   * Uplink appends in a worker thread: the commit (and its fsync) runs on the second core instead of
   * blocking the event loop. WAL lets the main connection read and write the other tables meanwhile.
   */
  private async startWorker(): Promise<void> {
    const here = new URL(import.meta.url);
    // Built: dist/store/sqlite-worker.js beside this file. From source (tests under tsx), the built copy.
    const url = here.pathname.endsWith('.ts')
      ? new URL('../../dist/store/sqlite-worker.js', here)
      : new URL('./sqlite-worker.js', here);
    if (!existsSync(url))
      throw new Error(`SQLite worker script missing: ${url.pathname} (run npm run build)`);
    const worker = new Worker(url, {
      workerData: {
        path: this.options.path,
        sync: this.options.sync ?? 'full',
        background: this.options.background !== false,
      } satisfies WorkerInit,
    });
    worker.on('message', (msg: { id: number; failures?: FlatFailures; error?: string }) => {
      const call = this.calls.get(msg.id);
      if (call === undefined) return;
      this.calls.delete(msg.id);
      if (msg.error !== undefined) call.reject(new Error(msg.error));
      else call.resolve(msg.failures ?? []);
    });
    const fail = (err: Error): void => {
      for (const c of this.calls.values()) c.reject(err);
      this.calls.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = undefined;
      fail(new Error(`SQLite worker exited (${code})`));
    });
    this.worker = worker;
  }

  async listUplink(vehicleId: string, afterSeq: number, limit: number): Promise<UplinkRecord[]> {
    if (this.reader === undefined) throw new Error('store is not open');
    return this.reader.rows
      .rows(vehicleId, afterSeq, 0, Math.max(0, limit))
      .map((r) => toRecord(vehicleId, r));
  }

  /**
   * Deletes up to `limit` uplink records received before `before`, going through the runs in the
   * order of their oldest record (pruneRuns): a run whose every entry is that old goes whole; in
   * another, those records become holes (trimRun), so their seqs stay consumed. Fewer than `limit`
   * means no record that old is left (but in the rare case of more than PRUNE_PAGES pages of runs of
   * holes only in one step).
   */
  async pruneUplink(before: number, limit: number): Promise<number> {
    const s = this.s;
    // Records that old still waiting for their run (a vehicle that sent little since, in-process):
    // every vehicle's runs are written first, so that they go by the same rule.
    const mark = Number((s.indexedUpto.get(INDEXED_UPTO_KEY) as string | undefined) ?? 0);
    const oldest = s.oldestTail.get(mark) as number | undefined;
    if (oldest !== undefined && oldest < before) {
      await this.maintain('index');
    }
    return this.db!.transaction(() => {
      let n = 0;
      for (let page = 0; page < PRUNE_PAGES && n < limit; page++) {
        const runs = s.oldestRuns.all(before, limit - n) as PruneCandidate[];
        if (runs.length === 0) break;
        n += this.pruneRuns(runs, before, limit - n);
      }
      return n;
    }).immediate();
  }

  /**
   * Retention over runs that each hold something received before `before` (oldestRuns), in order
   * until `limit` records went: a run whose every entry is that old goes whole if its records fit
   * in what is left of the budget; in another, its old records become holes, as many as fit, and a
   * run left without a record goes whole. So every run given is deleted or trimmed of all its old
   * records while the budget lasts. Returns the records deleted.
   */
  private pruneRuns(runs: readonly PruneCandidate[], before: number, limit: number): number {
    const s = this.s;
    // Vehicles whose checkpoint this step wrote: it holds their whole state.
    const checkpointed = new Set<number>();
    let n = 0;
    for (const [lastId, vkey, lastSeq, , lastAt, records] of runs) {
      if (n >= limit) break;
      // Records about to go must not be the only record of a vehicle's state: a vehicle whose
      // checkpoint is behind them gets one now (read from the checkpoint and the records after it,
      // all of them still there: those this step deleted before are behind its checkpoint).
      if (!checkpointed.has(vkey)) {
        const [id, upto] = s.checkpointOf.get(vkey) as [string, number];
        if (upto < lastSeq) {
          const st = this.reader!.read(id);
          s.checkpoint.run(id, st.lastSeq, JSON.stringify(st.latest), st.lastSeq);
          checkpointed.add(vkey);
        }
      }
      if (lastAt < before && records <= limit - n) {
        s.deleteRun.run(lastId);
        n += records;
        continue;
      }
      const [firstSeq, body] = s.runBody.get(lastId) as [number, Uint8Array];
      const t = trimRun(body, firstSeq, before, limit - n);
      if (t.removed === 0) continue;
      // Holes only now: the checkpoint holds what they told (the seqs consumed).
      if (t.records === 0) s.deleteRun.run(lastId);
      else s.updateRun.run(t.body, t.firstAt, t.lastAt, t.records, lastId);
      n += t.removed;
    }
    return n;
  }

  /**
   * Group commit for CONNECTs: every markSeen of one event-loop turn shares one transaction. Its
   * commit is not flushed to disk by itself, even with store-sync full: first and last seen times
   * carry no guarantee (nothing acked depends on them), and the WAL is append-only, so the next
   * flushed commit (the next uplink batch) makes them durable with it. A power loss can forget the
   * last seconds of last-seen times; a process crash forgets nothing (the OS holds the writes).
   * During a reconnect storm that is one fsync less per event-loop turn of CONNECTs.
   */
  markSeen(vehicleId: string, at: number): Promise<VehicleRow> {
    return new Promise((resolve, reject) => {
      this.seenQueue.push({ vehicleId, at, resolve, reject });
      if (this.seenQueue.length === 1) setImmediate(() => this.flushSeen());
    });
  }

  private flushSeen(): void {
    const queue = this.seenQueue;
    this.seenQueue = [];
    const db = this.db;
    const full = this.options.sync !== 'normal' && db !== undefined;
    try {
      if (db === undefined) throw new Error('store is not open');
      const s = this.s;
      if (full) db.pragma('synchronous = NORMAL');
      const rows = db
        .transaction(() => {
          for (const q of queue) s.markSeen.run(q.vehicleId, q.at, q.at);
          return queue.map((q) =>
            toVehicle(s.getVehicle.get(q.vehicleId) as VehicleDbRow, this.reader!),
          );
        })
        .immediate();
      queue.forEach((q, i) => q.resolve(rows[i]!));
    } catch (err) {
      for (const q of queue) q.reject(err instanceof Error ? err : new Error(String(err)));
    } finally {
      // Every other commit of this connection (uplink, commands) is flushed again.
      if (full && db.open) db.pragma('synchronous = FULL');
    }
  }

  async getVehicle(vehicleId: string): Promise<VehicleRow | undefined> {
    const r = this.s.getVehicle.get(vehicleId) as VehicleDbRow | undefined;
    return r === undefined ? undefined : toVehicle(r, this.reader!);
  }

  async listVehicles(limit: number, cursor: string | null): Promise<VehiclePage> {
    const after = cursor === null ? '' : Buffer.from(cursor, 'base64url').toString('utf8');
    limit = Math.max(1, limit);
    const rows = (this.s.listVehicles.all(after, limit + 1) as VehicleDbRow[]).map((r) =>
      toVehicle(r, this.reader!),
    );
    const more = rows.length > limit;
    if (more) rows.pop();
    return {
      items: rows,
      next: more ? Buffer.from(rows[rows.length - 1]!.id).toString('base64url') : null,
    };
  }

  async createCommand(cmd: NewCommand): Promise<CommandRow> {
    if (this.createCommandTx === undefined) throw new Error('store is not open');
    return this.createCommandTx.immediate(cmd);
  }

  async getCommand(id: string): Promise<CommandRow | undefined> {
    const r = this.s.getCommand.get(id) as CommandDbRow | undefined;
    return r === undefined ? undefined : toCommand(r);
  }

  async openCommands(vehicleId: string, now: number): Promise<CommandRow[]> {
    return (this.s.openCommands.all(vehicleId, now) as CommandDbRow[]).map(toCommand);
  }

  async transitionCommand(
    id: string,
    from: readonly CommandStatus[],
    to: CommandStatus,
    now: number,
    result?: unknown,
  ): Promise<CommandRow | undefined> {
    const db = this.db;
    if (db === undefined) throw new Error('store is not open');
    const placeholders = from.map(() => '?').join(', ');
    const setResult = result === undefined ? '' : ', result = ?';
    const params: unknown[] = [to, now];
    if (result !== undefined) params.push(JSON.stringify(result));
    params.push(id, ...from);
    const r = db
      .prepare(
        `UPDATE commands SET status = ?, updated_at = ?${setResult} WHERE id = ? AND status IN (${placeholders}) RETURNING *`,
      )
      .get(...params) as CommandDbRow | undefined;
    return r === undefined ? undefined : toCommand(r);
  }

  async expireCommands(now: number, limit: number): Promise<CommandRow[]> {
    return (this.s.expireCommands.all(now, now, limit) as CommandDbRow[]).map(toCommand);
  }

  async addDevice(device: DeviceRow): Promise<boolean> {
    const r = this.s.addDevice.run(
      device.id,
      device.secretHash,
      JSON.stringify(device.scopes),
      device.createdAt,
    );
    return r.changes > 0;
  }

  async getDevice(id: string): Promise<DeviceRow | undefined> {
    const r = this.s.getDevice.get(id) as DeviceDbRow | undefined;
    return r === undefined ? undefined : toDevice(r);
  }

  async revokeDevice(id: string, at: number): Promise<boolean> {
    return this.s.revokeDevice.run(at, id).changes > 0;
  }

  async getMeta(key: string): Promise<string | undefined> {
    const r = this.s.getMeta.get(key) as { value: string } | undefined;
    return r?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.s.setMeta.run(key, value);
  }
}
