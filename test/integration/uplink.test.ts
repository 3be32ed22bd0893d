// Durable uplink over real sockets: the check order of PROTOCOL.md 3.2, batches (5), latest state and the JSON record form (8).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  AckStatus,
  Cmd,
  ErrorCode,
  encodeEvent,
  encodeTelemetry,
  encodeTelemetryBatch,
  fromHex,
  type ErrorMessage,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { PACKED_TRACEPARENT_BYTES, packTraceparent } from '../../src/store/sqlite-index.js';
import type { UplinkWrite } from '../../src/store/types.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ uplinkRatePerSec: '5', uplinkBurst: '10' });
});
afterAll(async () => {
  await gw.stop();
});

let n = 0;
const vin = (): string => `VIN-UP-${++n}`;
const T = 1764000000000;

async function records(
  id: string,
  query = '',
): Promise<{ seq: number; kind: string; data: Record<string, unknown> }[]> {
  const res = await gw.api('GET', `/api/v1/vehicles/${id}/uplink${query}`);
  expect(res.status).toBe(200);
  return (res.body as { items: { seq: number; kind: string; data: Record<string, unknown> }[] })
    .items;
}

describe('uplink checks', () => {
  it('REJECTED consumes the seq (a hole), not stored; the next seq continues', async () => {
    const id = vin();
    const v = await gw.connected(id);
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: T, heading: 3600 }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 1,
      status: AckStatus.REJECTED,
    });
    v.send(Cmd.TELEMETRY, fromHex('00000002')); // no TIMESTAMP
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 2,
      status: AckStatus.REJECTED,
    });
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 3, timestamp: T }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 3,
      status: AckStatus.STORED,
    });
    expect((await records(id)).map((r) => r.seq)).toEqual([3]);
    expect((await gw.api('GET', `/api/v1/vehicles/${id}`)).body).toMatchObject({
      lastUplinkSeq: 3,
    });
    v.close();
  });

  it('DATA shorter than SEQ gets ERROR INVALID_DATA and consumes nothing', async () => {
    const v = await gw.connected(vin());
    v.send(Cmd.TELEMETRY, fromHex('0001'));
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.INVALID_DATA,
      refCmd: Cmd.TELEMETRY,
    });
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: T }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 1,
      status: AckStatus.STORED,
    });
    v.close();
  });

  it('FORBIDDEN for an EVENT without event:publish (consumed, not stored); the check order puts DUPLICATE first', async () => {
    const id = vin();
    const v = await gw.vehicle();
    await v.connect({ vehicleId: id, token: await gw.token(id, ['telemetry:publish']) });
    v.send(Cmd.EVENT, encodeEvent({ seq: 1, timestamp: T, eventCode: 1, severity: 3 }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 1,
      status: AckStatus.FORBIDDEN,
    });
    v.send(Cmd.EVENT, encodeEvent({ seq: 1, timestamp: T }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 1,
      status: AckStatus.DUPLICATE,
    });
    expect(await records(id)).toEqual([]);
    v.close();
  });

  it('THROTTLED over the per-vehicle bucket (not consumed); pipelined messages behind it get OUT_OF_ORDER', async () => {
    const id = vin();
    const v = await gw.connected(id);
    for (let seq = 1; seq <= 14; seq++)
      v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: T + seq }));
    // Answers that consume nothing go out at once; STORED waits for the commit, so collect all of them.
    const acks: UplinkAckMessage[] = [];
    const done = (): boolean =>
      acks.filter((a) => a.status === AckStatus.OUT_OF_ORDER).length === 3 &&
      acks.some((a) => a.status === AckStatus.THROTTLED) &&
      acks.some((a) => a.status === AckStatus.STORED && a.seq === 10);
    while (!done()) acks.push(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK));
    expect(acks.filter((a) => a.status === AckStatus.THROTTLED)).toEqual([
      { seq: 11, status: AckStatus.THROTTLED },
    ]); // burst 10
    expect(acks.filter((a) => a.status === AckStatus.OUT_OF_ORDER).every((a) => a.seq === 11)).toBe(
      true,
    );
    await new Promise((r) => setTimeout(r, 1_100));
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 11, timestamp: T }));
    let last: UplinkAckMessage;
    do last = await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
    while (last.status === AckStatus.OUT_OF_ORDER);
    expect(last).toEqual({ seq: 11, status: AckStatus.STORED });
    expect((await records(id)).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    v.close();
  });

  it('the bucket is per vehicle: reconnecting does not refill it', async () => {
    const slow = await startGateway({ uplinkRatePerSec: '1', uplinkBurst: '3' });
    try {
      const id = vin();
      const v = await slow.connected(id);
      for (let seq = 1; seq <= 4; seq++)
        v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: T + seq }));
      const acks: UplinkAckMessage[] = [];
      while (!acks.some((a) => a.status === AckStatus.STORED && a.seq === 3))
        acks.push(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK));
      expect(acks).toContainEqual({ seq: 4, status: AckStatus.THROTTLED });
      v.close();
      await v.waitClosed();
      // At once on a new connection: the bucket holds well under one token still.
      const w = await slow.connected(id);
      w.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 4, timestamp: T + 4 }));
      expect(await w.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
        seq: 4,
        status: AckStatus.THROTTLED,
      });
      await new Promise((r) => setTimeout(r, 1_100));
      w.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 4, timestamp: T + 4 }));
      expect(await w.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
        seq: 4,
        status: AckStatus.STORED,
      });
      w.close();
    } finally {
      await slow.stop();
    }
  });

  it('keeps the latest state per key from the highest seq; events do not touch it', async () => {
    const id = vin();
    const v = await gw.connected(id);
    v.send(
      Cmd.TELEMETRY,
      encodeTelemetry({
        seq: 1,
        timestamp: T,
        speed: 100,
        fuelOrSoc: 80,
        vendor: { '0x80': 'dead' },
      }),
    );
    v.send(
      Cmd.TELEMETRY,
      encodeTelemetry({ seq: 2, timestamp: T + 1, speed: 120, odometer: 102345 }),
    );
    v.send(
      Cmd.EVENT,
      encodeEvent({
        seq: 3,
        timestamp: T + 2,
        eventCode: 2,
        severity: 1,
        detail: '急刹车',
        latitude: 1,
      }),
    );
    let a: UplinkAckMessage;
    do a = await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
    while (a.seq < 3);
    const veh = (await gw.api('GET', `/api/v1/vehicles/${id}`)).body;
    expect(veh).toMatchObject({
      id,
      online: true,
      lastUplinkSeq: 3,
      latest: { speedKmh: 12, fuelOrSocPct: 80, odometerKm: 10234.5, vendor: { '0x80': 'dead' } },
    });
    const recs = await records(id);
    expect(recs[2]).toMatchObject({
      seq: 3,
      kind: 'event',
      data: { eventCode: 2, severity: 1, detail: '急刹车', latitude: 1e-7 },
    });
    expect((await records(id, '?afterSeq=1&limit=1')).map((r) => r.seq)).toEqual([2]);
    v.close();
  });
});

describe('uplink trace ids', () => {
  it("passes each record's trace ids with its write, the bytes of its traceparent but the seq", async () => {
    const id = vin();
    const v = await gw.connected(id);
    const seen: UplinkWrite[] = [];
    const original = gw.app.store.appendUplink.bind(gw.app.store);
    const wrapped = vi.spyOn(gw.app.store, 'appendUplink').mockImplementation((writes) => {
      seen.push(...writes.filter((w) => w.vehicleId === id));
      return original(writes);
    });
    try {
      v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: T }));
      v.send(Cmd.EVENT, encodeEvent({ seq: 2, timestamp: T }));
      v.send(
        Cmd.TELEMETRY_BATCH,
        encodeTelemetryBatch({ firstSeq: 3, samples: [{ timestamp: T }, { timestamp: T + 1 }] }),
      );
      for (let last = 0; last < 4;)
        last = (await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).seq;
    } finally {
      wrapped.mockRestore();
    }
    expect(seen.map((w) => w.seq)).toEqual([1, 2, 3, 4]);
    const out = Buffer.alloc(PACKED_TRACEPARENT_BYTES);
    for (const w of seen) {
      expect(packTraceparent(w.record!.traceparent!, w.seq, out)).toBe(true);
      expect(Buffer.from(w.traceIds!).equals(out)).toBe(true);
    }
    v.close();
  });
});

describe('TELEMETRY_BATCH (v2)', () => {
  it('stores every sample and answers one STORED with SEQ LAST', async () => {
    const id = vin();
    const v = await gw.connected(id);
    v.send(
      Cmd.TELEMETRY_BATCH,
      encodeTelemetryBatch({
        firstSeq: 1,
        samples: [{ timestamp: T }, { timestamp: T + 1 }, { timestamp: T + 2 }],
      }),
    );
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 3,
      status: AckStatus.STORED,
    });
    expect((await records(id)).map((r) => r.seq)).toEqual([1, 2, 3]);
    v.close();
  });

  it('skips consumed samples, rejects an invalid one (its seq consumed) and reports it as the batch status', async () => {
    const id = vin();
    const v = await gw.connected(id);
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: T }));
    await v.next(Cmd.UPLINK_ACK);
    v.send(
      Cmd.TELEMETRY_BATCH,
      encodeTelemetryBatch({
        firstSeq: 1,
        samples: [{ timestamp: T }, { timestamp: T, fuelOrSoc: 101 }, { timestamp: T + 3 }],
      }),
    );
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 3,
      status: AckStatus.REJECTED,
    });
    expect((await records(id)).map((r) => r.seq)).toEqual([1, 3]);
    v.send(
      Cmd.TELEMETRY_BATCH,
      encodeTelemetryBatch({ firstSeq: 2, samples: [{ timestamp: T }, { timestamp: T }] }),
    );
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 3,
      status: AckStatus.DUPLICATE,
    });
    v.send(Cmd.TELEMETRY_BATCH, encodeTelemetryBatch({ firstSeq: 9, samples: [{ timestamp: T }] }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 4,
      status: AckStatus.OUT_OF_ORDER,
    });
    v.close();
  });

  it('answers a malformed batch with ERROR INVALID_DATA (REF_SEQ FIRST_SEQ) and consumes nothing', async () => {
    const id = vin();
    const v = await gw.connected(id);
    v.send(Cmd.TELEMETRY_BATCH, fromHex('0000000100'));
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.INVALID_DATA,
      refCmd: Cmd.TELEMETRY_BATCH,
      refSeq: 1,
    });
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: T }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 1,
      status: AckStatus.STORED,
    });
    v.close();
  });

  it('is an unknown command in a version 1 session', async () => {
    const id = vin();
    const v = await gw.vehicle();
    await v.connect({ vehicleId: id, token: await gw.token(id), versionMax: 1 });
    v.send(Cmd.TELEMETRY_BATCH, encodeTelemetryBatch({ firstSeq: 1, samples: [{ timestamp: T }] }));
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.UNKNOWN_COMMAND,
      refCmd: Cmd.TELEMETRY_BATCH,
    });
    v.close();
  });
});
