// TCP intake under interleaving: many sockets' reads follow each other before the commit that stores
// them, frames arrive whole, coalesced or cut into pieces, and messages wait behind a CONNECT whose
// token is being checked. No vehicle's stored data may ever hold another's bytes (a chunk or a frame
// view reused before the store wrote it would do exactly that). Both ways of reading a socket run the
// suite: one shared buffer per process (the default where Node's sockets have the onread slots) and
// the stream fallback.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { forceStreamReads, type TcpListener } from '../../src/gateway/transports.js';
import {
  AckStatus,
  Cmd,
  encodeConnect,
  encodeMessage,
  encodeTelemetry,
  telemetryData,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import type { TestVehicle } from '../helpers/vehicle.js';

const T = 1764000000000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sample `seq` of vehicle `v`: every field says whose it is and which one it is. */
function sample(v: number, seq: number): Parameters<typeof encodeTelemetry>[0] {
  return {
    seq,
    timestamp: T + seq,
    latitude: v * 1_000_000 + seq,
    longitude: -(v * 1_000_000 + seq),
    odometer: v * 10_000 + seq,
    vendor: { '0x80': (v * 1000 + seq).toString(16).padStart(8, '0') },
  };
}

async function acksUpTo(v: TestVehicle, last: number): Promise<void> {
  for (;;) {
    const ack = await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
    expect(ack.status).toBe(AckStatus.STORED);
    if (ack.seq === last) return;
  }
}

describe.each(['shared-buffer', 'stream'] as const)('plain-TCP intake, %s reads', (mode) => {
  let gw: TestGateway;
  beforeAll(async () => {
    forceStreamReads(mode === 'stream');
    gw = await startGateway({ uplinkRatePerSec: '1000', uplinkBurst: '1000' });
  });
  afterAll(async () => {
    await gw.stop();
    forceStreamReads(false);
  });

  it('reads accepted sockets the expected way', async () => {
    const id = `VIN-TCP-MODE-${mode}`;
    const v = await gw.connected(id);
    // A stream socket emits 'data' for every read; a shared-buffer socket hands reads to the
    // session without one.
    let dataEvents = 0;
    gw.app.gateway.sessions.get(id)!.stream.on('data', () => dataEvents++);
    v.send(Cmd.TELEMETRY, encodeTelemetry(sample(60, 1)));
    await acksUpTo(v, 1);
    expect(dataEvents > 0).toBe(mode === 'stream');
    expect((gw.app.listeners[0] as TcpListener).readMode).toBe(mode);
    v.close();
  });

  it('closes after a peer half-closes, and stores what came before the end', async () => {
    const id = `VIN-TCP-END-${mode}`;
    const v = await gw.connected(id);
    v.send(Cmd.TELEMETRY, encodeTelemetry(sample(61, 1)));
    v.socket.end();
    await v.waitClosed();
    let items: unknown[] = [];
    for (let i = 0; i < 100 && items.length === 0; i++) {
      const res = await gw.api('GET', `/api/v1/vehicles/${id}/uplink`);
      items = (res.body as { items: unknown[] }).items;
      if (items.length === 0) await sleep(20);
    }
    expect(items).toHaveLength(1);
  });

  it('stops reading while the store is behind and resumes when the backlog halves, losing nothing', async () => {
    // A small backlog limit and slow commits: the vehicle's bursts fill the backlog, every session
    // stops reading (the socket's bytes wait in the kernel) and starts again after a commit.
    const slow = await startGateway({
      uplinkRatePerSec: '1000',
      uplinkBurst: '1000',
      maxPendingUplink: '100',
      commitIntervalMs: '300',
    });
    const pauses = vi.spyOn(slow.app.gateway, 'pauseSession');
    try {
      const id = `VIN-TCP-BACKLOG-${mode}`;
      const v = await slow.connected(id);
      const BURSTS = 8;
      const PER_BURST = 50;
      const acked = acksUpTo(v, BURSTS * PER_BURST);
      for (let b = 0; b < BURSTS; b++) {
        const frames = Array.from({ length: PER_BURST }, (_, k) =>
          encodeMessage(Cmd.TELEMETRY, encodeTelemetry(sample(62, b * PER_BURST + k + 1))),
        );
        v.sendRaw(Buffer.concat(frames));
        await sleep(40);
      }
      await acked;
      expect(pauses).toHaveBeenCalled();
      const res = await slow.api('GET', `/api/v1/vehicles/${id}/uplink?limit=1000`);
      const items = (res.body as { items: { seq: number; data: Record<string, unknown> }[] }).items;
      expect(items.map((r) => r.seq)).toEqual(
        Array.from({ length: BURSTS * PER_BURST }, (_, k) => k + 1),
      );
      expect(items[399]!.data).toEqual(telemetryData(sample(62, 400)));
      v.close();
    } finally {
      pauses.mockRestore();
      await slow.stop();
    }
  });

  it("stores each vehicle's own bytes while many sockets' reads interleave", async () => {
    const VEHICLES = 12;
    const PER_VEHICLE = 40;
    const vehicles = await Promise.all(
      Array.from({ length: VEHICLES }, (_, i) => gw.connected(`VIN-TCP-MIX-${mode}-${i}`)),
    );
    const frames = vehicles.map((_, v) =>
      Array.from({ length: PER_VEHICLE }, (_, k) =>
        encodeMessage(Cmd.TELEMETRY, encodeTelemetry(sample(v, k + 1))),
      ),
    );
    // Three shapes of arrival, all in the same rounds so that reads of different sockets follow
    // each other before the commit that stores them: a whole stream in one write, frames one by
    // one, and frames cut into 3-byte pieces (a frame's bytes spread over several reads).
    const waits = vehicles.map((v) => acksUpTo(v, PER_VEHICLE));
    vehicles.forEach((v, i) => {
      if (i % 3 === 0) v.sendRaw(Buffer.concat(frames[i]!));
    });
    for (let k = 0; k < PER_VEHICLE; k++) {
      vehicles.forEach((v, i) => {
        if (i % 3 === 1) v.sendRaw(frames[i]![k]!);
      });
      const bytes = frames.map((f) => f[k]!);
      for (let o = 0; o < Math.max(...bytes.map((b) => b.length)); o += 3)
        vehicles.forEach((v, i) => {
          if (i % 3 === 2 && o < bytes[i]!.length) v.sendRaw(bytes[i]!.subarray(o, o + 3));
        });
      await sleep(1);
    }
    await Promise.all(waits);
    for (let v = 0; v < VEHICLES; v++) {
      const res = await gw.api(
        'GET',
        `/api/v1/vehicles/VIN-TCP-MIX-${mode}-${v}/uplink?limit=1000`,
      );
      expect(res.status).toBe(200);
      const items = (res.body as { items: { seq: number; data: Record<string, unknown> }[] }).items;
      expect(items.map((r) => r.seq)).toEqual(Array.from({ length: PER_VEHICLE }, (_, k) => k + 1));
      for (const r of items) {
        expect(r.data, `vehicle ${v} seq ${r.seq}`).toEqual(telemetryData(sample(v, r.seq)));
      }
    }
    for (const v of vehicles) v.close();
  });

  it('keeps messages pipelined behind CONNECT intact while the token is checked', async () => {
    // Messages that arrive in the CONNECT's read wait for the asynchronous token check; in the
    // meantime the other sockets' reads refill the shared buffer.
    const VEHICLES = 16;
    const PER_VEHICLE = 6;
    const opened = await Promise.all(Array.from({ length: VEHICLES }, () => gw.vehicle()));
    const ids = opened.map((_, v) => `VIN-TCP-PIPE-${mode}-${v}`);
    const writes = await Promise.all(
      opened.map(async (_, v) =>
        Buffer.concat([
          encodeMessage(
            Cmd.CONNECT,
            encodeConnect({
              versionMin: 1,
              versionMax: 1,
              vehicleId: ids[v]!,
              token: await gw.token(ids[v]!),
            }),
          ),
          ...Array.from({ length: PER_VEHICLE }, (_, k) =>
            encodeMessage(Cmd.TELEMETRY, encodeTelemetry(sample(100 + v, k + 1))),
          ),
        ]),
      ),
    );
    opened.forEach((v, i) => v.sendRaw(writes[i]!));
    await Promise.all(
      opened.map(async (v) => {
        expect((await v.nextDecoded<{ status: number }>(Cmd.CONNACK)).status).toBe(0);
        await acksUpTo(v, PER_VEHICLE);
      }),
    );
    for (let v = 0; v < VEHICLES; v++) {
      const res = await gw.api('GET', `/api/v1/vehicles/${ids[v]}/uplink?limit=100`);
      const items = (res.body as { items: { seq: number; data: Record<string, unknown> }[] }).items;
      expect(items.map((r) => r.data)).toEqual(
        Array.from({ length: PER_VEHICLE }, (_, k) => telemetryData(sample(100 + v, k + 1))),
      );
    }
    for (const v of opened) v.close();
  });
});
