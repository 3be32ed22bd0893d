// Fail closed: a full disk (a real tmpfs filled up) makes the gateway ack nothing it cannot store, report
// not-ready, and recover by itself when space returns, with nothing acked lost (PROTOCOL.md 3.2; issue 3).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AckStatus,
  Cmd,
  encodeTelemetry,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const root = mkdtempSync(join(tmpdir(), 'vmcp-full-'));
const mnt = join(root, 'disk');
mkdirSync(mnt);

/** Mounting a tmpfs needs root (CI and these machines run as root). */
function mount(sizeMiB: number, remount = false): boolean {
  try {
    const opts = `${remount ? 'remount,' : ''}size=${sizeMiB}m`;
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', mnt], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const canMount = mount(2);

afterAll(() => {
  if (canMount) execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
  rmSync(root, { recursive: true, force: true });
});

async function ackFor(v: import('../helpers/vehicle.js').TestVehicle): Promise<UplinkAckMessage> {
  return v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK, 10_000);
}

describe.skipIf(!canMount)('store outage: disk full', () => {
  let gw: TestGateway | undefined;
  afterAll(async () => {
    await gw?.stop();
  });

  it('throttles instead of acking, reports not ready, recovers when space returns, loses nothing acked', async () => {
    gw = await startGateway(
      { diskFloorBytes: '0', uplinkRatePerSec: '100000', uplinkBurst: '100000', storeSync: 'full' },
      join(mnt, 'data'),
    );
    const id = 'VIN-DISK-FULL';
    const v = await gw.connected(id);
    const vendor = { '0x80': 'ab'.repeat(1000) }; // ~2 KB of JSON per record: 2 MiB fills quickly
    let seq = 1;
    let lastStored = 0;
    let throttled: UplinkAckMessage | undefined;
    for (let i = 0; i < 5_000 && throttled === undefined; i++) {
      v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: 1764000000000 + seq, vendor }));
      const ack = await ackFor(v);
      if (ack.status === AckStatus.STORED) lastStored = ack.seq;
      else if (ack.status === AckStatus.THROTTLED) throttled = ack;
      else throw new Error(`unexpected ack ${JSON.stringify(ack)}`);
      seq = lastStored + 1;
    }
    expect(throttled).toBeDefined();
    expect(throttled!.seq).toBe(lastStored + 1);
    expect(lastStored).toBeGreaterThan(10);
    expect((await fetch(`${gw.httpUrl}/readyz`)).status).toBe(503);

    // Space comes back; the vehicle resends from the throttled seq until it is stored again.
    expect(mount(64, true)).toBe(true);
    let recovered = false;
    const deadline = Date.now() + 15_000;
    while (!recovered && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      v.send(
        Cmd.TELEMETRY,
        encodeTelemetry({ seq: lastStored + 1, timestamp: 1764000000000, speed: 1 }),
      );
      const ack = await ackFor(v);
      if (ack.status === AckStatus.STORED) {
        expect(ack.seq).toBe(lastStored + 1);
        lastStored = ack.seq;
        recovered = true;
      } else expect(ack).toEqual({ seq: lastStored + 1, status: AckStatus.THROTTLED });
    }
    expect(recovered).toBe(true);
    let ready = 0;
    for (let i = 0; i < 50 && ready !== 200; i++) {
      ready = (await fetch(`${gw.httpUrl}/readyz`)).status;
      if (ready !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(ready).toBe(200);

    // Every acked seq is stored, in order, without gap or duplicate.
    const seqs: number[] = [];
    for (let after = 0; ;) {
      const res = await gw.api('GET', `/api/v1/vehicles/${id}/uplink?afterSeq=${after}&limit=1000`);
      const items = (res.body as { items: { seq: number }[] }).items;
      if (items.length === 0) break;
      seqs.push(...items.map((r) => r.seq));
      after = items[items.length - 1]!.seq;
    }
    expect(seqs).toEqual(Array.from({ length: lastStored }, (_, i) => i + 1));
    v.close();
  }, 60_000);
});
