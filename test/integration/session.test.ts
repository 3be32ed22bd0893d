// Sessions over real sockets: CONNECT checks, heartbeat, dispatch, bad input, takeover (PROTOCOL.md 1.1, 2, 6).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AckStatus,
  Cmd,
  ConnackStatus,
  DisconnectReason,
  ErrorCode,
  encodeConnect,
  encodeFrame,
  encodeTelemetry,
  fromHex,
  type DisconnectMessage,
  type ErrorMessage,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw.stop();
});

let n = 0;
const vin = (): string => `VIN-SESSION-${++n}`;

describe('CONNECT', () => {
  it('accepts a valid token: CONNACK with session id, keepalive, NEXT_UPLINK_SEQ and server time', async () => {
    const v = await gw.vehicle();
    const id = vin();
    const ack = await v.connect({ vehicleId: id, token: await gw.token(id), keepalive: 30 });
    expect(ack.status).toBe(ConnackStatus.ACCEPTED);
    expect(ack.version).toBe(2);
    expect(ack.keepalive).toBe(30);
    expect(ack.nextUplinkSeq).toBe(1);
    expect(typeof ack.sessionId).toBe('string');
    expect(Math.abs(ack.serverTime! - Date.now())).toBeLessThan(60_000);
    v.close();
  });

  it('negotiates the highest common version and clamps keepalive', async () => {
    const v = await gw.vehicle();
    const id = vin();
    const ack = await v.connect({
      vehicleId: id,
      token: await gw.token(id),
      versionMin: 1,
      versionMax: 1,
      keepalive: 0,
    });
    expect(ack.version).toBe(1);
    expect(ack.keepalive).toBe(60);
    v.close();
    const v2 = await gw.vehicle();
    const ack2 = await v2.connect({
      vehicleId: id,
      token: await gw.token(id),
      versionMin: 1,
      versionMax: 9,
      keepalive: 65_000,
    });
    expect(ack2.version).toBe(2);
    expect(ack2.keepalive).toBe(3600);
    v2.close();
  });

  it.each([
    ['no credentials', {}, ConnackStatus.BAD_CREDENTIALS],
    ['a garbage token', { token: 'not.a.jwt' }, ConnackStatus.BAD_CREDENTIALS],
    ['unsupported versions', { versionMin: 3, versionMax: 4 }, ConnackStatus.UNSUPPORTED_VERSION],
    ['min > max', { versionMin: 2, versionMax: 1 }, ConnackStatus.INVALID],
    [
      'token and credential',
      { token: 'a.b.c', credential: new Uint8Array([1]) },
      ConnackStatus.INVALID,
    ],
  ])('refuses %s and closes', async (_name, extra, status) => {
    const v = await gw.vehicle();
    const ack = await v.connect({ vehicleId: vin(), ...extra });
    expect(ack.status).toBe(status);
    expect(ack.version).toBe(0);
    await v.waitClosed();
  });

  it('refuses a token for another vehicle with FORBIDDEN', async () => {
    const v = await gw.vehicle();
    const ack = await v.connect({ vehicleId: vin(), token: await gw.token('SOMEONE-ELSE') });
    expect(ack.status).toBe(ConnackStatus.FORBIDDEN);
    await v.waitClosed();
  });

  it('refuses an expired token with BAD_CREDENTIALS', async () => {
    const id = vin();
    const expired = await gw.tokens.sign({
      subject: id,
      scopes: [],
      ttlMs: 60_000,
      nowMs: Date.now() - 600_000,
    });
    const v = await gw.vehicle();
    expect((await v.connect({ vehicleId: id, token: expired })).status).toBe(
      ConnackStatus.BAD_CREDENTIALS,
    );
  });

  it('answers a frame before CONNECT with ERROR NOT_CONNECTED and closes', async () => {
    const v = await gw.vehicle();
    v.send(Cmd.PING);
    const err = await v.nextDecoded<ErrorMessage>(Cmd.ERROR);
    expect(err).toMatchObject({ code: ErrorCode.NOT_CONNECTED, refCmd: Cmd.PING });
    await v.waitClosed();
  });

  it('answers a malformed CONNECT with CONNACK INVALID', async () => {
    const v = await gw.vehicle();
    v.send(Cmd.CONNECT, fromHex('00000000'));
    expect((await v.nextDecoded<{ status: number }>(Cmd.CONNACK)).status).toBe(
      ConnackStatus.INVALID,
    );
    await v.waitClosed();
  });

  it('takes garbage and bad frames before CONNECT without closing', async () => {
    const v = await gw.vehicle();
    v.sendRaw(fromHex('0011223355030201004200'));
    const id = vin();
    const ack = await v.connect({ vehicleId: id, token: await gw.token(id) });
    expect(ack.status).toBe(ConnackStatus.ACCEPTED);
    expect((await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).code).toBe(ErrorCode.INVALID_FRAME);
    v.close();
  });

  it('a frame breaking a CONNECT run: ERROR INVALID_FRAME (REF_CMD CONNECT), then NOT_CONNECTED for it and close', async () => {
    // 1.2 first (the run is broken), then 2 (the interrupting PING is not a CONNECT).
    const v = await gw.vehicle();
    const id = vin();
    const connect = encodeConnect({ versionMin: 1, versionMax: 2, vehicleId: id, token: 'x' });
    v.sendRaw(encodeFrame(Cmd.CONNECT | 0x80, connect.subarray(0, 20)));
    v.send(Cmd.PING);
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.INVALID_FRAME,
      refCmd: Cmd.CONNECT,
    });
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.NOT_CONNECTED,
      refCmd: Cmd.PING,
    });
    await v.waitClosed();
  });

  it('accepts a long token fragmented over several frames', async () => {
    const id = vin();
    const token = await gw.tokens.sign({
      subject: id,
      scopes: ['telemetry:publish'],
      ttlMs: 3600_000,
      nowMs: Date.now(),
    });
    const padded = `${token}`;
    const v = await gw.vehicle();
    const data = encodeConnect({
      versionMin: 1,
      versionMax: 2,
      vehicleId: id,
      token: padded,
      clientInfo: 'x'.repeat(128),
    });
    expect(data.length).toBeGreaterThan(255);
    const ack = await v.connect({ vehicleId: id, token: padded, clientInfo: 'x'.repeat(128) });
    expect(ack.status).toBe(ConnackStatus.ACCEPTED);
    v.close();
  });

  it('processes messages pipelined behind CONNECT in order after the CONNACK', async () => {
    const id = vin();
    const v = await gw.vehicle();
    const connect = encodeConnect({
      versionMin: 1,
      versionMax: 2,
      vehicleId: id,
      token: await gw.token(id),
    });
    const { encodeMessage } = await import('../../src/protocol/index.js');
    v.sendRaw(
      Buffer.concat([
        encodeMessage(Cmd.CONNECT, connect),
        encodeMessage(Cmd.PING, fromHex('0102')),
      ]),
    );
    expect((await v.nextDecoded<{ status: number }>(Cmd.CONNACK)).status).toBe(0);
    expect(Buffer.from((await v.next(Cmd.PONG)).data).toString('hex')).toBe('0102');
    v.close();
  });
});

describe('connected session', () => {
  it('answers PING with PONG echoing DATA, and rejects PING over 8 bytes', async () => {
    const v = await gw.connected(vin());
    v.send(Cmd.PING, fromHex('0000019ab697e800'));
    expect(Buffer.from((await v.next(Cmd.PONG)).data).toString('hex')).toBe('0000019ab697e800');
    v.send(Cmd.PING, new Uint8Array(9));
    expect((await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).code).toBe(ErrorCode.INVALID_DATA);
    v.close();
  });

  it('answers an unregistered command with ERROR UNKNOWN_COMMAND and stays open', async () => {
    const v = await gw.connected(vin());
    v.send(0x7e, fromHex('00'));
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.UNKNOWN_COMMAND,
      refCmd: 0x7e,
    });
    v.send(Cmd.PING);
    await v.next(Cmd.PONG);
    v.close();
  });

  it('treats QUERY as unknown in a version 1 session and answers it in version 2', async () => {
    const id = vin();
    const v1 = await gw.vehicle();
    await v1.connect({ vehicleId: id, token: await gw.token(id), versionMax: 1 });
    v1.send(Cmd.QUERY, fromHex('01'));
    expect((await v1.nextDecoded<ErrorMessage>(Cmd.ERROR)).code).toBe(ErrorCode.UNKNOWN_COMMAND);
    v1.close();
    const v2 = await gw.connected(vin());
    v2.send(Cmd.QUERY, fromHex('03'));
    const r = await v2.nextDecoded<{
      query: number;
      status: number;
      sessionId: string;
      keepalive: number;
    }>(Cmd.QUERY_RESULT);
    expect(r).toMatchObject({ query: 3, status: 0, keepalive: 60 });
    v2.send(Cmd.QUERY, fromHex('77'));
    expect(await v2.nextDecoded(Cmd.QUERY_RESULT)).toMatchObject({ query: 0x77, status: 1 });
    v2.close();
  });

  it('answers a second CONNECT with DISCONNECT PROTOCOL_ERROR and closes', async () => {
    const id = vin();
    const v = await gw.connected(id);
    v.send(
      Cmd.CONNECT,
      encodeConnect({ versionMin: 1, versionMax: 2, vehicleId: id, token: await gw.token(id) }),
    );
    expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
      DisconnectReason.PROTOCOL_ERROR,
    );
    await v.waitClosed();
  });

  it('rate-limits ERROR INVALID_FRAME and disconnects at the 16th bad frame', async () => {
    const v = await gw.connected(vin());
    const bad = fromHex('550302010042b2');
    for (let i = 0; i < 15; i++) v.sendRaw(bad);
    v.send(Cmd.PING);
    await v.next(Cmd.PONG);
    const errors = v.inbox.filter((m) => m.code === Cmd.ERROR).length;
    expect(errors).toBe(1);
    v.sendRaw(bad);
    expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
      DisconnectReason.PROTOCOL_ERROR,
    );
    await v.waitClosed();
  });

  it('disconnects at the 4,096th garbage byte', async () => {
    const v = await gw.connected(vin());
    v.sendRaw(new Uint8Array(4095).fill(0x11));
    v.send(Cmd.PING);
    await v.next(Cmd.PONG);
    v.sendRaw(Uint8Array.of(0x11));
    expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
      DisconnectReason.PROTOCOL_ERROR,
    );
    await v.waitClosed();
  });

  it('counts garbage over a sliding window: bytes stay in it for the whole window, then leave', async () => {
    // 1.1 "any sliding 60 s window", here 2 s. The bytes are sent late in a wall-clock second, so
    // a count kept per whole second would forget them up to a second early.
    const small = await startGateway({ badInputWindowMs: 2_000 });
    try {
      const lateInSecond = async () => {
        while (Date.now() % 1000 < 850) await new Promise((r) => setTimeout(r, 10));
      };
      const a = await small.connected(vin());
      await lateInSecond();
      a.sendRaw(new Uint8Array(4095).fill(0x11));
      a.send(Cmd.PING);
      await a.next(Cmd.PONG);
      await new Promise((r) => setTimeout(r, 1_300)); // into the second after next, within 2 s
      a.sendRaw(Uint8Array.of(0x11));
      expect((await a.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
        DisconnectReason.PROTOCOL_ERROR,
      );
      await a.waitClosed();

      const b = await small.connected(vin());
      b.sendRaw(new Uint8Array(4095).fill(0x11));
      b.send(Cmd.PING);
      await b.next(Cmd.PONG);
      await new Promise((r) => setTimeout(r, 2_100)); // out of the window
      b.sendRaw(Uint8Array.of(0x11));
      b.send(Cmd.PING);
      await b.next(Cmd.PONG);
      expect(b.inbox.some((m) => m.code === Cmd.DISCONNECT)).toBe(false);
      b.close();
    } finally {
      await small.stop();
    }
  });

  it('reports a broken fragment run with ERROR INVALID_FRAME naming the interrupted code', async () => {
    const v = await gw.connected(vin());
    v.sendRaw(encodeFrame(Cmd.TELEMETRY | 0x80, new Uint8Array(10)));
    v.send(Cmd.PING);
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.INVALID_FRAME,
      refCmd: Cmd.TELEMETRY,
    });
    await v.next(Cmd.PONG);
    v.close();
  });

  it('sends ERROR TOO_LARGE, then DISCONNECT PROTOCOL_ERROR, when a message passes the limit', async () => {
    const v = await gw.connected(vin());
    const chunk = encodeFrame(Cmd.EVENT | 0x80, new Uint8Array(255));
    for (let i = 0; i < 65; i++) v.sendRaw(chunk);
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.TOO_LARGE,
      refCmd: Cmd.EVENT,
    });
    expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
      DisconnectReason.PROTOCOL_ERROR,
    );
    await v.waitClosed();
  });

  it('closes the old session with DISCONNECT TAKEN_OVER before the new CONNACK', async () => {
    const id = vin();
    const a = await gw.connected(id);
    a.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: Date.now() }));
    await a.next(Cmd.UPLINK_ACK);
    const b = await gw.vehicle();
    const ack = await b.connect({ vehicleId: id, token: await gw.token(id) });
    expect(ack.status).toBe(0);
    expect(ack.nextUplinkSeq).toBe(2);
    expect((await a.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
      DisconnectReason.TAKEN_OVER,
    );
    await a.waitClosed();
    b.close();
  });

  it('shuts the old connection (its FIN is out) before it writes the new CONNACK', async () => {
    // PROTOCOL.md 2: "closed before the new one gets its CONNACK". Watched on the gateway's side of
    // the old connection: 'finish' is emitted once its shutdown (FIN) completed.
    const id = vin();
    const a = await gw.connected(id);
    const where = await gw.app.gateway.locate(id);
    if (where === undefined || !('local' in where)) throw new Error('session not found');
    const order: string[] = [];
    where.local.stream.once('finish', () => order.push('old shut'));
    const b = await gw.vehicle();
    const ack = await b.connect({ vehicleId: id, token: await gw.token(id) });
    order.push('new CONNACK');
    expect(ack.status).toBe(ConnackStatus.ACCEPTED);
    expect(order).toEqual(['old shut', 'new CONNACK']);
    await a.waitClosed();
    b.close();
  });

  it('keeps NEXT_UPLINK_SEQ exact when a takeover races uplink in flight', async () => {
    const id = vin();
    const a = await gw.connected(id);
    for (let seq = 1; seq <= 50; seq++)
      a.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: Date.now() }));
    const b = await gw.vehicle();
    const ack = await b.connect({ vehicleId: id, token: await gw.token(id) });
    const acked = a.inbox
      .filter((m) => m.code === Cmd.UPLINK_ACK)
      .map((m) => Buffer.from(m.data).readUInt32BE(0));
    const stored = (await gw.api('GET', `/api/v1/vehicles/${id}`)).body as {
      lastUplinkSeq: number;
    };
    expect(ack.nextUplinkSeq).toBe(stored.lastUplinkSeq + 1);
    for (const s of acked) expect(s).toBeLessThan(ack.nextUplinkSeq!);
    b.close();
  });
});

describe('uplink (3.2)', () => {
  it('stores, dedups and orders: STORED, DUPLICATE, OUT_OF_ORDER with the expected seq', async () => {
    const id = vin();
    const v = await gw.connected(id);
    v.send(
      Cmd.TELEMETRY,
      encodeTelemetry({ seq: 1, timestamp: 1764000000000, latitude: 312304000, speed: 653 }),
    );
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 1,
      status: AckStatus.STORED,
    });
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: 1764000000000 }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 1,
      status: AckStatus.DUPLICATE,
    });
    v.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 5, timestamp: 1764000000000 }));
    expect(await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
      seq: 2,
      status: AckStatus.OUT_OF_ORDER,
    });
    const res = await gw.api('GET', `/api/v1/vehicles/${id}/uplink`);
    expect(res.status).toBe(200);
    const items = (
      res.body as { items: { seq: number; data: Record<string, unknown>; traceparent: string }[] }
    ).items;
    expect(items.map((r) => r.seq)).toEqual([1]);
    expect(items[0]!.data).toEqual({ latitude: 31.2304, speedKmh: 65.3 });
    expect(items[0]!.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    v.close();
  });
});

describe('bad DATA of every command gets ERROR INVALID_DATA and the session stays open (1.3, 4, 5)', () => {
  it.each([
    ['QUERY of two bytes', Cmd.QUERY, '0102'],
    ['QUERY of no byte', Cmd.QUERY, ''],
    ['COMMAND_ACK shorter than 5 bytes', Cmd.COMMAND_ACK, '00000001'],
    ['COMMAND_ACK with a TLV past the end', Cmd.COMMAND_ACK, '0000000100' + '01000000ff00'],
    ['SENSOR_DATA shorter than 3 bytes', Cmd.SENSOR_DATA, '0101'],
    ['EVENT shorter than SEQ', Cmd.EVENT, '000000'],
  ])('%s', async (_name, code, hex) => {
    const v = await gw.connected(vin());
    v.send(code, fromHex(hex));
    expect(await v.nextDecoded<ErrorMessage>(Cmd.ERROR)).toMatchObject({
      code: ErrorCode.INVALID_DATA,
      refCmd: code,
    });
    v.send(Cmd.PING);
    await v.next(Cmd.PONG);
    v.close();
  });

  it("a vehicle's ERROR changes nothing; its DISCONNECT makes the gateway close without answering", async () => {
    const id = vin();
    const v = await gw.connected(id);
    v.send(Cmd.ERROR, fromHex('0900'));
    v.send(Cmd.PING);
    await v.next(Cmd.PONG);
    v.send(Cmd.DISCONNECT, fromHex('00'));
    await v.waitClosed();
    expect(v.inbox).toEqual([]);
    expect((await gw.api('GET', `/api/v1/vehicles/${id}`)).body).toMatchObject({
      online: false,
      session: null,
    });
  });
});
