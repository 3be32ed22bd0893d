// Overload and limits over real sockets: connection cap, connect rate, carrier-NAT bursts, failed-auth limit, write backpressure; then the event stream, metrics, OpenAPI and readiness.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.js';
import {
  AckStatus,
  Cmd,
  CommandResult,
  ConnackStatus,
  DisconnectReason,
  encodeCommandAck,
  encodeConnect,
  encodeDisconnect,
  encodeMessage,
  encodeTelemetry,
  type CommandMessage,
  type ConnackMessage,
  type DisconnectMessage,
  type UplinkAckMessage,
} from '../../src/protocol/index.js';
import { ADMIN_TOKEN, startGateway, type TestGateway } from '../helpers/gateway.js';
import { TestVehicle } from '../helpers/vehicle.js';

const T = 1764000000000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs `fn` against a fresh gateway started with `flags`, stopping it whatever happens. */
async function withGateway(
  flags: Record<string, unknown>,
  fn: (gw: TestGateway) => Promise<void>,
): Promise<void> {
  const gw = await startGateway(flags);
  try {
    await fn(gw);
  } finally {
    await gw.stop();
  }
}

/** Polls `cond` every 20 ms for at most `timeoutMs`. */
async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

async function expectPong(v: TestVehicle, payload: string): Promise<void> {
  v.send(Cmd.PING, Buffer.from(payload, 'hex'));
  expect(Buffer.from((await v.next(Cmd.PONG)).data).toString('hex')).toBe(payload);
}

function closeAll(vs: TestVehicle[]): void {
  for (const v of vs) v.close();
}

describe('connection cap (--max-connections)', () => {
  it('refuses the 6th vehicle with SERVER_BUSY and RETRY_AFTER_MS and closes it; the 5 stay up', async () => {
    await withGateway({ maxConnections: '5' }, async (gw) => {
      const vs: TestVehicle[] = [];
      try {
        for (let i = 1; i <= 5; i++) vs.push(await gw.connected(`VIN-CAP-${i}`));
        const sixth = await gw.vehicle();
        vs.push(sixth);
        const ack = await sixth.connect({
          vehicleId: 'VIN-CAP-6',
          token: await gw.token('VIN-CAP-6'),
        });
        expect(ack.status).toBe(ConnackStatus.SERVER_BUSY);
        expect(ack.version).toBe(0);
        expect(ack.retryAfterMs).toBeGreaterThan(0);
        await sixth.waitClosed();
        // Every one of the five still has a working session.
        for (const [i, v] of vs.slice(0, 5).entries()) {
          expect(v.closed).toBe(false);
          await expectPong(v, `0${i}`);
        }
        // A freed slot is usable again.
        vs[0]!.close();
        await until(async () => {
          const r = await gw.api('GET', '/api/v1/vehicles/VIN-CAP-1');
          return (r.body as { online: boolean }).online === false;
        });
        const again = await gw.vehicle();
        vs.push(again);
        expect(
          (await again.connect({ vehicleId: 'VIN-CAP-6', token: await gw.token('VIN-CAP-6') }))
            .status,
        ).toBe(ConnackStatus.ACCEPTED);
      } finally {
        closeAll(vs);
      }
    });
  });
});

describe('connect rate (--connect-rate-per-sec, --connect-burst)', () => {
  it('answers the 4th immediate CONNECT with SERVER_BUSY and RETRY_AFTER_MS', async () => {
    await withGateway({ connectRatePerSec: '1', connectBurst: '3' }, async (gw) => {
      const vs: TestVehicle[] = [];
      try {
        const ids = [1, 2, 3, 4].map((i) => `VIN-RATE-${i}`);
        const connects: Uint8Array[] = [];
        for (const id of ids) {
          vs.push(await gw.vehicle());
          connects.push(
            encodeConnect({
              versionMin: 1,
              versionMax: 2,
              vehicleId: id,
              token: await gw.token(id),
            }),
          );
        }
        // All four CONNECTs leave at once.
        vs.forEach((v, i) => v.send(Cmd.CONNECT, connects[i]!));
        const acks = await Promise.all(vs.map((v) => v.nextDecoded<ConnackMessage>(Cmd.CONNACK)));
        const statuses = acks.map((a) => a.status).sort();
        expect(statuses).toEqual([
          ConnackStatus.ACCEPTED,
          ConnackStatus.ACCEPTED,
          ConnackStatus.ACCEPTED,
          ConnackStatus.SERVER_BUSY,
        ]);
        const busy = vs[acks.findIndex((a) => a.status === ConnackStatus.SERVER_BUSY)]!;
        const busyAck = acks.find((a) => a.status === ConnackStatus.SERVER_BUSY)!;
        expect(busyAck.retryAfterMs).toBeGreaterThan(0);
        await busy.waitClosed();
      } finally {
        closeAll(vs);
      }
    });
  });
});

describe('carrier NAT: many vehicles from one address', () => {
  it('accepts 1,000 vehicles connecting at once from 127.0.0.1 with default settings', async () => {
    await withGateway({}, async (gw) => {
      const COUNT = 1_000;
      const ids = Array.from({ length: COUNT }, (_, i) => `VIN-NAT-${i}`);
      const tokens = await Promise.all(ids.map((id) => gw.token(id)));
      const vs: TestVehicle[] = [];
      try {
        const opened = await Promise.allSettled(ids.map(() => gw.vehicle()));
        for (const o of opened) if (o.status === 'fulfilled') vs.push(o.value);
        expect(vs.length).toBe(COUNT);
        vs.forEach((v, i) =>
          v.send(
            Cmd.CONNECT,
            encodeConnect({ versionMin: 1, versionMax: 2, vehicleId: ids[i]!, token: tokens[i]! }),
          ),
        );
        const acks = await Promise.all(
          vs.map((v) => v.nextDecoded<ConnackMessage>(Cmd.CONNACK, 30_000)),
        );
        const refused = acks.filter((a) => a.status !== ConnackStatus.ACCEPTED);
        expect(refused.map((a) => `${a.status}: ${a.reason}`)).toEqual([]);
        expect(gw.app.gateway.connectedCount).toBe(COUNT);
      } finally {
        closeAll(vs);
      }
      await until(() => gw.app.gateway.all.size === 0, 10_000);
    });
  }, 60_000);
});

describe('failed registrations per address (--auth-failure-limit)', () => {
  it('counts failed CREDENTIALs and then refuses CREDENTIALs with SERVER_BUSY; tokens are never locked out', async () => {
    await withGateway({ authFailureLimit: '3' }, async (gw) => {
      const secret = (s: string) => new TextEncoder().encode(s);
      const register = await gw.api('POST', '/api/v1/devices', {
        id: 'VIN-REG-OK',
        secret: 'right',
        scopes: ['telemetry:publish'],
      });
      expect(register.status).toBe(201);
      const attempt = async (msg: {
        vehicleId: string;
        token?: string;
        credential?: Uint8Array;
      }) => {
        const v = await gw.vehicle();
        const ack = await v.connect(msg);
        v.close();
        return ack;
      };
      // Bad tokens (a vehicle behind the same NAT address with a broken one) do not count.
      for (let i = 1; i <= 5; i++)
        expect(
          (await attempt({ vehicleId: `VIN-BAD-TOKEN-${i}`, token: 'not.a.jwt' })).status,
        ).toBe(ConnackStatus.BAD_CREDENTIALS);
      expect((await attempt({ vehicleId: 'VIN-REG-OK', credential: secret('right') })).status).toBe(
        ConnackStatus.ACCEPTED,
      );
      // Three wrong secrets (a guess at the registered one, or an unregistered id) do.
      for (const [id, guess] of [
        ['VIN-REG-OK', 'wrong1'],
        ['VIN-REG-OK', 'wrong2'],
        ['VIN-UNREGISTERED', 'x'],
      ] as const) {
        expect((await attempt({ vehicleId: id, credential: secret(guess) })).status).toBe(
          ConnackStatus.BAD_CREDENTIALS,
        );
      }
      // Now every CREDENTIAL from this address waits, the right one included…
      const busy = await attempt({ vehicleId: 'VIN-REG-OK', credential: secret('right') });
      expect(busy.status).toBe(ConnackStatus.SERVER_BUSY);
      expect(busy.retryAfterMs).toBeGreaterThan(0);
      expect(busy.retryAfterMs).toBeLessThanOrEqual(60_000);
      // …while a vehicle with a valid token connects as usual.
      expect(
        (await attempt({ vehicleId: 'VIN-TOKEN-OK', token: await gw.token('VIN-TOKEN-OK') }))
          .status,
      ).toBe(ConnackStatus.ACCEPTED);
    });
  });
});

describe('write backpressure (--write-buffer-bytes, --drain-timeout-ms)', () => {
  it('disconnects a vehicle that stops reading while it floods PINGs; others keep working', async () => {
    await withGateway({ writeBufferBytes: '1024', drainTimeoutMs: '500' }, async (gw) => {
      const other = await gw.connected('VIN-BP-OTHER');
      const slow = await gw.connected('VIN-BP-SLOW', { keepalive: 3600 });
      try {
        slow.socket.pause(); // reads nothing from now on: every PONG piles up
        const ping = encodeMessage(Cmd.PING, Buffer.from('0102030405060708', 'hex'));
        const PER_CHUNK = 1_000;
        const chunk = Buffer.concat(Array.from({ length: PER_CHUNK }, () => ping));
        const deadline = Date.now() + 20_000;
        let sent = 0;
        // Loopback receive buffers autotune up to 32 MiB here (tcp_rmem), so the PONGs must exceed what
        // the kernel absorbs: at most 4,000,000 PINGs (52 MB) or 20 s, whichever ends first; stops once closed.
        while (sent < 4_000_000 && !slow.closed && Date.now() < deadline) {
          slow.socket.write(chunk);
          sent += PER_CHUNK;
          await sleep(1);
        }
        await slow.waitClosed(10_000);
        expect(gw.app.gateway.sessions.has('VIN-BP-SLOW')).toBe(false);
        // The gateway stays healthy for others.
        await expectPong(other, 'cafe');
        const fresh = await gw.connected('VIN-BP-FRESH');
        await expectPong(fresh, 'beef');
        fresh.close();
        expect((await fetch(`${gw.httpUrl}/readyz`)).status).toBe(200);
      } finally {
        slow.close();
        other.close();
      }
    });
  }, 60_000);

  it('disconnects a vehicle that stays over --write-buffer-bytes longer than --drain-timeout-ms, even with little output pending', async () => {
    // drainTimeoutMs is "how long a connection may stay over its output buffer". Small PING bursts
    // (2,600 bytes of PONGs each) leave the gateway just over its 1,024-byte buffer once the kernel
    // buffers are full; that state must end within the drain timeout, not last until keepalive.
    await withGateway({ writeBufferBytes: '1024', drainTimeoutMs: '500' }, async (gw) => {
      const id = 'VIN-BP-TRICKLE';
      const slow = await gw.connected(id, { keepalive: 3600 });
      try {
        slow.socket.pause();
        const ping = encodeMessage(Cmd.PING, Buffer.from('0102030405060708', 'hex'));
        const chunk = Buffer.concat(Array.from({ length: 200 }, () => ping));
        const deadline = Date.now() + 30_000;
        // Until our own send buffer backs up (the gateway stopped reading), at most 20,000 bursts or 30 s.
        for (
          let i = 0;
          i < 20_000 && slow.socket.writableLength === 0 && !slow.closed && Date.now() < deadline;
          i++
        ) {
          slow.socket.write(chunk);
          await sleep(1);
        }
        // Drain timeout 500 ms + a 500 ms sweep, with a generous margin.
        const s = gw.app.gateway.sessions.get(id);
        const endedInTime = await until(() => !gw.app.gateway.sessions.has(id), 5_000).then(
          () => true,
          () => false,
        );
        expect(
          endedInTime,
          `session still ${s?.state} 5 s after the vehicle stopped reading: ${s?.stream.writableLength} bytes ` +
            `unsent (> writeBufferBytes 1024), reads paused=${s?.readPaused}, blockedSince=${s?.blockedSince}`,
        ).toBe(true);
        // 6: the close is preceded by DISCONNECT OVERLOADED, behind the PONGs it did not read; a
        // vehicle that reads again within the linger gets it, then the close.
        slow.socket.resume();
        expect((await slow.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT, 5_000)).reason).toBe(
          DisconnectReason.OVERLOADED,
        );
        await slow.waitClosed(5_000);
      } finally {
        slow.close();
      }
    });
  }, 60_000);
});

// ---- observability and API surface ----

interface SseEvent {
  event: string;
  data: unknown;
}

/** A minimal event-stream reader over fetch: collects `event:`/`data:` blocks. */
class SseClient {
  readonly events: SseEvent[] = [];
  private readonly abort = new AbortController();
  private buffer = '';
  private done: Promise<void> | undefined;

  static async open(url: string, token: string): Promise<SseClient> {
    const c = new SseClient();
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
      signal: c.abort.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    c.done = c.pump(res.body!);
    return c;
  }

  private async pump(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const dec = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.buffer += dec.decode(value, { stream: true });
        let end: number;
        while ((end = this.buffer.indexOf('\n\n')) >= 0) {
          const block = this.buffer.slice(0, end);
          this.buffer = this.buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length > 0) this.events.push({ event, data: JSON.parse(data.join('\n')) });
        }
      }
    } catch {
      // aborted
    }
  }

  /** Waits for an event of `type` matching `pred`, returning it. */
  async waitFor(
    type: string,
    pred: (data: Record<string, unknown>) => boolean = () => true,
    timeoutMs = 5_000,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.events.find(
        (x) => x.event === type && pred(x.data as Record<string, unknown>),
      );
      if (e !== undefined) return e.data as Record<string, unknown>;
      if (Date.now() > deadline)
        throw new Error(`no ${type} event; got ${JSON.stringify(this.events)}`);
      await sleep(20);
    }
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

describe('observability and API surface', () => {
  it('streams uplink (section 8 form), presence and command events for the filtered vehicle', async () => {
    await withGateway({}, async (gw) => {
      const X = 'VIN-SSE-X';
      const Y = 'VIN-SSE-Y';
      const sse = await SseClient.open(`${gw.httpUrl}/api/v1/stream?vehicle=${X}`, ADMIN_TOKEN);
      const vs: TestVehicle[] = [];
      try {
        const x = await gw.connected(X);
        vs.push(x);
        const y = await gw.connected(Y);
        vs.push(y);
        const online = await sse.waitFor('presence', (d) => d.online === true);
        expect(online).toMatchObject({ vehicleId: X, online: true });
        expect(typeof online.sessionId).toBe('string');

        x.send(
          Cmd.TELEMETRY,
          encodeTelemetry({
            seq: 1,
            timestamp: T,
            latitude: 312304000,
            longitude: 1214737000,
            speed: 653,
            heading: 900,
            altitude: 12,
            odometer: 102345,
            fuelOrSoc: 80,
            statusFlags: 3,
            engineRpm: 2100,
            batteryMv: 12600,
            vendor: { '0x80': 'dead' },
          }),
        );
        expect(await x.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).toEqual({
          seq: 1,
          status: AckStatus.STORED,
        });
        y.send(Cmd.TELEMETRY, encodeTelemetry({ seq: 1, timestamp: T }));
        await y.next(Cmd.UPLINK_ACK);

        const up = await sse.waitFor('uplink');
        expect(up).toMatchObject({ vehicleId: X, seq: 1, kind: 'telemetry', timestamp: T });
        expect(typeof up.receivedAt).toBe('number');
        if (up.traceparent !== undefined)
          expect(up.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
        expect(up.data).toEqual({
          latitude: 31.2304,
          longitude: 121.4737,
          speedKmh: 65.3,
          headingDeg: 90,
          altitudeM: 12,
          odometerKm: 10234.5,
          fuelOrSocPct: 80,
          statusFlags: 3,
          engineRpm: 2100,
          batteryMv: 12600,
          vendor: { '0x80': 'dead' },
        });

        const posted = await gw.api('POST', `/api/v1/vehicles/${X}/commands`, {
          name: 'door.lock',
          params: { force: true },
        });
        expect(posted.status).toBe(202);
        const cmdId = (posted.body as { id: string }).id;
        const cmdEvent = await sse.waitFor('command', (d) => d.id === cmdId);
        expect(cmdEvent).toMatchObject({ id: cmdId, vehicleId: X, name: 'door.lock' });
        await x.next(Cmd.COMMAND);

        x.close();
        const offline = await sse.waitFor('presence', (d) => d.online === false);
        expect(offline).toMatchObject({ vehicleId: X, online: false });

        // The filter passes only X.
        y.close();
        await sleep(200);
        for (const e of sse.events) expect((e.data as { vehicleId?: string }).vehicleId).toBe(X);
      } finally {
        closeAll(vs);
        await sse.close();
      }
    });
  });

  it('refuses the stream without the bearer token (401)', async () => {
    await withGateway({}, async (gw) => {
      const res = await fetch(`${gw.httpUrl}/api/v1/stream`);
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ code: expect.any(String) });
    });
  });

  it('exposes Prometheus metrics after traffic, an OpenAPI document and /readyz', async () => {
    await withGateway({}, async (gw) => {
      const v = await gw.connected('VIN-METRICS-1');
      try {
        for (let seq = 1; seq <= 5; seq++) {
          v.send(Cmd.TELEMETRY, encodeTelemetry({ seq, timestamp: T + seq }));
          expect((await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).status).toBe(
            AckStatus.STORED,
          );
        }
        const res = await fetch(`${gw.httpUrl}/metrics`);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
        const text = await res.text();
        const value = (re: RegExp): number => {
          const m = re.exec(text);
          if (m === null) throw new Error(`metric ${re} missing:\n${text}`);
          return Number(m[1]);
        };
        expect(text).toMatch(/^# TYPE vmcp_connections gauge$/m);
        expect(value(/^vmcp_connections\{state="connected"\} (\d+)/m)).toBe(1);
        expect(text).toMatch(/^# TYPE vmcp_messages_total counter$/m);
        expect(
          value(/^vmcp_messages_total\{direction="in",command="TELEMETRY"\} (\d+)/m),
        ).toBeGreaterThanOrEqual(5);
        expect(
          value(/^vmcp_messages_total\{direction="out",command="UPLINK_ACK"\} (\d+)/m),
        ).toBeGreaterThanOrEqual(1);
        expect(value(/^vmcp_uplink_acks_total\{status="STORED"\} (\d+)/m)).toBe(5);
        // 20 messages in one write: fewer STORED frames (cumulative, 3.2), yet 20 messages answered.
        v.sendRaw(
          Buffer.concat(
            Array.from({ length: 20 }, (_, i) =>
              encodeMessage(Cmd.TELEMETRY, encodeTelemetry({ seq: 6 + i, timestamp: T + 6 + i })),
            ),
          ),
        );
        while ((await v.nextDecoded<UplinkAckMessage>(Cmd.UPLINK_ACK)).seq < 25);
        const after = await (await fetch(`${gw.httpUrl}/metrics`)).text();
        expect(after).toMatch(/^vmcp_uplink_acks_total\{status="STORED"\} 25$/m);
        // A vehicle's DISCONNECT is counted by its REASON.
        v.send(Cmd.DISCONNECT, encodeDisconnect({ reason: DisconnectReason.NORMAL }));
        await v.waitClosed();
        const closed = await (await fetch(`${gw.httpUrl}/metrics`)).text();
        expect(closed).toMatch(/^vmcp_disconnects_total\{reason="NORMAL"\} 1$/m);
        expect(closed).not.toMatch(/^vmcp_disconnects_total\{reason="closed"\} [1-9]/m);
        expect(text).toMatch(/^# TYPE vmcp_store_commit_seconds histogram$/m);
        expect(value(/^vmcp_store_commit_seconds_count (\d+)/m)).toBeGreaterThan(0);

        const doc = await fetch(`${gw.httpUrl}/docs/openapi.json`);
        expect(doc.status).toBe(200);
        const openapi = JSON.parse(await doc.text()) as { openapi?: string; paths?: object };
        expect(typeof openapi.openapi).toBe('string');
        expect(Object.keys(openapi.paths ?? {})).toEqual(
          expect.arrayContaining(['/api/v1/vehicles/{id}/commands', '/api/v1/stream']),
        );

        expect((await fetch(`${gw.httpUrl}/readyz`)).status).toBe(200);
        expect((await fetch(`${gw.httpUrl}/healthz`)).status).toBe(200);
      } finally {
        v.close();
      }
    });
  });

  it('logs every refused CONNECT with its vehicle id, and each command end with its trace', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l));
        done();
      },
    });
    const gw = await startGateway({}, undefined, createLogger('debug', sink));
    try {
      const refused = await gw.vehicle();
      const ack = await refused.connect({
        vehicleId: 'VIN-LOG-1',
        versionMin: 9,
        versionMax: 9,
        token: await gw.token('VIN-LOG-1'),
      });
      expect(ack.status).toBe(ConnackStatus.UNSUPPORTED_VERSION);
      await refused.waitClosed();
      const v = await gw.connected('VIN-LOG-2');
      const posted = await gw.api('POST', '/api/v1/vehicles/VIN-LOG-2/commands', { name: 'horn' });
      const cmd = await v.nextDecoded<CommandMessage>(Cmd.COMMAND);
      v.send(Cmd.COMMAND_ACK, encodeCommandAck({ seq: cmd.seq, result: CommandResult.SUCCEEDED }));
      const id = (posted.body as { id: string }).id;
      for (let i = 0; i < 50 && !lines.some((l) => l.msg === 'command finished'); i++)
        await new Promise((r) => setTimeout(r, 20));
      v.close();
      expect(lines).toContainEqual(
        expect.objectContaining({
          msg: 'CONNECT refused',
          vehicleId: 'VIN-LOG-1',
          status: 'UNSUPPORTED_VERSION',
        }),
      );
      const states = lines.filter((l) => l.msg === 'session state' && l.vehicleId === 'VIN-LOG-1');
      expect(states.length).toBeGreaterThan(0);
      for (const l of states) expect(l).not.toHaveProperty('sessionId');
      expect(lines).toContainEqual(
        expect.objectContaining({
          msg: 'command finished',
          vehicleId: 'VIN-LOG-2',
          commandId: id,
          status: 'succeeded',
          traceparent: cmd.traceparent,
        }),
      );
    } finally {
      await gw.stop();
    }
  });

  it('turns /readyz to 503 while draining and tells vehicles SHUTDOWN', async () => {
    const gw = await startGateway({});
    const v = await gw.connected('VIN-DRAIN-1');
    // Keep our side open after the gateway ends its side, so the drain lasts until the gateway gives up.
    v.socket.allowHalfOpen = true;
    let stopping: Promise<void> | undefined;
    try {
      expect((await fetch(`${gw.httpUrl}/readyz`)).status).toBe(200);
      stopping = gw.stop();
      const d = await v.nextDecoded<DisconnectMessage>(Cmd.DISCONNECT);
      expect(d.reason).toBe(DisconnectReason.SHUTDOWN);
      const ready = await fetch(`${gw.httpUrl}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ code: expect.any(String) });
    } finally {
      v.close();
      await (stopping ?? gw.stop());
    }
  });
});
