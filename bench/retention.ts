// Retention under ingest: ack latency (send → STORED) with and without the retention job deleting old
// records. Prints JSON lines; `npx tsx bench/retention.ts [--old 1000000] [--vehicles 500] [--rate 10] [--seconds 10]`.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { GatewayApp } from '../src/app.js';
import { TokenService } from '../src/auth/tokens.js';
import { loadConfig } from '../src/config/index.js';
import { silentLogger } from '../src/observability/logger.js';
import {
  Cmd,
  FrameDecoder,
  MessageAssembler,
  encodeConnect,
  encodeMessage,
  encodeTelemetry,
  readU32,
} from '../src/protocol/index.js';
import type { UplinkWrite } from '../src/store/types.js';

const { values } = parseArgs({
  options: {
    old: { type: 'string', default: '1000000' },
    vehicles: { type: 'string', default: '500' },
    rate: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '10' },
    sync: { type: 'string', default: 'full' },
    batch: { type: 'string', default: '500' },
  },
});
const OLD = Number(values.old);
const VEHICLES = Number(values.vehicles);
const RATE = Number(values.rate);
const SECONDS = Math.min(Number(values.seconds), 60);
const SECRET = 'bench-retention';

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vmcp-bench-retention-'));
  const config = loadConfig({
    flags: {
      listen: '127.0.0.1:0',
      http: '127.0.0.1:0',
      dataDir: dir,
      jwtSecret: SECRET,
      adminToken: 'x',
      storeSync: values.sync,
      // The gateway's periodic job must not run on its own here: the bench calls it at a chosen time.
      retentionMs: '3650d',
      uplinkRatePerSec: '1000',
      retentionBatch: values.batch,
      logLevel: 'silent',
    },
  });
  const app = await GatewayApp.start(config, { logger: silentLogger(), defaultMetrics: false });
  try {
    // 1. Old records, written straight into the store: received 2 days ago, past a 1 h retention.
    const oldAt = Date.now() - 2 * 86_400_000;
    const fillStart = performance.now();
    const OLD_VEHICLES = 1000;
    const perVehicle = Math.ceil(OLD / OLD_VEHICLES);
    for (let seq = 1; seq <= perVehicle; seq++) {
      const writes: UplinkWrite[] = [];
      for (let v = 0; v < OLD_VEHICLES; v++) {
        const vehicleId = `OLD${v}`;
        writes.push({
          vehicleId,
          seq,
          record: {
            vehicleId,
            seq,
            kind: 'telemetry',
            timestamp: oldAt,
            receivedAt: oldAt + seq,
            data: { latitude: 31.2304, longitude: 121.4737, speedKmh: 65.3 },
          },
        });
      }
      writes.sort((a, b) => (a.vehicleId < b.vehicleId ? -1 : 1));
      await app.store.appendUplink(writes);
    }
    const filled = perVehicle * OLD_VEHICLES;
    process.stdout.write(
      `${JSON.stringify({ bench: 'retention.fill', records: filled, seconds: (performance.now() - fillStart) / 1000 })}\n`,
    );

    // 2. A fleet sending telemetry; ack latency measured per message.
    const tokens = await TokenService.create({ hs256Secret: SECRET });
    const sentAt = new Map<string, number>();
    let phase: 'idle' | 'retention' = 'idle';
    const lat: Record<string, number[]> = { idle: [], retention: [] };
    const sockets: { s: Socket; id: string; seq: number }[] = [];
    for (let i = 0; i < VEHICLES; i++) {
      const id = `NEW${i}`;
      const token = await tokens.sign({
        subject: id,
        scopes: ['telemetry:publish'],
        ttlMs: 3600_000,
        nowMs: Date.now(),
      });
      const s = connect({ port: app.addresses.vehicle.port, host: '127.0.0.1' });
      const entry = { s, id, seq: 0 };
      const dec = new FrameDecoder(
        new MessageAssembler({
          onMessage(code, data) {
            if (code !== Cmd.UPLINK_ACK || data[4] !== 0) return;
            // Cumulative: every seq up to the acked one is stored now.
            const upTo = readU32(data, 0);
            const now = performance.now();
            for (let q = upTo; q > 0; q--) {
              const k = `${id}:${q}`;
              const t = sentAt.get(k);
              if (t === undefined) break;
              sentAt.delete(k);
              lat[phase]!.push(now - t);
            }
          },
          onBrokenRun: () => undefined,
          onTooLarge: () => undefined,
          onBadFrame: () => undefined,
          onGarbage: () => undefined,
        }),
      );
      s.on('data', (c) => dec.push(c));
      s.on('error', () => undefined);
      await new Promise<void>((r) => s.once('connect', () => r()));
      s.write(
        encodeMessage(
          Cmd.CONNECT,
          encodeConnect({ versionMin: 1, versionMax: 2, vehicleId: id, token, keepalive: 60 }),
        ),
      );
      sockets.push(entry);
    }
    await new Promise((r) => setTimeout(r, 500));

    const runPhase = async (
      name: 'idle' | 'retention',
      during?: () => Promise<number>,
    ): Promise<void> => {
      phase = name;
      const until = Date.now() + SECONDS * 1000;
      let deleted = 0;
      const job = during?.().then((n) => (deleted = n));
      while (Date.now() < until) {
        const tick = Date.now();
        for (const v of sockets) {
          for (let k = 0; k < RATE / 10; k++) {
            v.seq++;
            sentAt.set(`${v.id}:${v.seq}`, performance.now());
            v.s.write(
              encodeMessage(
                Cmd.TELEMETRY,
                encodeTelemetry({ seq: v.seq, timestamp: Date.now(), speed: 500 }),
              ),
            );
          }
        }
        await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - tick))));
      }
      await job;
      await new Promise((r) => setTimeout(r, 500));
      const sorted = lat[name]!.sort((a, b) => a - b);
      process.stdout.write(
        `${JSON.stringify({
          bench: `retention.ack.${name}`,
          messages: sorted.length,
          p50Ms: +percentile(sorted, 50).toFixed(2),
          p99Ms: +percentile(sorted, 99).toFixed(2),
          maxMs: +(sorted[sorted.length - 1] ?? NaN).toFixed(2),
          deleted,
          vehicles: VEHICLES,
          ratePerVehicle: RATE,
          storeSync: values.sync,
          retentionBatch: Number(values.batch),
          cpus: cpus().length,
          node: process.version,
        })}\n`,
      );
    };
    await runPhase('idle');
    await runPhase('retention', async () => {
      let total = 0;
      // The gateway's own job: batches with pauses, repeated until nothing old is left.
      for (let i = 0; i < 1000; i++) {
        const n = await app.gateway.pruneExpired(Date.now(), 3600_000);
        total += n;
        if (n === 0) break;
      }
      return total;
    });
    for (const v of sockets) v.s.destroy();
  } finally {
    await app.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exitCode = 1;
});
