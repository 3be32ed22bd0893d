// Reliable downlink over real sockets: outbox, order, window, resend by LAST_COMMAND_SEQ, results, expiry, cancel, sensor reads (PROTOCOL.md 4, 9).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Cmd,
  CommandResult,
  ErrorCode,
  encodeCommandAck,
  encodeSensorData,
  type CommandMessage,
  type ErrorMessage,
  type SensorReadMessage,
} from '../../src/protocol/index.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import type { TestVehicle } from '../helpers/vehicle.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw.stop();
});

let n = 0;
const vin = (): string => `VIN-DOWN-${++n}`;

interface CommandBody {
  id: string;
  vehicleId: string;
  seq: number;
  name: string;
  status: string;
  result: unknown;
}

async function post(id: string, body: Record<string, unknown>): Promise<CommandBody> {
  const res = await gw.api('POST', `/api/v1/vehicles/${id}/commands`, body);
  expect(res.status).toBe(202);
  return res.body as CommandBody;
}

async function command(id: string): Promise<CommandBody> {
  return (await gw.api('GET', `/api/v1/commands/${id}`)).body as CommandBody;
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function ack(v: TestVehicle, seq: number, result: number, payload?: string): void {
  v.send(
    Cmd.COMMAND_ACK,
    encodeCommandAck({
      seq,
      result,
      resultPayload: payload === undefined ? undefined : new TextEncoder().encode(payload),
    }),
  );
}

describe('commands', () => {
  it('queues for a never-seen vehicle, delivers on first connect, records the result', async () => {
    const id = vin();
    const c = await post(id, { name: 'door.lock', params: { all: true } });
    expect(c).toMatchObject({ seq: 1, status: 'pending' });
    expect((await gw.api('GET', `/api/v1/vehicles/${id}`)).status).toBe(404);
    const v = await gw.connected(id);
    const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    expect(cmd).toMatchObject({
      seq: 1,
      commandId: c.id,
      name: 'door.lock',
      params: '{"all":true}',
    });
    expect(cmd.expiresAt).toBeGreaterThan(Date.now());
    await eventually(async () => (await command(c.id)).status === 'delivered');
    ack(v, 1, CommandResult.SUCCEEDED, '{"locked":true}');
    await eventually(async () => (await command(c.id)).status === 'succeeded');
    expect((await command(c.id)).result).toEqual({ locked: true });
    v.close();
  });

  it('sends PARAMS only when the request had params, and a TRACEPARENT continuing the caller', async () => {
    const id = vin();
    const v = await gw.connected(id);
    const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const res = await gw.api(
      'POST',
      `/api/v1/vehicles/${id}/commands`,
      { name: 'horn.honk' },
      { traceparent: parent },
    );
    expect(res.status).toBe(202);
    const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    expect(cmd.params).toBeUndefined();
    expect(cmd.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
    v.close();
  });

  it('keeps at most 8 commands without a final result; IN_PROGRESS does not free a slot, a final result does', async () => {
    const id = vin();
    const v = await gw.connected(id);
    for (let i = 0; i < 10; i++) await post(id, { name: `c${i}` });
    const seqs: number[] = [];
    for (let i = 0; i < 8; i++) seqs.push((await v.nextDecoded<CommandMessage>(Cmd.COMMAND)).seq);
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    ack(v, 1, CommandResult.IN_PROGRESS);
    v.send(Cmd.PING);
    await v.next(Cmd.PONG);
    expect(v.inbox.some((m) => m.code === Cmd.COMMAND)).toBe(false);
    ack(v, 1, CommandResult.FAILED, 'not json');
    expect((await v.nextDecoded<CommandMessage>(Cmd.COMMAND)).seq).toBe(9);
    v.close();
  });

  it('resends open commands after reconnect, skipping those ≤ LAST_COMMAND_SEQ (left delivered)', async () => {
    const id = vin();
    const v = await gw.connected(id);
    const c1 = await post(id, { name: 'a' });
    const c2 = await post(id, { name: 'b' });
    await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    v.close();
    await v.waitClosed();
    const v2 = await gw.connected(id, { lastCommandSeq: 1 });
    const again = await v2.nextDecoded<CommandMessage>(Cmd.COMMAND);
    expect(again.seq).toBe(2);
    expect(again.commandId).toBe(c2.id);
    expect((await command(c1.id)).status).toBe('delivered');
    // The first final result counts; a second one is ignored.
    ack(v2, 2, CommandResult.REJECTED);
    await eventually(async () => (await command(c2.id)).status === 'rejected');
    ack(v2, 2, CommandResult.SUCCEEDED);
    v2.send(Cmd.PING);
    await v2.next(Cmd.PONG);
    expect((await command(c2.id)).status).toBe('rejected');
    v2.close();
  });

  it('expires a command at its TTL and does not send it afterwards', async () => {
    const id = vin();
    const c = await post(id, { name: 'late', ttlMs: 200 });
    await eventually(async () => (await command(c.id)).status === 'expired', 5_000);
    const v = await gw.connected(id);
    v.send(Cmd.PING);
    await v.next(Cmd.PONG);
    expect(v.inbox.some((m) => m.code === Cmd.COMMAND)).toBe(false);
    v.close();
  });

  it('cancels a pending command (never sent, seq stays used) but not a delivered one', async () => {
    const id = vin();
    const c1 = await post(id, { name: 'x' });
    const del = await gw.api('DELETE', `/api/v1/commands/${c1.id}`);
    expect(del.status).toBe(200);
    expect((del.body as CommandBody).status).toBe('cancelled');
    expect((await gw.api('DELETE', `/api/v1/commands/${c1.id}`)).body).toMatchObject({
      code: 'command_final',
    });
    const c2 = await post(id, { name: 'y' });
    expect(c2.seq).toBe(2);
    const v = await gw.connected(id);
    expect((await v.nextDecoded<CommandMessage>(Cmd.COMMAND)).seq).toBe(2);
    const res = await gw.api('DELETE', `/api/v1/commands/${c2.id}`);
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ code: 'command_delivered' });
    v.close();
  });

  it('does not send commands to a session without command:receive, and answers its COMMAND_ACK with ERROR FORBIDDEN', async () => {
    const id = vin();
    const v = await gw.vehicle();
    await v.connect({ vehicleId: id, token: await gw.token(id, ['telemetry:publish']) });
    const c = await post(id, { name: 'z' });
    ack(v, 1, CommandResult.SUCCEEDED);
    // 6: REF_SEQ whenever the message has a readable SEQ.
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.FORBIDDEN,
      refCmd: Cmd.COMMAND_ACK,
      refSeq: 1,
    });
    expect(v.inbox.some((m) => m.code === Cmd.COMMAND)).toBe(false);
    expect((await command(c.id)).status).toBe('pending');
    v.close();
  });

  it('a COMMAND_ACK of 4 bytes (SEQ, no RESULT): ERROR INVALID_DATA with REF_SEQ', async () => {
    const v = await gw.connected(vin());
    v.send(Cmd.COMMAND_ACK, Uint8Array.of(0, 0, 0, 7));
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.INVALID_DATA,
      refCmd: Cmd.COMMAND_ACK,
      refSeq: 7,
    });
    v.close();
  });
});

describe('sensor reads', () => {
  it('correlates SENSOR_READ and SENSOR_DATA by tag and maps statuses', async () => {
    const id = vin();
    const v = await gw.connected(id);
    const pending = gw.api('GET', `/api/v1/vehicles/${id}/sensors/7?timeoutMs=3000`);
    const read = await v.nextDecoded<SensorReadMessage>(Cmd.SENSOR_READ);
    expect(read.channel).toBe(7);
    v.send(
      Cmd.SENSOR_DATA,
      encodeSensorData({ channel: 7, tag: read.tag, status: 0, value: Uint8Array.of(0xbe, 0xef) }),
    );
    expect(await pending).toEqual({
      status: 200,
      body: { channel: 7, status: 'ok', value: 'beef' },
    });

    const p2 = gw.api('GET', `/api/v1/vehicles/${id}/sensors/9`);
    const r2 = await v.nextDecoded<SensorReadMessage>(Cmd.SENSOR_READ);
    v.send(
      Cmd.SENSOR_DATA,
      encodeSensorData({ channel: 9, tag: r2.tag, status: 1, value: new Uint8Array(0) }),
    );
    expect(await p2).toMatchObject({ status: 404, body: { code: 'no_such_channel' } });

    const p3 = gw.api('GET', `/api/v1/vehicles/${id}/sensors/9`);
    const r3 = await v.nextDecoded<SensorReadMessage>(Cmd.SENSOR_READ);
    v.send(
      Cmd.SENSOR_DATA,
      encodeSensorData({ channel: 9, tag: r3.tag, status: 2, value: new Uint8Array(0) }),
    );
    expect(await p3).toMatchObject({ status: 502, body: { code: 'sensor_failure' } });
    v.close();
  });

  it('times out with 504, fails with 409 when the session ends, 404 for never-seen', async () => {
    const id = vin();
    const v = await gw.connected(id);
    expect(await gw.api('GET', `/api/v1/vehicles/${id}/sensors/1?timeoutMs=100`)).toMatchObject({
      status: 504,
      body: { code: 'timeout' },
    });
    const pending = gw.api('GET', `/api/v1/vehicles/${id}/sensors/1?timeoutMs=5000`);
    await v.next(Cmd.SENSOR_READ);
    await v.next(Cmd.SENSOR_READ);
    v.close();
    expect(await pending).toMatchObject({ status: 409, body: { code: 'vehicle_offline' } });
    expect(await gw.api('GET', `/api/v1/vehicles/${id}/sensors/1`)).toMatchObject({
      status: 409,
      body: { code: 'vehicle_offline' },
    });
    expect(await gw.api('GET', `/api/v1/vehicles/NEVER-SEEN-1/sensors/1`)).toMatchObject({
      status: 404,
      body: { code: 'vehicle_not_found' },
    });
  });

  it('refuses a read for a session without command:receive with 409 not_permitted', async () => {
    const id = vin();
    const v = await gw.vehicle();
    await v.connect({ vehicleId: id, token: await gw.token(id, ['telemetry:publish']) });
    expect(await gw.api('GET', `/api/v1/vehicles/${id}/sensors/1`)).toMatchObject({
      status: 409,
      body: { code: 'not_permitted' },
    });
    v.close();
  });
});

describe('results after EXPIRES_AT', () => {
  it('ignores a final COMMAND_ACK that arrives after the command expired: it stays expired', async () => {
    const id = vin();
    const v = await gw.connected(id);
    const c = await post(id, { name: 'short', ttlMs: 300 });
    const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
    await new Promise((r) => setTimeout(r, 400));
    ack(v, cmd.seq, CommandResult.SUCCEEDED, '{"late":true}');
    await eventually(async () => (await command(c.id)).status === 'expired', 5_000);
    expect((await command(c.id)).result).toBeNull();
    v.close();
  });
});
