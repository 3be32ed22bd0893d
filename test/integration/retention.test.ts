// Retention and the free-disk floor (issue 3): old records go in batches, seq state and latest stay; below the floor uplink is shed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AckStatus,
  Cmd,
  encodeTelemetry,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

describe('retention', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ retentionMs: '1h', retentionBatch: '10' });
  });
  afterAll(async () => {
    await gw.stop();
  });

  it('deletes records older than --retention but keeps the seq state and latest', async () => {
    const id = 'VIN-RETAIN-1';
    const v = await gw.connected(id);
    for (let seq = 1; seq <= 25; seq++)
      v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: 1764000000000, speed: seq }));
    let ack: UplinkAckMessage;
    do ack = await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
    while (ack.seq < 25);
    const gateway = gw.app.gateway;
    expect(await gateway.pruneExpired(Date.now())).toBe(0);
    // Two hours later every record is past the 1 h retention: all go, in batches of 10.
    expect(await gateway.pruneExpired(Date.now() + 2 * 3600_000)).toBe(25);
    const res = await gw.api('GET', `/api/v1/vehicles/${id}/uplink`);
    expect((res.body as { items: unknown[] }).items).toEqual([]);
    expect((await gw.api('GET', `/api/v1/vehicles/${id}`)).body).toMatchObject({
      lastUplinkSeq: 25,
      latest: { speedKmh: 2.5 },
    });
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 25, timestamp: 1764000000000 }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 25,
      status: AckStatus.DUPLICATE,
    });
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 26, timestamp: 1764000000000 }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 26,
      status: AckStatus.STORED,
    });
    v.close();
  });
});

describe('free-disk floor', () => {
  it('sheds uplink with THROTTLED when free disk is below the floor', async () => {
    const gw = await startGateway({ diskFloorBytes: '1000TiB' });
    try {
      const v = await gw.connected('VIN-FLOOR-1');
      // The first disk check runs within about a second of start: until then messages may be stored.
      let seq = 1;
      let ack: UplinkAckMessage | undefined;
      for (let i = 0; i < 40; i++) {
        v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: 1764000000000 }));
        ack = await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK);
        if (ack.status === AckStatus.THROTTLED) break;
        expect(ack).toEqual({ seq, status: AckStatus.STORED });
        seq++;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(ack).toEqual({ seq, status: AckStatus.THROTTLED });
      // Shedding shows: not ready, and the metrics say why.
      const ready = await fetch(`${gw.httpUrl}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({
        code: 'not_ready',
        message: 'not ready: free disk below the floor',
      });
      const text = await (await fetch(`${gw.httpUrl}/metrics`)).text();
      expect(text).toMatch(/^vmcp_disk_below_floor 1$/m);
      expect(text).toMatch(/^vmcp_disk_free_bytes \d+/m);
      v.close();
    } finally {
      await gw.stop();
    }
  });
});
