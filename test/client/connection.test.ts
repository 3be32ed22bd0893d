// VehicleClient session lifecycle: CONNECT, backoff (PROTOCOL.md 7), RETRY_AFTER_MS, REDIRECT, fatal refusals, keepalive (2.4), stop.
import { describe, expect, it } from 'vitest';
import {
  ConnackStatus,
  ConnectRefusedError,
  DisconnectReason,
  MemoryOutbox,
  NotConnectedError,
  Query,
  UplinkGapError,
  backoffDelay,
  parseGateway,
  type DisconnectedInfo,
} from '../../src/client/index.js';
import { Cmd, decodeDisconnect, decodeUtf8, encodeQueryResult } from '../../src/protocol/index.js';
import { nextEvent, seededRandom, settle } from './peer.js';
import { connected, setup } from './setup.js';

describe('backoffDelay (PROTOCOL.md 7)', () => {
  it('is min(cap, base × 2^attempt) × random(0.5, 1.0)', () => {
    const o = { baseMs: 1000, capMs: 60_000 };
    expect(backoffDelay(0, o, 0)).toBe(500);
    expect(backoffDelay(0, o, 0.999_999)).toBe(1000);
    expect(backoffDelay(3, o, 0.5)).toBe(6000);
    expect(backoffDelay(6, o, 0)).toBe(30_000); // 64 s capped to 60 s
    expect(backoffDelay(1000, o, 0)).toBe(30_000);
  });
});

describe('parseGateway', () => {
  it('reads host:port and [v6]:port, and names a bad address', () => {
    expect(parseGateway('gw.example:7000')).toEqual({ host: 'gw.example', port: 7000 });
    expect(parseGateway('[::1]:7001')).toEqual({ host: '::1', port: 7001 });
    expect(() => parseGateway('nope')).toThrow(/host:port/);
    expect(() => parseGateway('h:0')).toThrow(/host:port/);
  });
});

describe('VehicleClient connect', () => {
  it('sends CONNECT with its options and reports the session', async () => {
    const h = setup({ clientInfo: 'sdk-test/1', keepaliveS: 30 });
    h.client.start();
    expect(h.client.state).toBe('connecting');
    const peer = await h.net.nextPeer();
    const event = nextEvent(h.client, 'connected');
    const c = await peer.accept({ keepalive: 20, nextUplinkSeq: 1, sessionId: 'abc' });
    expect(c).toMatchObject({
      versionMin: 1,
      versionMax: 2,
      vehicleId: 'VIN00000000000001',
      token: 'test-token',
      keepalive: 30,
      lastCommandSeq: 0,
      clientInfo: 'sdk-test/1',
    });
    expect(c.credential).toBeUndefined();
    expect(await event).toEqual({
      sessionId: 'abc',
      version: 2,
      nextUplinkSeq: 1,
      keepalive: 20,
      gateway: 'gw-a:7000',
    });
    expect(h.client.state).toBe('connected');
  });

  it('rejects bad options at construction', () => {
    expect(() => setup({ vehicleId: 'bad id' })).toThrow(/vehicleId/);
    expect(() => setup({ gateways: [] })).toThrow(/gateways/);
    expect(() => setup({ token: undefined })).toThrow(/token or credential/);
    // 2.1: KEEPALIVE is a u16, CLIENT_INFO at most 128 bytes (a gateway answers INVALID otherwise).
    for (const keepaliveS of [70_000, -5, 1.5])
      expect(() => setup({ keepaliveS })).toThrow(/keepaliveS/);
    expect(() => setup({ clientInfo: 'x'.repeat(129) })).toThrow(/clientInfo/);
    expect(() => setup({ clientInfo: 'é'.repeat(65) })).toThrow(/clientInfo/); // 130 bytes
    expect(() => setup({ keepaliveS: 65_535, clientInfo: 'x'.repeat(128) })).not.toThrow();
  });
});

describe('VehicleClient reconnect (PROTOCOL.md 7)', () => {
  it('backs off min(cap, base × 2^attempt) × random(0.5, 1) with seeded jitter, rotating gateways', async () => {
    const expected = seededRandom(42);
    const h = setup({
      gateways: ['a:1', 'b:2', 'c:3'],
      random: seededRandom(42),
      reconnect: { baseMs: 1000, capMs: 60_000 },
    });
    h.client.start();
    const delays: number[] = [];
    for (let attempt = 0; attempt < 9; attempt++) {
      const peer = await h.net.nextPeer();
      const disc = nextEvent(h.client, 'disconnected');
      peer.close(); // refused before CONNACK
      const info = await disc;
      const want = Math.round(Math.min(60_000, 1000 * 2 ** attempt) * (0.5 + 0.5 * expected()));
      expect(info.willRetryInMs).toBe(want);
      expect(info.wasConnected).toBe(false);
      expect(h.client.state).toBe('waiting');
      delays.push(want);
      // Nothing dials before the delay has passed.
      h.timers.advance(want - 1);
      await settle();
      expect(h.net.dials).toHaveLength(attempt + 1);
      h.timers.advance(1);
    }
    await h.net.nextPeer();
    expect(delays.slice(6).every((d) => d >= 30_000 && d <= 60_000)).toBe(true);
    expect(h.net.dials).toEqual([
      'a:1',
      'b:2',
      'c:3',
      'a:1',
      'b:2',
      'c:3',
      'a:1',
      'b:2',
      'c:3',
      'a:1',
    ]);
  });

  it('resets the attempt count after a session that lasted 60 s, not after a shorter one', async () => {
    const h = setup(); // random 0: delays are base × 2^attempt × 0.5
    h.client.start();
    const retries: number[] = [];
    h.client.on('disconnected', (d) => retries.push(d.willRetryInMs ?? -1));
    for (let i = 0; i < 2; i++) {
      (await h.net.nextPeer()).close();
      await settle();
      h.timers.runNext();
    }
    expect(retries).toEqual([500, 1000]);
    // A 59 s session: no reset.
    let peer = await h.net.nextPeer();
    await peer.accept({ keepalive: 3600 });
    await settle();
    h.timers.advance(59_000);
    peer.close();
    await settle();
    expect(retries.at(-1)).toBe(2000);
    h.timers.runNext();
    // A 60 s session: the next wait starts again at attempt 0.
    peer = await h.net.nextPeer();
    await peer.accept({ keepalive: 3600 });
    await settle();
    h.timers.advance(60_000);
    peer.close();
    await settle();
    expect(retries.at(-1)).toBe(500);
  });

  it('honours CONNACK SERVER_BUSY RETRY_AFTER_MS and REDIRECT, then resumes the rotation', async () => {
    const h = setup({ gateways: ['a:1', 'b:2'] });
    h.client.start();
    const peer = await h.net.nextPeer();
    const disc = nextEvent(h.client, 'disconnected');
    await peer.connect();
    peer.connack({
      status: ConnackStatus.SERVER_BUSY,
      version: 0,
      retryAfterMs: 7000,
      redirect: 'other.example:9000',
      reason: 'draining',
    });
    const info = await disc;
    expect(info).toMatchObject({
      connackStatus: ConnackStatus.SERVER_BUSY,
      message: 'draining',
      willRetryInMs: 7000,
    });
    h.timers.advance(6999);
    await settle();
    expect(h.net.dials).toEqual(['a:1']);
    h.timers.advance(1);
    const redirected = await h.net.nextPeer();
    expect(redirected.target).toBe('other.example:9000');
    redirected.close();
    await settle();
    h.timers.runNext();
    await h.net.nextPeer();
    expect(h.net.dials).toEqual(['a:1', 'other.example:9000', 'b:2']);
    expect(h.errors).toEqual([]);
  });

  it('honours DISCONNECT RETRY_AFTER_MS and REDIRECT after a session', async () => {
    const h = setup({ gateways: ['a:1'] });
    const peer = await connected(h);
    const disc = nextEvent(h.client, 'disconnected');
    peer.disconnect({
      reason: DisconnectReason.SHUTDOWN,
      redirect: 'b.example:7100',
      retryAfterMs: 2500,
    });
    expect(await disc).toMatchObject({
      reason: DisconnectReason.SHUTDOWN,
      willRetryInMs: 2500,
      wasConnected: true,
    });
    h.timers.advance(2500);
    const next = await h.net.nextPeer();
    expect(next.target).toBe('b.example:7100');
  });

  it.each([
    ['BAD_CREDENTIALS', ConnackStatus.BAD_CREDENTIALS],
    ['FORBIDDEN', ConnackStatus.FORBIDDEN],
    ['INVALID', ConnackStatus.INVALID],
    ['UNSUPPORTED_VERSION', ConnackStatus.UNSUPPORTED_VERSION],
  ])('stops retrying after CONNACK %s and emits the error', async (_name, status) => {
    const h = setup();
    h.client.start();
    const peer = await h.net.nextPeer();
    await peer.connect();
    const disc = nextEvent(h.client, 'disconnected');
    peer.connack({ status, version: 0, reason: 'no' });
    const info: DisconnectedInfo = await disc;
    expect(info.willRetryInMs).toBeUndefined();
    expect(info.connackStatus).toBe(status);
    expect(h.client.state).toBe('closed');
    expect(h.errors).toHaveLength(1);
    expect(h.errors[0]).toBeInstanceOf(ConnectRefusedError);
    expect(h.errors[0]).toMatchObject({ status, fatal: true, code: 'VMCP_CLIENT_CONNECT_REFUSED' });
    expect(h.timers.pending()).toEqual([]);
  });

  it('a CONNACK it cannot read ends the attempt (ERROR INVALID_DATA) and retries with backoff', async () => {
    const h = setup({ connectTimeoutMs: 5000 });
    h.client.start();
    const peer = await h.net.nextPeer();
    await peer.connect();
    const disc = nextEvent(h.client, 'disconnected');
    peer.send(Cmd.CONNACK, Uint8Array.of(0)); // 1 byte: no VERSION
    expect(await disc).toMatchObject({ message: 'malformed CONNACK', willRetryInMs: 500 });
    h.timers.advance(500);
    await (await h.net.nextPeer()).connect();
  });

  it('retries a connection that gets no CONNACK within connectTimeoutMs', async () => {
    const h = setup({ connectTimeoutMs: 5000 });
    h.client.start();
    await h.net.nextPeer();
    const disc = nextEvent(h.client, 'disconnected');
    h.timers.advance(5000);
    expect(await disc).toMatchObject({ message: 'no CONNACK in time', willRetryInMs: 500 });
  });
});

describe('VehicleClient registration (PROTOCOL.md 2.3)', () => {
  it('sends CREDENTIAL, stores the issued token and uses it next time', async () => {
    const h = setup({ token: undefined, credential: 'secret-1' });
    h.client.start();
    let peer = await h.net.nextPeer();
    const token = nextEvent(h.client, 'token');
    const c = await peer.accept({ token: 'issued.jwt.1' });
    expect(c.token).toBeUndefined();
    expect(decodeUtf8(c.credential!, 0, c.credential!.length)).toBe('secret-1');
    expect(await token).toBe('issued.jwt.1');
    expect(h.client.token).toBe('issued.jwt.1');
    peer.close();
    await settle();
    h.timers.runNext();
    peer = await h.net.nextPeer();
    const c2 = await peer.connect();
    expect(c2.token).toBe('issued.jwt.1');
    expect(c2.credential).toBeUndefined();
    // The issued token is refused (expired): forget it and register again at once.
    const disc = nextEvent(h.client, 'disconnected');
    peer.connack({ status: ConnackStatus.BAD_CREDENTIALS, version: 0 });
    expect((await disc).willRetryInMs).toBe(0);
    h.timers.advance(0);
    peer = await h.net.nextPeer();
    const c3 = await peer.connect();
    expect(c3.token).toBeUndefined();
    expect(c3.credential).toBeDefined();
    expect(h.errors).toEqual([]);
  });

  it('calls a token provider on every attempt', async () => {
    let n = 0;
    const h = setup({ token: () => Promise.resolve(`tok-${++n}`) });
    h.client.start();
    let peer = await h.net.nextPeer();
    expect((await peer.connect()).token).toBe('tok-1');
    peer.close();
    await settle();
    h.timers.runNext();
    peer = await h.net.nextPeer();
    expect((await peer.connect()).token).toBe('tok-2');
  });
});

describe('VehicleClient keepalive (PROTOCOL.md 2.4)', () => {
  it('PINGs after KEEPALIVE idle, counts misses, closes and reconnects after 3', async () => {
    const h = setup();
    const peer = await connected(h, { keepalive: 10 });
    const disc = nextEvent(h.client, 'disconnected');
    let pings = 0;
    for (let i = 1; i <= 3; i++) {
      h.timers.advance(9_999);
      await settle();
      expect(peer.codes().filter((c) => c === Cmd.PING)).toHaveLength(pings);
      h.timers.advance(1);
      await settle();
      pings++;
      expect(peer.codes().filter((c) => c === Cmd.PING)).toHaveLength(pings);
    }
    expect(h.client.state).toBe('connected');
    h.timers.advance(10_000); // third interval without PONG
    const info = await disc;
    expect(info.message).toMatch(/no PONG/);
    expect(info.willRetryInMs).toBe(500);
    expect(h.client.state).toBe('waiting');
  });

  it('a PONG clears the misses; traffic postpones the PING; one timer serves every message', async () => {
    const h = setup();
    const peer = await connected(h, { keepalive: 10, version: 1 });
    for (let i = 0; i < 5; i++) {
      h.timers.advance(10_000);
      await peer.next(Cmd.PING);
      peer.send(Cmd.PONG);
      await settle();
    }
    expect(h.client.state).toBe('connected');
    // Publishing at +5 s moves the next PING to +15 s.
    h.timers.advance(5_000);
    const sends = Array.from({ length: 100 }, (_, i) =>
      h.client.publishTelemetry({ timestamp: 1_764_000_000_000 + i }),
    );
    await settle();
    // Still a single keepalive timer, whatever the traffic.
    expect(h.timers.pending()).toHaveLength(1);
    peer.ack(100);
    await Promise.all(sends);
    h.timers.advance(9_999);
    await settle();
    expect(peer.codes()).not.toContain(Cmd.PING);
    h.timers.advance(1);
    await peer.next(Cmd.PING);
  });

  it('PINGs a gateway that answers nothing even while it publishes, and reconnects after 3 misses', async () => {
    // 2.4 asks for a PING after KEEPALIVE without sending; a vehicle that publishes every 2 s never
    // idles, so a gateway that takes the bytes but acks nothing would go unnoticed.
    const h = setup();
    const peer = await connected(h, { keepalive: 10, version: 1 });
    const disc = nextEvent(h.client, 'disconnected');
    const publish = async () => {
      void h.client.publishTelemetry({ timestamp: 1_764_000_000_000 }).catch(() => undefined);
      await settle();
    };
    for (let t = 0; t < 8; t++) {
      h.timers.advance(2_000);
      await publish();
    }
    // 10 s without a byte from the gateway, though the vehicle sent 2 s ago: a PING.
    expect(peer.codes()).toContain(Cmd.PING);
    for (let t = 0; t < 20; t++) {
      h.timers.advance(2_000);
      await publish();
    }
    expect(await disc).toMatchObject({ message: 'no PONG for 3 keepalive intervals' });
  });

  it('answers a gateway PING with PONG echoing its DATA', async () => {
    const h = setup();
    const peer = await connected(h);
    peer.send(Cmd.PING, Uint8Array.of(1, 2, 3));
    expect([...(await peer.next(Cmd.PONG)).data]).toEqual([1, 2, 3]);
  });

  it('answers a PING of more than 8 bytes with ERROR INVALID_DATA and no PONG (2.4)', async () => {
    const h = setup();
    const peer = await connected(h);
    peer.send(Cmd.PING, new Uint8Array(9).fill(1));
    expect([...(await peer.next(Cmd.ERROR)).data.subarray(0, 2)]).toEqual([0x02, Cmd.PING]);
    peer.send(Cmd.PING, new Uint8Array(8).fill(2));
    expect([...(await peer.next(Cmd.PONG)).data]).toEqual(new Array(8).fill(2));
    expect(peer.codes()).not.toContain(Cmd.PONG);
  });
});

describe('VehicleClient stop', () => {
  it('sends DISCONNECT NORMAL, closes and does not reconnect', async () => {
    const h = setup();
    const peer = await connected(h);
    const disc = nextEvent(h.client, 'disconnected');
    await h.client.stop();
    const d = decodeDisconnect((await peer.next(Cmd.DISCONNECT)).data);
    expect(d.reason).toBe(DisconnectReason.NORMAL);
    expect((await disc).willRetryInMs).toBeUndefined();
    await settle();
    expect(peer.closed).toBe(true);
    expect(h.client.state).toBe('idle');
    expect(h.timers.pending()).toEqual([]);
    h.timers.advance(600_000);
    await settle();
    expect(h.net.dials).toHaveLength(1);
  });

  it('stop() while waiting cancels the retry; start() connects again', async () => {
    const h = setup();
    h.client.start();
    (await h.net.nextPeer()).close();
    await settle();
    expect(h.client.state).toBe('waiting');
    await h.client.stop();
    expect(h.timers.pending()).toEqual([]);
    h.client.start();
    await h.net.nextPeer();
    expect(h.net.dials).toHaveLength(2);
  });
});

describe('VehicleClient QUERY (PROTOCOL.md 5)', () => {
  it('answers queries in order in a version 2 session, and refuses without one', async () => {
    const h = setup();
    await expect(h.client.query(Query.SERVER_TIME)).rejects.toBeInstanceOf(NotConnectedError);
    const peer = await connected(h, { version: 2 });
    const a = h.client.query(Query.SERVER_TIME);
    const b = h.client.query(Query.PENDING_COMMANDS);
    expect((await peer.next(Cmd.QUERY)).data[0]).toBe(Query.SERVER_TIME);
    expect((await peer.next(Cmd.QUERY)).data[0]).toBe(Query.PENDING_COMMANDS);
    peer.send(Cmd.QUERY_RESULT, encodeQueryResult({ query: 1, status: 0, serverTime: 123 }));
    peer.send(Cmd.QUERY_RESULT, encodeQueryResult({ query: 2, status: 0, pendingCommands: 4 }));
    expect(await a).toMatchObject({ query: 1, serverTime: 123 });
    expect(await b).toMatchObject({ query: 2, pendingCommands: 4 });
    // A query outstanding when the session ends is rejected.
    const c = h.client.query(Query.SESSION_INFO);
    peer.close();
    await expect(c).rejects.toBeInstanceOf(NotConnectedError);
  });

  it('refuses QUERY in a version 1 session', async () => {
    const h = setup();
    await connected(h, { version: 1 });
    await expect(h.client.query(Query.SERVER_TIME)).rejects.toThrow(/version 2/);
  });
});

describe('VehicleClient framing (PROTOCOL.md 1.1)', () => {
  it('discards an incomplete frame after 2 s without a byte, then decodes what follows', async () => {
    const h = setup();
    const peer = await connected(h, { version: 1 });
    const p = h.client.publishTelemetry({ timestamp: 1_764_000_000_000 });
    await peer.uplink(1);
    // SOF, UPLINK_ACK, LEN 255 and nothing more: without the timeout the decoder would wait for
    // 255 more bytes and the next frame would sit inside that extent.
    peer.socket.write(Uint8Array.of(0x55, 0x22, 0xff, 0x00));
    await settle();
    h.timers.advance(1999);
    await settle();
    h.timers.advance(1);
    peer.ack(1);
    expect(await p).toBe(1);
  });
});

describe('VehicleClient uplink gap', () => {
  it('reports a NEXT_UPLINK_SEQ below what the outbox still holds and retries later', async () => {
    const store = new MemoryOutbox();
    store.append({ seq: 5, kind: 'telemetry', sample: { timestamp: 1 } });
    store.consume(4);
    const h = setup({ outbox: store });
    expect(h.client.nextSeq).toBe(6);
    h.client.start();
    const peer = await h.net.nextPeer();
    const disc = nextEvent(h.client, 'disconnected');
    await peer.accept({ nextUplinkSeq: 3 });
    expect((await disc).willRetryInMs).toBe(500);
    expect(h.errors[0]).toBeInstanceOf(UplinkGapError);
    expect(h.errors[0]).toMatchObject({ expectedSeq: 3, oldestHeldSeq: 5 });
  });
});
