// History reads from a cold page cache: what one vehicle's records cost to read back after the
// store's pages left memory, and what the store's write path costs per record to lay them out.
// Prints JSON lines. `npx tsx bench/history.ts [--vehicles 3000] [--records 200] [--sample 20]
// [--per-commit 100] [--sync normal] [--dir DIR]`. Cold reads need root (it drops the page cache
// through /proc/sys/vm/drop_caches); without it the reads are reported with `cold: false`.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { encodeTelemetry } from '../src/protocol/index.js';
import { SqliteStore } from '../src/store/sqlite.js';
import type { UplinkWrite } from '../src/store/types.js';

const { values } = parseArgs({
  options: {
    vehicles: { type: 'string', default: '3000' },
    records: { type: 'string', default: '200' },
    sample: { type: 'string', default: '20' },
    'per-commit': { type: 'string', default: '100' },
    sync: { type: 'string', default: 'normal' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
  strict: true,
});
const VEHICLES = Math.min(Number(values.vehicles), 100_000);
const RECORDS = Math.min(Number(values.records), 10_000);
const SAMPLE = Math.min(Number(values.sample), VEHICLES);
const PER_COMMIT = Math.max(1, Number(values['per-commit']));
const SYNC = values.sync === 'full' ? 'full' : 'normal';
if (![VEHICLES, RECORDS, SAMPLE].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('history: --vehicles, --records and --sample take positive integers\n');
  process.exit(2);
}

function emit(o: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

/** Bytes this process read from storage (not the page cache): /proc/self/io read_bytes. */
function readBytes(): number {
  const m = /read_bytes: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'));
  return m === null ? NaN : Number(m[1]);
}

/** Drops the page cache (root only); false when it cannot. */
function dropCaches(): boolean {
  try {
    execFileSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '1');
    return true;
  } catch {
    return false;
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function main(): Promise<void> {
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'vmcp-bench-history-'));
  const path = join(dir, 'vmcp.db');
  try {
    if (existsSync(path)) throw new Error(`${path} exists: give an empty --dir`);
    const store = new SqliteStore({ path, sync: SYNC });
    await store.open();
    const traceIds = randomBytes(21);
    traceIds[20] = 1;
    const t0 = Date.now() - RECORDS * 1000;
    // Arrival order as in ingest: every vehicle's seq n before any vehicle's seq n + 1, commits of
    // PER_COMMIT rows (vehicles in id order within a commit, as the gateway groups them).
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    for (let seq = 1; seq <= RECORDS; seq++) {
      for (let v0 = 0; v0 < VEHICLES; v0 += PER_COMMIT) {
        const writes: UplinkWrite[] = [];
        for (let v = v0; v < Math.min(VEHICLES, v0 + PER_COMMIT); v++) {
          const vehicleId = `HIST${String(v).padStart(6, '0')}`;
          const at = t0 + seq * 1000 + v;
          const sample = {
            timestamp: at,
            latitude: 31.2 + v / 1e4 + seq / 1e6,
            longitude: 121.4 + v / 1e4,
            speed: 400 + (seq % 300),
            heading: (seq * 7) % 3600,
            fuelOrSoc: 80,
          };
          const raw = encodeTelemetry({ seq, ...sample }).subarray(4);
          writes.push({
            vehicleId,
            seq,
            record: {
              vehicleId,
              seq,
              kind: 'telemetry',
              timestamp: at,
              receivedAt: at,
              data: { latitude: sample.latitude, longitude: sample.longitude, speedKmh: 40 },
            },
            raw,
            traceIds,
          });
        }
        const failures = await store.appendUplink(writes);
        if (failures.size > 0) throw new Error(`append refused ${failures.size} vehicles`);
        // Let the store's timers (index and checkpoint writes) run, as they do under ingest.
        await tick();
      }
    }
    const cpu = process.cpuUsage(cpu0);
    const fillWall = (performance.now() - wall0) / 1000;
    await store.close();
    const total = VEHICLES * RECORDS;
    const bytes =
      statSync(path).size + (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0);
    emit({
      bench: 'history.fill',
      records: total,
      vehicles: VEHICLES,
      perCommit: PER_COMMIT,
      sync: SYNC,
      seconds: +fillWall.toFixed(2),
      cpuUsPerRecord: +((cpu.user + cpu.system) / total).toFixed(2),
      userUsPerRecord: +(cpu.user / total).toFixed(2),
      fileBytes: bytes,
      bytesPerRecord: +(bytes / total).toFixed(1),
      cpus: cpus().length,
      node: process.version,
    });

    // Reads: SAMPLE vehicles spread over the fleet, every record of each, pages of 1,000.
    const sampleIds = Array.from(
      { length: SAMPLE },
      (_, i) => `HIST${String(Math.floor((i * VEHICLES) / SAMPLE)).padStart(6, '0')}`,
    );
    for (const pass of ['cold', 'warm'] as const) {
      const cold = pass === 'cold' ? dropCaches() : false;
      const reader = new SqliteStore({ path, sync: SYNC });
      const io0 = readBytes();
      const r0 = performance.now();
      await reader.open();
      let n = 0;
      for (const id of sampleIds) {
        let after = 0;
        for (;;) {
          const page = await reader.listUplink(id, after, 1000);
          for (const rec of page) {
            if (rec.seq !== after + 1) throw new Error(`${id}: seq ${rec.seq} after ${after}`);
            after = rec.seq;
          }
          n += page.length;
          if (page.length < 1000) break;
        }
        if (after !== RECORDS) throw new Error(`${id}: read ${after} of ${RECORDS}`);
      }
      const secs = (performance.now() - r0) / 1000;
      const io = readBytes() - io0;
      await reader.close();
      emit({
        bench: `history.read.${pass}`,
        cold,
        vehicles: SAMPLE,
        records: n,
        seconds: +secs.toFixed(3),
        recordsPerSec: Math.round(n / secs),
        diskBytesRead: io,
        diskBytesPerRecord: +(io / n).toFixed(1),
      });
    }
  } finally {
    if (values.dir === undefined && !values.keep) rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`history: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
