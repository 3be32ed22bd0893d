// A scripted gateway for VehicleClient unit tests: in-memory duplex pairs, frame by frame.
import { duplexPair, type Duplex } from 'node:stream';
import {
  Cmd,
  ConnackStatus,
  FrameDecoder,
  MessageAssembler,
  cmdName,
  decodeCommandAck,
  decodeConnect,
  decodeEvent,
  decodeSensorData,
  decodeTelemetry,
  decodeTelemetryBatch,
  encodeCommand,
  encodeConnack,
  encodeDisconnect,
  encodeMessage,
  encodeSensorRead,
  encodeUplinkAck,
  type CommandAckMessage,
  type CommandMessage,
  type ConnackMessage,
  type ConnectMessage,
  type DisconnectMessage,
  type SensorDataMessage,
} from '../../src/protocol/index.js';
import type {
  GatewayAddress,
  Transport,
  VehicleClient,
  VehicleClientEvents,
} from '../../src/client/index.js';

export interface Received {
  code: number;
  data: Uint8Array;
}

/** Lets stream callbacks, microtasks and immediates run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** The next emission of a typed client event. */
export function nextEvent<K extends keyof VehicleClientEvents>(
  client: VehicleClient,
  name: K,
  timeoutMs = 5_000,
): Promise<VehicleClientEvents[K][0]> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${String(name)}' event in time`)), timeoutMs);
    const listener = (value: VehicleClientEvents[K][0]): void => {
      clearTimeout(t);
      resolve(value);
    };
    (
      client as unknown as { once(n: string, l: (v: VehicleClientEvents[K][0]) => void): void }
    ).once(name, listener);
  });
}

/** Deterministic [0, 1) numbers (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The gateway end of one connection the client dialled. */
export class ScriptedPeer {
  readonly inbox: Received[] = [];
  private waiters: (() => void)[] = [];
  closed = false;

  constructor(
    readonly socket: Duplex,
    readonly target: string,
  ) {
    const decoder = new FrameDecoder(
      new MessageAssembler({
        onMessage: (code, data) => {
          this.inbox.push({ code, data: data.slice() });
          this.wake();
        },
        onBrokenRun: () => undefined,
        onTooLarge: () => undefined,
        onBadFrame: () => undefined,
        onGarbage: () => undefined,
      }),
    );
    socket.on('data', (chunk: Uint8Array) => decoder.push(chunk));
    socket.on('error', () => undefined);
    // Like the gateway: the vehicle's end of stream closes the connection.
    socket.on('end', () => socket.destroy());
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(code: number, data: Uint8Array = new Uint8Array(0)): void {
    this.socket.write(encodeMessage(code, data));
  }

  /** Next message of `code` (any when undefined); earlier messages of other codes stay queued. */
  async next(code?: number, timeoutMs = 5_000): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => code === undefined || m.code === code);
      if (i >= 0) return this.inbox.splice(i, 1)[0]!;
      if (this.closed) throw new Error(`closed while waiting for ${cmdName(code ?? 0)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${cmdName(code ?? 0)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Codes received so far and not consumed by next(). */
  codes(): number[] {
    return this.inbox.map((m) => m.code);
  }

  async connect(): Promise<ConnectMessage> {
    return decodeConnect((await this.next(Cmd.CONNECT)).data);
  }

  /** Reads CONNECT and answers CONNACK ACCEPTED (version 2, keepalive 60, NEXT_UPLINK_SEQ 1 unless given). */
  async accept(connack: Partial<ConnackMessage> = {}): Promise<ConnectMessage> {
    const c = await this.connect();
    this.connack({
      status: ConnackStatus.ACCEPTED,
      version: 2,
      sessionId: 'sess-1',
      keepalive: 60,
      nextUplinkSeq: 1,
      ...connack,
    });
    return c;
  }

  connack(msg: ConnackMessage): void {
    this.send(Cmd.CONNACK, encodeConnack(msg));
  }

  ack(seq: number, status = 0): void {
    this.send(Cmd.UPLINK_ACK, encodeUplinkAck({ seq, status }));
  }

  command(cmd: CommandMessage): void {
    this.send(Cmd.COMMAND, encodeCommand(cmd));
  }

  sensorRead(channel: number, tag: number): void {
    this.send(Cmd.SENSOR_READ, encodeSensorRead({ channel, tag }));
  }

  disconnect(msg: DisconnectMessage): void {
    this.send(Cmd.DISCONNECT, encodeDisconnect(msg));
    this.socket.end();
  }

  close(): void {
    this.socket.destroy();
  }

  async commandAck(): Promise<CommandAckMessage> {
    return decodeCommandAck((await this.next(Cmd.COMMAND_ACK)).data);
  }

  async sensorData(): Promise<SensorDataMessage> {
    return decodeSensorData((await this.next(Cmd.SENSOR_DATA)).data);
  }

  /**
   * The next `count` uplink seqs as sent, in order: TELEMETRY and EVENT give one each, a
   * TELEMETRY_BATCH its run. Returns [seq, kind] pairs ('t', 'e', or 'b' for a batch sample).
   */
  async uplink(count: number): Promise<[number, string][]> {
    const out: [number, string][] = [];
    while (out.length < count) {
      const i = await this.nextUplinkIndex();
      const m = this.inbox.splice(i, 1)[0]!;
      if (m.code === Cmd.TELEMETRY) out.push([decodeTelemetry(m.data).seq, 't']);
      else if (m.code === Cmd.EVENT) out.push([decodeEvent(m.data).seq, 'e']);
      else {
        const b = decodeTelemetryBatch(m.data);
        for (let k = 0; k < b.count; k++) out.push([b.firstSeq + k, 'b']);
      }
    }
    return out;
  }

  /** Uplink seqs received so far without waiting. */
  uplinkNow(): number[] {
    const out: number[] = [];
    for (const m of this.inbox.splice(0)) {
      if (m.code === Cmd.TELEMETRY) out.push(decodeTelemetry(m.data).seq);
      else if (m.code === Cmd.EVENT) out.push(decodeEvent(m.data).seq);
      else if (m.code === Cmd.TELEMETRY_BATCH) {
        const b = decodeTelemetryBatch(m.data);
        for (let k = 0; k < b.count; k++) out.push(b.firstSeq + k);
      } else this.inbox.push(m);
    }
    return out;
  }

  private async nextUplinkIndex(): Promise<number> {
    const isUplink = (c: number): boolean =>
      c === Cmd.TELEMETRY || c === Cmd.EVENT || c === Cmd.TELEMETRY_BATCH;
    const deadline = Date.now() + 5_000;
    for (;;) {
      const i = this.inbox.findIndex((m) => isUplink(m.code));
      if (i >= 0) return i;
      if (this.closed) throw new Error('closed while waiting for uplink');
      if (Date.now() > deadline) throw new Error('timed out waiting for uplink');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

/** The client's transport: every dial makes a duplex pair and hands the far end to the test as a ScriptedPeer. */
export class PeerNetwork {
  readonly dials: string[] = [];
  private readonly ready: ScriptedPeer[] = [];
  private waiters: ((p: ScriptedPeer) => void)[] = [];

  readonly transport: Transport = (gateway: GatewayAddress) => {
    const target = `${gateway.host}:${gateway.port}`;
    this.dials.push(target);
    const [client, server] = duplexPair();
    // Like TCP: closing either end closes the other (a duplex pair alone does not propagate destroy).
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
    const peer = new ScriptedPeer(server, target);
    const w = this.waiters.shift();
    if (w !== undefined) w(peer);
    else this.ready.push(peer);
    return client;
  };

  nextPeer(timeoutMs = 5_000): Promise<ScriptedPeer> {
    const p = this.ready.shift();
    if (p !== undefined) return Promise.resolve(p);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('client did not dial in time')), timeoutMs);
      this.waiters.push((peer) => {
        clearTimeout(t);
        resolve(peer);
      });
    });
  }
}
