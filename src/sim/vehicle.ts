// One simulated vehicle speaking raw VMCP with the codec: CONNECT, uplink with the seq/ack/resend
// rules of PROTOCOL.md 3.2, keepalive (2.4), reconnect with backoff (7), commands and sensor reads (4).
// Lean on purpose (no timers, no promises per vehicle): the fleet's one loop drives every vehicle.
import { connect as netConnect, type Socket } from 'node:net';
import {
  AckStatus,
  ByteWriter,
  Cmd,
  CommandResult,
  ConnackStatus,
  DISCONNECT_REASON_NAMES,
  DisconnectReason,
  FrameDecoder,
  MAX_VERSION,
  MIN_VERSION,
  MessageAssembler,
  SensorStatus,
  UplinkTag,
  decodeCommand,
  decodeConnack,
  decodeDisconnect,
  decodeError,
  decodeSensorRead,
  encodeCommandAck,
  encodeConnect,
  encodeDisconnect,
  MAX_FRAME_DATA,
  encodeMessage,
  encodedLength,
  readU32,
  writeMessage,
  writeU16,
  writeU32,
  writeU64,
  type MessageSink,
} from '../protocol/index.js';
import { TELEMETRY_TLVS_MAX, copyBytes, writeTelemetryTlvs, writeUplinkFrame } from './encode.js';
import { VehicleMotion, hashSeed } from './motion.js';
import { bump, type SimStats } from './stats.js';

/** What every vehicle shares: options, counters and the fleet's switches. */
export interface VehicleContext {
  readonly host: string;
  readonly port: number;
  readonly stats: SimStats;
  readonly keepaliveS: number;
  /** 1: TELEMETRY; K > 1: TELEMETRY_BATCH of K samples (version 2). */
  readonly batch: number;
  /** Samples sent and not yet acked, at most. */
  readonly window: number;
  /** Unacked samples kept per vehicle, at most (the outbox bound: new samples are skipped beyond it). */
  readonly maxBacklog: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  /** A connection without CONNACK after this long is dropped (connect_timeout) and retried. */
  readonly connectTimeoutMs: number;
  /** TTL the API was given for commands, to derive their accept time from EXPIRES_AT (0: unknown). */
  readonly commandTtlMs: number;
  readonly seed: number;
  /** Samples per second per vehicle, now (0: idle, keepalive only). */
  rate: number;
  /** False once the run's duration is over: no new samples. */
  generating: boolean;
  /** True when the run ends: no reconnects. */
  stopping: boolean;
  /**
   * Per vehicle (by index): the performance.now() before which its tick has nothing to do, so the
   * fleet's loop skips it; 0 wakes it at the next tick. Set by the vehicle after each tick and when a
   * message or a socket event may give it work sooner; the fleet zeroes it all on a rate change.
   */
  readonly dueAt: Float64Array;
  /** Credentials for a CONNECT: a token (minted or issued at registration) or the registered secret. */
  credentials(v: SimVehicle): { token?: string | undefined; credential?: Uint8Array | undefined };
  /**
   * A CONNACK (any status) arrived `ms` after the connect started at `startedAt`, or the connect timed
   * out: what the fleet's limit on CONNECTs in flight adapts to.
   */
  connectAnswered(startedAt: number, ms: number): void;
  connectTimedOut(startedAt: number): void;
}

const SOCKET_HIGH_WATER = 64 * 1024;
const SESSION_RESETS_BACKOFF_MS = 60_000; // 7: the attempt count resets after a 60 s session
const PING_MISSES = 3;
const CLIENT_INFO = 'vmcp-sim/1';

/** idle → connecting → connected → (closing) → waiting → connecting …; stopped at the end of the run. */
type State = 'idle' | 'connecting' | 'connected' | 'closing' | 'waiting' | 'stopped';

/**
 * One uplink sample kept until it is consumed: its TLVs without SEQ, `body[0, length)`. Consumed
 * samples go back to their vehicle's free list and are reused with their body buffer, so generating
 * a sample allocates nothing in the steady state.
 */
interface Sample {
  seq: number;
  code: number; // Cmd.TELEMETRY or Cmd.EVENT
  body: Uint8Array;
  length: number;
  /** performance.now() of the first transmission (0: not sent yet), and of the latest. */
  sentAt: number;
  lastSentAt: number;
  /** The next sample of the free list, while this one is in it. */
  nextFree: Sample | null;
}

/** Body capacity of a new sample: any telemetry sample, and events with a detail of up to ~50 bytes. */
const SAMPLE_BYTES = 128;
/** Consumed samples kept for reuse per vehicle, at most: this plus two batches. */
const FREE_SAMPLES = 16;

const kVehicle = Symbol('vmcp.sim.vehicle');
type Tagged = Socket & { [kVehicle]?: SimVehicle };

function onSocketConnect(this: Tagged): void {
  this[kVehicle]?.socketConnected();
}
// Every socket reads into this one buffer (net's `onread`: no buffer allocated per read, no stream
// events). Each chunk is decoded at once: the decoder and the assembler copy what they keep across
// chunks (a frame split between reads, a fragmented message) and the handlers use the data before
// returning, so nothing holds a view of it when the next read overwrites it.
const readBuffer = Buffer.allocUnsafe(64 * 1024);
function onSocketRead(this: Tagged, nread: number, buf: Uint8Array): boolean {
  this[kVehicle]?.received(buf.subarray(0, nread));
  return true;
}
function onSocketError(this: Tagged, err: NodeJS.ErrnoException): void {
  this[kVehicle]?.socketError(err);
}
function onSocketClose(this: Tagged): void {
  this[kVehicle]?.socketClosed(this);
}

/** Scratch space for TELEMETRY_BATCH DATA (and a message that needs fragmenting): one vehicle at a time. */
const scratch = new Uint8Array(64 * 1024);

// Outgoing frames are written into a shared chunk, each socket write taking a view of its bytes; the
// region is never reused (a write still queued in the socket holds its view), a new chunk is taken
// when the room left is below what one pump may write (a window of samples).
const OUT_CHUNK = 256 * 1024;
const OUT_ROOM = 64 * 1024;
let out = Buffer.allocUnsafeSlow(OUT_CHUNK);
let outPos = 0;

export class SimVehicle implements MessageSink {
  state: State = 'idle';
  /** performance.now() at or after which the next connect may start. */
  reconnectAt = 0;
  /** Token issued at registration (CONNACK TOKEN), used for later CONNECTs. */
  issuedToken: string | undefined;
  /** First seq of this run, and the highest seq known consumed and sent. */
  baseSeq = 0;
  ackedThrough = 0;
  sentThrough = 0;

  private socket: Tagged | null = null;
  private decoder: FrameDecoder | null = null;
  private motion: VehicleMotion | null = null;
  private attempt = 0;
  private connectStartedAt = 0;
  private connectedAt = 0;
  private retryAfterMs = -1;
  private everConnected = false;
  /** Samples per TELEMETRY_BATCH on this session (1 when version 1 was negotiated). */
  private sessionBatch = 1;

  // Uplink outbox: samples[head, length) are unconsumed, in seq order; [head, sendPos) were sent
  // on this connection and are waiting for their ack.
  private samples: Sample[] = [];
  /** Consumed samples for reuse: a list linked through nextFree. */
  private free: Sample | null = null;
  private freeCount = 0;
  private readonly freeMax: number;
  private head = 0;
  private sendPos = 0;
  private nextSeq = 1;
  private nextSampleAt = 0;
  /** The seq we last rewound to: pipelined OUT_OF_ORDER answers carrying it are ignored. */
  private rewindSeq = 0;
  private pauseUntil = 0;
  /** Resend after reconnect: the last seq pending at CONNACK; done when acked (0: none). */
  private resyncSeq = 0;
  /** Congestion window (samples in flight): halved on THROTTLED, +1 per STORED ack, up to ctx.window. */
  private cwnd: number;

  // Keepalive (2.4)
  private lastTxAt = 0;
  private pingSentAt = 0;
  private misses = 0;

  // Commands (4.1, 4.2): highest seq finished, and recent results for redelivery.
  private lastCommandSeq = 0;
  private results: Map<number, number> | null = null;

  constructor(
    readonly id: string,
    readonly index: number,
    private readonly ctx: VehicleContext,
    private readonly localAddress: string | undefined,
  ) {
    this.cwnd = ctx.window;
    this.freeMax = FREE_SAMPLES + 2 * ctx.batch;
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  /** Unconsumed samples in the outbox. */
  get backlog(): number {
    return this.samples.length - this.head;
  }

  /** Motion state (for tests and sensor reads). */
  get vehicleMotion(): VehicleMotion | null {
    return this.motion;
  }

  // ---- connection ----

  /** Starts a TCP connection (the fleet decides when). */
  startConnect(now: number): void {
    const st = this.ctx.stats;
    this.state = 'connecting';
    this.wake();
    this.connectStartedAt = now;
    this.retryAfterMs = -1;
    st.connectAttempts++;
    st.connecting++;
    let sock: Tagged;
    try {
      sock = netConnect({
        host: this.ctx.host,
        port: this.ctx.port,
        localAddress: this.localAddress,
        noDelay: true,
        onread: { buffer: readBuffer, callback: onSocketRead },
      }) as Tagged;
    } catch (err) {
      st.connecting--;
      st.error((err as NodeJS.ErrnoException).code ?? 'connect_throw');
      this.scheduleReconnect(now);
      return;
    }
    sock[kVehicle] = this;
    sock.on('connect', onSocketConnect);
    sock.on('error', onSocketError);
    sock.on('close', onSocketClose);
    this.socket = sock;
    const assembler = new MessageAssembler(this, 65_536);
    this.decoder = new FrameDecoder(assembler);
  }

  socketConnected(): void {
    const creds = this.ctx.credentials(this);
    const data = encodeConnect({
      versionMin: MIN_VERSION,
      versionMax: MAX_VERSION,
      vehicleId: this.id,
      token: creds.token,
      credential: creds.token === undefined ? creds.credential : undefined,
      keepalive: this.ctx.keepaliveS,
      lastCommandSeq: this.lastCommandSeq,
      clientInfo: CLIENT_INFO,
    });
    this.write(encodeMessage(Cmd.CONNECT, data));
  }

  received(chunk: Uint8Array): void {
    this.decoder?.push(chunk);
  }

  socketError(err: NodeJS.ErrnoException): void {
    this.ctx.stats.error(err.code ?? 'socket_error');
  }

  socketClosed(sock: Tagged): void {
    delete sock[kVehicle];
    if (sock !== this.socket) return;
    this.wake();
    this.socket = null;
    this.decoder = null;
    const st = this.ctx.stats;
    const now = performance.now();
    if (this.state === 'connecting') st.connecting--;
    if (this.state === 'connected') {
      st.connected--;
      if (now - this.connectedAt >= SESSION_RESETS_BACKOFF_MS) this.attempt = 0;
    }
    if (this.ctx.stopping) {
      this.state = 'stopped';
      return;
    }
    this.scheduleReconnect(now);
  }

  private scheduleReconnect(now: number): void {
    const ctx = this.ctx;
    let delay: number;
    if (this.retryAfterMs >= 0) {
      // RETRY_AFTER_MS is honoured; a little spread keeps a whole fleet from returning in one tick.
      delay = this.retryAfterMs * (1 + 0.25 * Math.random());
    } else {
      const exp = Math.min(ctx.backoffCapMs, ctx.backoffBaseMs * 2 ** Math.min(this.attempt, 20));
      delay = exp * (0.5 + 0.5 * Math.random());
    }
    this.attempt++;
    this.state = 'waiting';
    this.reconnectAt = now + delay;
  }

  /** Ends the session with DISCONNECT NORMAL (end of the run). */
  disconnect(): void {
    const sock = this.socket;
    if (sock === null) {
      this.state = 'stopped';
      return;
    }
    if (this.state === 'connected')
      this.write(
        encodeMessage(Cmd.DISCONNECT, encodeDisconnect({ reason: DisconnectReason.NORMAL })),
      );
    sock.end();
  }

  /** Destroys the socket at once (bounded shutdown). */
  destroy(): void {
    this.socket?.destroy();
  }

  private write(bytes: Uint8Array, now = performance.now()): void {
    const sock = this.socket;
    if (sock === null || sock.destroyed) return;
    sock.write(bytes);
    this.lastTxAt = now;
  }

  // ---- messages from the gateway ----

  onMessage(code: number, data: Uint8Array): void {
    try {
      switch (code) {
        case Cmd.UPLINK_ACK:
          if (data.length >= 5) {
            this.onAck(readU32(data, 0), data[4]!);
            // The window opened, a rewind or a pause: samples wait to be sent.
            if (this.sendPos < this.samples.length) this.wake();
          }
          return;
        case Cmd.CONNACK:
          return this.onConnack(data);
        case Cmd.COMMAND:
          return this.onCommand(data);
        case Cmd.SENSOR_READ:
          return this.onSensorRead(data);
        case Cmd.PING:
          this.write(encodeMessage(Cmd.PONG, data.slice(0, 8)));
          return;
        case Cmd.PONG:
          this.ctx.stats.pongs++;
          this.pingSentAt = 0;
          this.misses = 0;
          return;
        case Cmd.DISCONNECT: {
          const d = decodeDisconnect(data);
          bump(this.ctx.stats.disconnects, DISCONNECT_REASON_NAMES[d.reason] ?? `0x${d.reason}`);
          if (d.retryAfterMs !== undefined) this.retryAfterMs = d.retryAfterMs;
          if (d.redirect !== undefined) this.ctx.stats.redirects++;
          return;
        }
        case Cmd.ERROR: {
          const e = decodeError(data);
          this.ctx.stats.error(`ERROR_${e.code}_0x${e.refCmd.toString(16)}`);
          return;
        }
        default:
          return;
      }
    } catch {
      this.ctx.stats.error(`bad_${code.toString(16)}`);
    }
  }

  onBrokenRun(): void {
    this.ctx.stats.error('broken_run');
  }
  onTooLarge(): void {
    this.ctx.stats.error('too_large');
  }
  onBadFrame(): void {
    this.ctx.stats.error('bad_crc');
  }
  onGarbage(): void {
    this.ctx.stats.error('garbage');
  }

  private onConnack(data: Uint8Array): void {
    const st = this.ctx.stats;
    const ack = decodeConnack(data);
    if (this.state !== 'connecting') return;
    this.wake();
    st.connecting--;
    const now = performance.now();
    this.ctx.connectAnswered(this.connectStartedAt, now - this.connectStartedAt);
    if (ack.status !== ConnackStatus.ACCEPTED) {
      bump(st.refused, CONNACK_NAMES[ack.status] ?? String(ack.status));
      if (ack.retryAfterMs !== undefined) this.retryAfterMs = ack.retryAfterMs;
      if (ack.redirect !== undefined) st.redirects++;
      if (ack.status === ConnackStatus.BAD_CREDENTIALS) this.issuedToken = undefined;
      this.state = 'closing'; // the gateway closes; socketClosed schedules the retry
      return;
    }
    st.accepted++;
    st.connect.recordMs(now - this.connectStartedAt);
    if (ack.token !== undefined) this.issuedToken = ack.token;
    this.state = 'connected';
    this.sessionBatch = ack.version >= 2 ? this.ctx.batch : 1;
    this.connectedAt = now;
    this.lastTxAt = now;
    this.pingSentAt = 0;
    this.misses = 0;
    st.connected++;
    if (st.connected > st.peakConnected) st.peakConnected = st.connected;
    const next = ack.nextUplinkSeq ?? 1;
    if (!this.everConnected) {
      // First session of this run: continue the vehicle's seq where the gateway has it.
      this.everConnected = true;
      this.nextSeq = next;
      this.baseSeq = next;
      this.ackedThrough = next - 1;
      this.sentThrough = next - 1;
      this.motion = new VehicleMotion(hashSeed(this.id, this.ctx.seed), Date.now());
      this.nextSampleAt = now + this.phase();
    } else {
      st.reconnects++;
      st.lastReconnectAt = Date.now();
      // 3.2/7: seqs below NEXT_UPLINK_SEQ are consumed (their ack was lost); resend the rest.
      this.consumeThrough(next - 1, now, 'resume');
      if (next > this.nextSeq) st.error('next_seq_ahead');
      this.resyncSeq = this.nextSeq - 1 > next - 1 ? this.nextSeq - 1 : 0;
      if (this.resyncSeq === 0) st.lastResyncAt = Date.now();
    }
    this.sendPos = this.head;
    this.rewindSeq = next;
    this.pauseUntil = 0;
  }

  /** Spreads the first sample over one interval so a ramped fleet does not send in lockstep. */
  private phase(): number {
    const rate = this.ctx.rate;
    return rate > 0 ? (1000 / rate) * ((this.index * 0.618_034) % 1) : 0;
  }

  private onAck(seq: number, status: number): void {
    const st = this.ctx.stats;
    const now = performance.now();
    switch (status) {
      case AckStatus.STORED:
        this.consumeThrough(seq, now, 'stored');
        if (this.cwnd < this.ctx.window) this.cwnd = Math.min(this.ctx.window, this.cwnd + 1);
        return;
      case AckStatus.DUPLICATE:
        st.duplicates++;
        this.consumeThrough(seq, now, 'resume');
        return;
      case AckStatus.REJECTED:
      case AckStatus.FORBIDDEN:
        st.error(status === AckStatus.REJECTED ? 'ack_rejected' : 'ack_forbidden');
        this.consumeThrough(seq, now, 'rejected');
        return;
      case AckStatus.THROTTLED:
        st.throttled++;
        // 3.2: not consumed; wait at least 1 s, then resend from the throttled seq.
        this.pauseUntil = now + 1000 + Math.random() * 250;
        // Resend no faster than the gateway admits: a full window would mostly come back OUT_OF_ORDER.
        this.cwnd = Math.max(1, this.cwnd / 2);
        this.rewind(seq);
        return;
      case AckStatus.OUT_OF_ORDER:
        st.outOfOrder++;
        if (seq !== this.rewindSeq) this.rewind(seq);
        return;
      default:
        st.error(`ack_status_${status}`);
    }
  }

  /**
   * Drops samples up to `seq` from the outbox: consumed by the gateway, as STORED (acked now), as
   * found on resume (NEXT_UPLINK_SEQ or DUPLICATE: stored earlier, the ack was lost) or REJECTED.
   */
  private consumeThrough(seq: number, now: number, how: 'stored' | 'resume' | 'rejected'): void {
    const st = this.ctx.stats;
    const samples = this.samples;
    let h = this.head;
    while (h < samples.length && samples[h]!.seq <= seq) {
      const s = samples[h]!;
      if (how === 'stored') {
        st.stored++;
        if (s.sentAt > 0) st.recordAck(now - s.sentAt, now - s.lastSentAt);
      } else if (how === 'resume') st.storedOnResume++;
      else st.rejected++;
      // Nothing reads below head again (the array slot is dropped at the next compaction).
      if (this.freeCount < this.freeMax) {
        s.nextFree = this.free;
        this.free = s;
        this.freeCount++;
      }
      h++;
    }
    this.head = h;
    if (this.sendPos < h) this.sendPos = h;
    if (seq > this.ackedThrough) this.ackedThrough = seq;
    if (this.resyncSeq !== 0 && this.ackedThrough >= this.resyncSeq) {
      this.resyncSeq = 0;
      st.lastResyncAt = Date.now();
    }
    // Compact now and then so the array does not grow for ever.
    if (h >= 64 && h * 2 >= samples.length) {
      this.samples = samples.slice(h);
      this.sendPos -= h;
      this.head = 0;
    }
  }

  private rewind(seq: number): void {
    this.rewindSeq = seq;
    const samples = this.samples;
    if (this.head >= samples.length) return;
    const first = samples[this.head]!.seq;
    if (seq < first) {
      // The gateway expects a seq we hold as consumed: it lost what it acked.
      this.ctx.stats.error('ack_regression');
      this.sendPos = this.head;
      return;
    }
    this.sendPos = Math.min(samples.length, this.head + (seq - first));
  }

  private onCommand(data: Uint8Array): void {
    const st = this.ctx.stats;
    const cmd = decodeCommand(data);
    st.commands++;
    const nowEpoch = Date.now();
    const results = (this.results ??= new Map());
    let result = results.get(cmd.seq);
    if (result !== undefined || cmd.seq <= this.lastCommandSeq) {
      // 4.2: executed at most once; a redelivered command answers the recorded result.
      st.commandsRedelivered++;
      result ??= CommandResult.SUCCEEDED;
    } else {
      const ttl = this.ctx.commandTtlMs;
      if (ttl > 0) {
        const acceptedAt = cmd.expiresAt - ttl;
        if (acceptedAt <= nowEpoch + 1000)
          st.commandDelivery.recordMs(Math.max(0, nowEpoch - acceptedAt));
      }
      result = nowEpoch > cmd.expiresAt ? CommandResult.EXPIRED : CommandResult.SUCCEEDED;
      if (result === CommandResult.EXPIRED) st.commandsExpired++;
      results.set(cmd.seq, result);
      if (results.size > 32) results.delete(results.keys().next().value!);
      if (cmd.seq > this.lastCommandSeq) this.lastCommandSeq = cmd.seq;
    }
    const payload =
      result === CommandResult.SUCCEEDED
        ? new TextEncoder().encode(`{"ok":true,"name":${JSON.stringify(cmd.name)}}`)
        : undefined;
    this.write(
      encodeMessage(
        Cmd.COMMAND_ACK,
        encodeCommandAck({ seq: cmd.seq, result, resultPayload: payload }),
      ),
    );
  }

  private onSensorRead(data: Uint8Array): void {
    const r = decodeSensorRead(data);
    this.ctx.stats.sensorReads++;
    const m = this.motion;
    let status: number = SensorStatus.OK;
    let value: Uint8Array;
    switch (r.channel) {
      case 1: // speed, 0.1 km/h
        value = new Uint8Array(2);
        writeU16(value, 0, Math.round((m?.speed ?? 0) * 36));
        break;
      case 2: // state of charge / fuel, percent
        value = Uint8Array.of(Math.round(Math.max(0, Math.min(100, m?.energyPct ?? 0))));
        break;
      case 3: // odometer, 0.1 km
        value = new Uint8Array(4);
        writeU32(value, 0, Math.round((m?.odometerKm ?? 0) * 10));
        break;
      case 4: // cabin temperature, 0.1 °C
        value = new Uint8Array(2);
        writeU16(value, 0, 215);
        break;
      default:
        status = SensorStatus.NO_SUCH_CHANNEL;
        value = new Uint8Array(0);
    }
    const out = new Uint8Array(3 + value.length);
    out[0] = r.channel;
    out[1] = r.tag;
    out[2] = status;
    out.set(value, 3);
    this.write(encodeMessage(Cmd.SENSOR_DATA, out));
  }

  // ---- the fleet's loop ----

  /** Generates due samples and sends what the window allows; keepalive. `now` is performance.now(). */
  tick(now: number): void {
    this.work(now);
    this.ctx.dueAt[this.index] = this.nextDue();
  }

  /** Has the fleet's loop visit this vehicle at its next tick. */
  private wake(): void {
    this.ctx.dueAt[this.index] = 0;
  }

  /**
   * When work() next has something to do, as things stand after it ran: the connect timeout, the
   * next sample, sending (next tick, or when a THROTTLED pause ends), the keepalive. Anything that
   * changes these sooner (CONNACK, acks, the socket closing, a rate change) wakes the vehicle.
   */
  private nextDue(): number {
    if (this.state === 'connecting') return this.connectStartedAt + this.ctx.connectTimeoutMs;
    if (this.motion === null) return Infinity;
    const ctx = this.ctx;
    let due = ctx.generating && ctx.rate > 0 ? this.nextSampleAt : Infinity;
    if (this.state !== 'connected') return due;
    if (this.sendPos < this.samples.length && this.pauseUntil < due) due = this.pauseUntil;
    const ka = ctx.keepaliveS * 1000;
    const ping = (this.pingSentAt > 0 ? this.pingSentAt : this.lastTxAt) + ka;
    return ping < due ? ping : due;
  }

  private work(now: number): void {
    const ctx = this.ctx;
    if (this.state === 'connecting') {
      if (now - this.connectStartedAt >= ctx.connectTimeoutMs) {
        ctx.stats.error('connect_timeout');
        ctx.connectTimedOut(this.connectStartedAt);
        this.socket?.destroy();
      }
      return;
    }
    if (this.motion === null) return; // never connected yet
    const rate = ctx.rate;
    if (ctx.generating && rate > 0) {
      const interval = 1000 / rate;
      if (this.nextSampleAt < now - 5_000) this.nextSampleAt = now - 5_000; // after a pause: no burst
      while (this.nextSampleAt <= now) {
        this.nextSampleAt += interval;
        this.generate();
      }
    }
    if (this.state !== 'connected') return;
    if (now >= this.pauseUntil && this.sendPos < this.samples.length) this.pump(now);
    // 2.4: PING after KEEPALIVE seconds without sending; 3 unanswered PINGs close the connection.
    const ka = ctx.keepaliveS * 1000;
    if (this.pingSentAt > 0 && now - this.pingSentAt >= ka) {
      this.pingSentAt = 0;
      this.misses++;
      ctx.stats.pingMisses++;
      if (this.misses >= PING_MISSES) {
        ctx.stats.error('keepalive_timeout');
        this.socket?.destroy();
        return;
      }
    }
    if (this.pingSentAt === 0 && now - this.lastTxAt >= ka) {
      const data = new Uint8Array(8);
      writeU64(data, 0, Date.now());
      this.write(encodeMessage(Cmd.PING, data));
      this.pingSentAt = now;
      ctx.stats.pingsSent++;
    }
  }

  private generate(): void {
    const st = this.ctx.stats;
    if (this.samples.length - this.head >= this.ctx.maxBacklog) {
      st.skipped++;
      return;
    }
    const m = this.motion!;
    const nowEpoch = Date.now();
    m.advance(nowEpoch);
    const ev = m.takeEvent(nowEpoch);
    if (ev !== undefined) {
      const w = new ByteWriter(64);
      w.tlvU64(UplinkTag.TIMESTAMP, ev.timestamp)
        .tlvI32(UplinkTag.LATITUDE, ev.latitude!)
        .tlvI32(UplinkTag.LONGITUDE, ev.longitude!)
        .tlvU16(UplinkTag.EVENT_CODE, ev.eventCode!)
        .tlvU8(UplinkTag.SEVERITY, ev.severity!)
        .tlvString(UplinkTag.DETAIL, ev.detail!);
      const tlvs = w.finish();
      const s = this.newSample(Cmd.EVENT, tlvs.length);
      s.body.set(tlvs);
      s.length = tlvs.length;
      st.generated++;
      st.events++;
    }
    const s = this.newSample(Cmd.TELEMETRY, TELEMETRY_TLVS_MAX);
    s.length = writeTelemetryTlvs(s.body, 0, m.telemetry(nowEpoch));
    st.generated++;
  }

  /** Appends a sample with the next seq and room for `bytes` of TLVs, reusing a consumed one. */
  private newSample(code: number, bytes: number): Sample {
    let s = this.free;
    if (s === null) {
      s = {
        seq: 0,
        code: 0,
        body: new Uint8Array(Math.max(SAMPLE_BYTES, bytes)),
        length: 0,
        sentAt: 0,
        lastSentAt: 0,
        nextFree: null,
      };
    } else {
      this.free = s.nextFree;
      s.nextFree = null;
      this.freeCount--;
      if (s.body.length < bytes) s.body = new Uint8Array(bytes);
    }
    s.seq = this.nextSeq++;
    s.code = code;
    s.length = 0;
    s.sentAt = 0;
    s.lastSentAt = 0;
    this.samples.push(s);
    return s;
  }

  /** Sends samples from sendPos while the window has room; batches telemetry in version 2. */
  private pump(now: number): void {
    const ctx = this.ctx;
    const st = ctx.stats;
    const sock = this.socket!;
    if (sock.writableLength > SOCKET_HIGH_WATER) {
      st.blocked++;
      return;
    }
    const samples = this.samples;
    const batch = this.sessionBatch;
    if (out.length - outPos < OUT_ROOM) {
      out = Buffer.allocUnsafeSlow(OUT_CHUNK);
      outPos = 0;
    }
    const buf = out;
    const start = outPos;
    let o = start;
    const window = Math.max(1, Math.floor(this.cwnd));
    while (this.sendPos < samples.length && this.sendPos - this.head < window) {
      const first = samples[this.sendPos]!;
      let n = 1;
      if (batch > 1 && first.code === Cmd.TELEMETRY) {
        while (
          n < batch &&
          this.sendPos + n < samples.length &&
          samples[this.sendPos + n]!.code === Cmd.TELEMETRY
        )
          n++;
        // A fresh batch waits for K samples unless an event follows or the run is ending.
        const ended = this.sendPos + n < samples.length || !ctx.generating || ctx.rate === 0;
        if (n < batch && !ended && first.sentAt === 0) break;
      }
      const len = n === 1 ? 4 + first.length : this.batchLength(n);
      if (o + encodedLength(len) > buf.length) break;
      if (n === 1 && len <= MAX_FRAME_DATA) {
        o = writeUplinkFrame(buf, o, first.code, first.seq, first.body, first.length);
      } else if (n === 1) {
        writeU32(scratch, 0, first.seq);
        copyBytes(scratch, 4, first.body, first.length);
        o = writeMessage(buf, o, first.code, scratch.subarray(0, len));
      } else {
        writeU32(scratch, 0, first.seq);
        scratch[4] = n;
        let p = 5;
        for (let i = 0; i < n; i++) {
          const s = samples[this.sendPos + i]!;
          writeU16(scratch, p, s.length);
          copyBytes(scratch, p + 2, s.body, s.length);
          p += 2 + s.length;
        }
        o = writeMessage(buf, o, Cmd.TELEMETRY_BATCH, scratch.subarray(0, p));
      }
      st.messages++;
      for (let i = 0; i < n; i++) {
        const s = samples[this.sendPos + i]!;
        s.lastSentAt = now;
        if (s.sentAt === 0) {
          s.sentAt = now;
          st.sent++;
          if (s.seq > this.sentThrough) this.sentThrough = s.seq;
        } else st.resent++;
      }
      this.sendPos += n;
    }
    if (o > start) {
      outPos = o;
      this.write(buf.subarray(start, o), now);
    }
  }

  private batchLength(n: number): number {
    let len = 5;
    for (let i = 0; i < n; i++) len += 2 + this.samples[this.sendPos + i]!.length;
    return len;
  }
}

const CONNACK_NAMES: Record<number, string> = {
  [ConnackStatus.UNSUPPORTED_VERSION]: 'UNSUPPORTED_VERSION',
  [ConnackStatus.BAD_CREDENTIALS]: 'BAD_CREDENTIALS',
  [ConnackStatus.FORBIDDEN]: 'FORBIDDEN',
  [ConnackStatus.SERVER_BUSY]: 'SERVER_BUSY',
  [ConnackStatus.INVALID]: 'INVALID',
};
