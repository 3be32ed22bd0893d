// A vehicle that drops and reconnects while its uplink is still in a group commit gets the exact
// NEXT_UPLINK_SEQ: the new CONNACK waits until the ended session's writes are durable (PROTOCOL.md 3.2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cmd, encodeMessage, encodeTelemetry } from '../../src/protocol/index.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let gw: TestGateway;
beforeAll(async () => {
  // A long commit interval keeps writes pending long enough to reconnect in between.
  gw = await startGateway({ commitIntervalMs: '300' });
});
afterAll(async () => {
  await gw.stop();
});

describe('reconnect with uplink in flight', () => {
  it('the new CONNACK reports NEXT_UPLINK_SEQ after the old writes are committed', async () => {
    const id = 'VIN-RECONNECT-1';
    const a = await gw.connected(id);
    const frames = Array.from({ length: 20 }, (_, i) =>
      encodeMessage(Cmd.TELEMETRY, encodeTelemetry({ seq: i + 1, timestamp: 1764000000000 + i })),
    );
    a.sendRaw(Buffer.concat(frames));
    // Let the gateway read them, then drop the connection without waiting for any ack.
    await new Promise((r) => setTimeout(r, 50));
    a.close();
    await a.waitClosed();
    const b = await gw.vehicle();
    const ack = await b.connect({ vehicleId: id, token: await gw.token(id) });
    expect(ack.status).toBe(0);
    const view = (await gw.api('GET', `/api/v1/vehicles/${id}`)).body as { lastUplinkSeq: number };
    expect(ack.nextUplinkSeq).toBe(21);
    expect(view.lastUplinkSeq).toBe(20);
    b.close();
  });
});
