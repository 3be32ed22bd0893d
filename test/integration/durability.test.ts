// kill -9 under load: every acked uplink message is in the store after restart, in order, no gap, no duplicate (PROTOCOL.md 3.2).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TokenService } from '../../src/auth/tokens.js';
import {
  AckStatus,
  Cmd,
  encodeMessage,
  encodeTelemetry,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { startServe } from '../helpers/process.js';
import { TestVehicle } from '../helpers/vehicle.js';

const SECRET = 'durability-secret';
const ADMIN = 'durability-admin';
const env = { VMCP_JWT_SECRET: SECRET, VMCP_ADMIN_TOKEN: ADMIN };
const dir = mkdtempSync(join(tmpdir(), 'vmcp-kill9-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kill -9 durability', () => {
  it('keeps every acked message and the right NEXT_UPLINK_SEQ across SIGKILL and restart', async () => {
    const tokens = await TokenService.create({ hs256Secret: SECRET });
    const ids = ['VIN-KILL-A', 'VIN-KILL-B', 'VIN-KILL-C'];
    const gw = await startServe(
      ['--data-dir', dir, '--uplink-rate-per-sec', '100000', '--uplink-burst', '100000'],
      env,
    );
    const acked = new Map<string, number>();
    const vehicles: TestVehicle[] = [];
    for (const id of ids) {
      const v = await TestVehicle.open(gw.vehiclePort);
      const token = await tokens.sign({
        subject: id,
        scopes: ['telemetry:publish'],
        ttlMs: 3600_000,
        nowMs: Date.now(),
      });
      expect((await v.connect({ vehicleId: id, token })).status).toBe(0);
      vehicles.push(v);
      acked.set(id, 0);
    }
    // Each vehicle streams up to 20,000 messages; the gateway is killed once 3,000 are acked in all.
    const MAX = 20_000;
    let sent = 0;
    const pump = vehicles.map(async (v, i) => {
      for (let seq = 1; seq <= MAX && !v.closed; seq += 200) {
        const frames: Uint8Array[] = [];
        for (let k = seq; k < seq + 200 && k <= MAX; k++) {
          frames.push(
            encodeMessage(
              Cmd.TELEMETRY,
              encodeTelemetry({ seq: k, timestamp: 1764000000000 + k, speed: k % 65535 }),
            ),
          );
        }
        v.sendRaw(Buffer.concat(frames));
        sent += frames.length;
        await new Promise((r) => setTimeout(r, 2));
        while (v.inbox.length > 0) {
          const m = v.inbox.shift()!;
          if (m.code !== Cmd.UPLINK_ACK) continue;
          const ack = {
            seq: Buffer.from(m.data).readUInt32BE(0),
            status: m.data[4],
          } as UplinkAckMessage;
          if (ack.status === AckStatus.STORED)
            acked.set(ids[i]!, Math.max(acked.get(ids[i]!)!, ack.seq));
        }
      }
    });
    const deadline = Date.now() + 20_000;
    while ([...acked.values()].reduce((a, b) => a + b, 0) < 3_000 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    gw.child.kill('SIGKILL');
    expect(await gw.exited).toBe('SIGKILL');
    await Promise.all(pump);
    expect(sent).toBeGreaterThan(0);
    const totalAcked = [...acked.values()].reduce((a, b) => a + b, 0);
    expect(totalAcked).toBeGreaterThanOrEqual(3_000);

    const again = await startServe(['--data-dir', dir], env);
    try {
      for (const id of ids) {
        const v = await TestVehicle.open(again.vehiclePort);
        const token = await tokens.sign({
          subject: id,
          scopes: ['telemetry:publish'],
          ttlMs: 3600_000,
          nowMs: Date.now(),
        });
        const ack = await v.connect({ vehicleId: id, token });
        expect(ack.status).toBe(0);
        expect(ack.nextUplinkSeq! - 1).toBeGreaterThanOrEqual(acked.get(id)!);
        v.close();
        // The stored stream is exactly 1 … NEXT_UPLINK_SEQ − 1: no gap, no duplicate.
        const seqs: number[] = [];
        for (let after = 0; ;) {
          const res = await fetch(
            `${again.httpUrl}/api/v1/vehicles/${id}/uplink?afterSeq=${after}&limit=1000`,
            {
              headers: { authorization: `Bearer ${ADMIN}` },
            },
          );
          const items = ((await res.json()) as { items: { seq: number }[] }).items;
          if (items.length === 0) break;
          seqs.push(...items.map((r) => r.seq));
          after = items[items.length - 1]!.seq;
        }
        expect(seqs.length).toBe(ack.nextUplinkSeq! - 1);
        seqs.forEach((s, i) => expect(s).toBe(i + 1));
      }
    } finally {
      again.child.kill('SIGTERM');
      await again.exited;
    }
  }, 60_000);
});
