// Timers and session ends over real sockets: CONNECT timeout, keepalive, frame timeout, token expiry, registration, revoke, kick, shutdown.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Cmd,
  ConnackStatus,
  DisconnectReason,
  encodeFrame,
  fromHex,
  type DisconnectMessage,
} from '../../src/protocol/index.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({
    connectTimeoutMs: '400',
    frameTimeoutMs: '300',
    tokenRenewBeforeMs: '0',
  });
});
afterAll(async () => {
  await gw.stop();
});

let n = 0;
const vin = (): string => `VIN-LIFE-${++n}`;

describe('timers', () => {
  it('closes a connection that sends no CONNECT within the connect timeout, without DISCONNECT', async () => {
    const v = await gw.vehicle();
    await v.waitClosed(3_000);
    expect(v.inbox).toEqual([]);
  });

  it('sends DISCONNECT KEEPALIVE_TIMEOUT after 1.5 × keepalive without a valid frame', async () => {
    const v = await gw.connected(vin(), { keepalive: 1 });
    const started = Date.now();
    expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT, 4_000)).reason).toBe(
      DisconnectReason.KEEPALIVE_TIMEOUT,
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
    await v.waitClosed();
  });

  it('garbage does not count as traffic for keepalive', async () => {
    const v = await gw.connected(vin(), { keepalive: 1 });
    const timer = setInterval(() => v.sendRaw(Uint8Array.of(0x00)), 200);
    try {
      expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT, 4_000)).reason).toBe(
        DisconnectReason.KEEPALIVE_TIMEOUT,
      );
    } finally {
      clearInterval(timer);
    }
  });

  it('discards an incomplete frame after the frame timeout and decodes a frame hidden inside it', async () => {
    const v = await gw.connected(vin());
    // A TELEMETRY header claiming 128 bytes, then a complete PING inside its body, then silence.
    v.sendRaw(Buffer.concat([fromHex('552080'), encodeFrame(Cmd.PING, fromHex('aa'))]));
    const pong = await v.next(Cmd.PONG, 3_000);
    expect(Buffer.from(pong.data).toString('hex')).toBe('aa');
    v.close();
  });

  it('ends a session with DISCONNECT AUTH_EXPIRED when its token expires', async () => {
    const id = vin();
    // exp 29 s ago: accepted within the 30 s leeway, expiring a second later.
    const token = await gw.tokens.sign({
      subject: id,
      scopes: ['telemetry:publish'],
      ttlMs: 30_000,
      nowMs: Date.now() - 59_000,
    });
    const v = await gw.vehicle();
    expect((await v.connect({ vehicleId: id, token })).status).toBe(ConnackStatus.ACCEPTED);
    expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT, 4_000)).reason).toBe(
      DisconnectReason.AUTH_EXPIRED,
    );
  });
});

describe('token renewal', () => {
  it('answers a CONNECT whose token nears expiry with a fresh TOKEN in CONNACK, and keeps the session', async () => {
    const own = await startGateway({ tokenRenewBeforeMs: '1h' });
    try {
      const id = 'VIN-RENEW-1';
      const token = await own.tokens.sign({
        subject: id,
        scopes: ['telemetry:publish'],
        ttlMs: 600_000,
        nowMs: Date.now(),
      });
      const v = await own.vehicle();
      const ack = await v.connect({ vehicleId: id, token });
      expect(ack.status).toBe(ConnackStatus.ACCEPTED);
      expect(ack.token).toBeDefined();
      const fresh = await own.tokens.verify(ack.token!, Date.now());
      expect(
        fresh.ok && fresh.token.subject === id && fresh.token.expiresAtMs > Date.now() + 3600_000,
      ).toBe(true);
      v.close();
    } finally {
      await own.stop();
    }
  });
});

describe('registration and devices', () => {
  it('registers with CREDENTIAL, issues a token the vehicle can use next time', async () => {
    const id = vin();
    expect(
      (
        await gw.api('POST', '/api/v1/devices', {
          id,
          secret: 's3cret',
          scopes: ['telemetry:publish'],
        })
      ).status,
    ).toBe(201);
    const v = await gw.vehicle();
    const ack = await v.connect({ vehicleId: id, credential: new TextEncoder().encode('s3cret') });
    expect(ack.status).toBe(ConnackStatus.ACCEPTED);
    expect(ack.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    v.close();
    const v2 = await gw.vehicle();
    expect((await v2.connect({ vehicleId: id, token: ack.token })).status).toBe(
      ConnackStatus.ACCEPTED,
    );
    v2.close();
    const v3 = await gw.vehicle();
    expect(
      (await v3.connect({ vehicleId: id, credential: new TextEncoder().encode('wrong') })).status,
    ).toBe(ConnackStatus.BAD_CREDENTIALS);
    const v4 = await gw.vehicle();
    expect(
      (await v4.connect({ vehicleId: vin(), credential: new TextEncoder().encode('s3cret') }))
        .status,
    ).toBe(ConnackStatus.BAD_CREDENTIALS);
  });

  it('revoking a device kicks its session (DISCONNECT KICKED) and refuses its CONNECTs with FORBIDDEN, token or not', async () => {
    const id = vin();
    await gw.api('POST', '/api/v1/devices', { id, secret: 'pw', scopes: ['telemetry:publish'] });
    const v = await gw.connected(id);
    expect((await gw.api('DELETE', `/api/v1/devices/${id}`)).status).toBe(200);
    expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
      DisconnectReason.KICKED,
    );
    const v2 = await gw.vehicle();
    expect((await v2.connect({ vehicleId: id, token: await gw.token(id) })).status).toBe(
      ConnackStatus.FORBIDDEN,
    );
    const v3 = await gw.vehicle();
    expect(
      (await v3.connect({ vehicleId: id, credential: new TextEncoder().encode('pw') })).status,
    ).toBe(ConnackStatus.FORBIDDEN);
  });

  it('kicks a live session through the API', async () => {
    const id = vin();
    const v = await gw.connected(id);
    expect((await gw.api('POST', `/api/v1/vehicles/${id}/disconnect`)).status).toBe(200);
    expect((await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT)).reason).toBe(
      DisconnectReason.KICKED,
    );
    await v.waitClosed();
    expect((await gw.api('POST', `/api/v1/vehicles/${id}/disconnect`)).status).toBe(409);
  });
});

describe('shutdown', () => {
  it('sends DISCONNECT SHUTDOWN with REDIRECT to every session and refuses new connections', async () => {
    const own = await startGateway({ redirect: '127.0.0.1:7999' });
    const v = await own.connected('VIN-SHUTDOWN-1');
    const stopping = own.stop();
    const d = await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT);
    expect(d).toMatchObject({ reason: DisconnectReason.SHUTDOWN, redirect: '127.0.0.1:7999' });
    await v.waitClosed();
    await stopping;
  });
});
