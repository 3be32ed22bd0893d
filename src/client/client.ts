// VehicleClient: the vehicle side of a VMCP session — connect, keepalive, reconnect, uplink outbox, commands, sensors.
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import {
  AckStatus,
  ByteWriter,
  Cmd,
  CommandResult,
  ConnackStatus,
  DEFAULT_MAX_MESSAGE_BYTES,
  DisconnectReason,
  ErrorCode,
  FrameDecoder,
  MAX_VERSION,
  MIN_VERSION,
  MessageAssembler,
  SensorStatus,
  decodeCommand,
  decodeConnack,
  decodeDisconnect,
  decodeError,
  decodeQueryResult,
  decodeSensorRead,
  decodeUplinkAck,
  encodeCommandAck,
  encodeConnect,
  encodeDisconnect,
  encodeError,
  encodeMessage,
  encodeQuery,
  encodeSensorData,
  cmdName,
  encodeUtf8,
  isValidVehicleId,
  type CommandMessage,
  type CommandResultCode,
  type ConnackMessage,
  type EventSample,
  type QueryResultMessage,
  type TelemetrySample,
} from '../protocol/index.js';
import { isVmcpError } from '../errors.js';
import {
  ClientProtocolError,
  ConnectRefusedError,
  GatewayErrorReceived,
  NotConnectedError,
  OutboxFullError,
  UplinkGapError,
  UplinkRefusedError,
  VehicleClientError,
} from './errors.js';
import {
  MAX_COMMAND_RECORDS,
  MemoryOutbox,
  type CommandRecord,
  type OutboxStore,
  type StoredUplink,
} from './outbox.js';
import { realTimers, type TimerHandle, type Timers } from './timers.js';
import {
  backoffDelay,
  formatGateway,
  parseGateway,
  tcpTransport,
  type BackoffOptions,
  type GatewayAddress,
  type Transport,
} from './transport.js';
import { copySample, eventTlvs, telemetryTlvs } from './validate.js';

/** What a command handler answers: a final result (4.2) with an optional JSON payload and message. */
export interface CommandOutcome {
  result: CommandResultCode;
  /** Any JSON-serialisable value, sent as RESULT_PAYLOAD. */
  payload?: unknown;
  message?: string;
}

export type CommandHandler = (cmd: CommandMessage) => Promise<CommandOutcome> | CommandOutcome;
export type SensorHandler = () => Promise<Uint8Array> | Uint8Array;

export interface VehicleClientOptions {
  /** VEHICLE_ID (2.1): 1–64 of `[A-Za-z0-9._:-]`. */
  vehicleId: string;
  /** `host:port` of each gateway; one is tried per attempt, in turn (7). */
  gateways: readonly string[];
  /** A JWT, or a function returning one (called on every attempt, so it can refresh). */
  token?: string | (() => string | Promise<string>);
  /** The registered secret (2.3): used when no token is known; the token issued in CONNACK is kept. */
  credential?: string | Uint8Array;
  /** TLS options (client `cert`/`key`, `ca`) for the gateway's mutual-TLS listener; omit for plain TCP. */
  tls?: ConnectionOptions;
  /** Proposed KEEPALIVE in seconds (default 60); the CONNACK's value is what is used (2.4). */
  keepaliveS?: number;
  /** [VERSION_MIN, VERSION_MAX] offered (default [1, 2]). */
  versions?: readonly [number, number];
  /** CLIENT_INFO, ≤ 128 bytes. */
  clientInfo?: string;
  reconnect?: Partial<BackoffOptions> & {
    /** A session at least this long resets the attempt count (default 60,000 ms, 7). */
    resetAfterMs?: number;
  };
  /** Clock and timers (default real); tests pass ManualTimers. */
  timers?: Timers;
  /** Source of jitter in [0, 1) (default Math.random). */
  random?: () => number;
  /** Where unacked messages, seqs, command results and the issued token live (default in memory). */
  outbox?: OutboxStore;
  /** Most unacked messages held; a publish beyond it rejects with OutboxFullError (default 10,000). */
  maxOutbox?: number;
  /** Most unacked messages on the wire at once (default 256). */
  maxInFlight?: number;
  /** Send telemetry as TELEMETRY_BATCH in version 2 sessions (5). */
  batch?: { maxSamples?: number; maxDelayMs?: number };
  /** Send IN_PROGRESS when a command handler runs longer than this (default 2,000 ms). */
  inProgressAfterMs?: number;
  /** Wait after THROTTLED before resending (default and minimum 1,000 ms, 3.2). */
  throttleWaitMs?: number;
  /** Give up an attempt without CONNACK after this long (default 10,000 ms). */
  connectTimeoutMs?: number;
  /** Largest message the gateway accepts (default 16,384 bytes, 1.2): batches are cut to fit. */
  maxMessageBytes?: number;
  /** How to open a connection (default TCP, or TLS when `tls` is set). */
  transport?: Transport;
}

export interface ConnectedInfo {
  sessionId: string;
  version: number;
  nextUplinkSeq: number;
  /** Negotiated keepalive in seconds. */
  keepalive: number;
  gateway: string;
}

export interface DisconnectedInfo {
  /** DISCONNECT REASON the gateway sent (6), when it sent one. */
  reason?: number;
  message?: string;
  /** Set when the client will try again: the delay before the next attempt. */
  willRetryInMs?: number;
  /** CONNACK STATUS when the gateway refused the session. */
  connackStatus?: number;
  /** Transport error that ended the attempt, if any. */
  error?: Error;
  /** True when the attempt reached CONNACK ACCEPTED. */
  wasConnected: boolean;
  gateway: string;
}

export interface AckedInfo {
  seq: number;
  status: number;
}

/** Typed events of VehicleClient. */
/** `count` messages never sent moved from seq `from` on to seq `to` on. */
export interface RenumberedInfo {
  from: number;
  to: number;
  count: number;
}

export interface VehicleClientEvents {
  connected: [ConnectedInfo];
  disconnected: [DisconnectedInfo];
  acked: [AckedInfo];
  /** Unsent messages moved to later seqs, the gateway having consumed theirs (a lost outbox). */
  renumbered: [RenumberedInfo];
  command: [CommandMessage];
  error: [Error];
  token: [string];
}

/** idle (not started or stopped) → connecting → connected → waiting (backoff) → connecting …; closed after a fatal refusal. */
export type ClientState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'closed';

const TRANSITIONS: Readonly<Record<ClientState, readonly ClientState[]>> = {
  idle: ['connecting'],
  connecting: ['connected', 'waiting', 'idle', 'closed'],
  connected: ['waiting', 'idle', 'closed'],
  waiting: ['connecting', 'idle'],
  closed: ['connecting', 'idle'],
};

/** CONNACK statuses after which retrying cannot help (see docs/sdk.md, "Reconnect policy"). */
const FATAL_CONNACK = new Set<number>([
  ConnackStatus.UNSUPPORTED_VERSION,
  ConnackStatus.BAD_CREDENTIALS,
  ConnackStatus.FORBIDDEN,
  ConnackStatus.INVALID,
]);

/** 2.4: after this many keepalive intervals without PONG the connection is closed. */
const MAX_KEEPALIVE_MISSES = 3;
/** 3.2: wait at least 1 s after THROTTLED. */
const MIN_THROTTLE_WAIT_MS = 1000;
/** 1.1: an incomplete frame that gets no byte for 2 s is discarded. */
const FRAME_TIMEOUT_MS = 2000;
/** A TELEMETRY_BATCH COUNT is one byte (5). */
const MAX_BATCH_SAMPLES = 255;

interface OutEntry {
  seq: number;
  kind: 'telemetry' | 'event';
  /** The sample's TLVs, encoded once. */
  tlv: Uint8Array;
  enqueuedAt: number;
  /**
   * The sample as published, kept until the message is first written to a socket: a message never
   * sent can take another seq (see renumberUnsent); one loaded from the store may have been sent.
   */
  unsent?: StoredUplink;
  resolve?: (seq: number) => void;
  reject?: (err: Error) => void;
}

interface RunningCommand {
  timer: TimerHandle | undefined;
  inProgressSent: boolean;
}

type AuthMode = 'issued' | 'token' | 'credential';

/** One transport connection and the session on it. */
interface Connection {
  readonly socket: Duplex;
  readonly gateway: string;
  readonly authMode: AuthMode;
  closed: boolean;
  accepted: boolean;
  version: number;
  keepaliveMs: number;
  connectedAt: number;
  /** write() returned false: uplink waits for 'drain'. */
  blocked: boolean;
  /** Next uplink seq to write on this connection. */
  cursor: number;
  /** Seq we last rewound to after OUT_OF_ORDER / THROTTLED. */
  rewoundTo: number | undefined;
  /**
   * OUT_OF_ORDER answers for `rewoundTo` still due for messages written before that rewind (3.2:
   * those pipelined behind the one that made us rewind): they are ignored. One more is about a
   * resent message, and means resending again.
   */
  staleOoo: number;
  /** FIRST seq of each message written since the last rewind, ascending (consumed ones dropped). */
  sentFirsts: number[];
  /** In-flight TELEMETRY_BATCH: LAST seq → FIRST seq (a batch's ack carries LAST, 5). */
  batches: Map<number, number>;
  throttledUntil: number;
  lastSentAt: number;
  lastByteAt: number;
  pingSentAt: number | undefined;
  misses: number;
  queries: { resolve: (r: QueryResultMessage) => void; reject: (e: Error) => void }[];
  // Why it ended, filled before the close.
  reason?: number;
  message?: string;
  retryAfterMs?: number;
  redirect?: string;
  connackStatus?: number;
  error?: Error;
  fatal?: Error;
  retryNow?: boolean;
}

/**
 * A vehicle's connection to the VMCP gateway (see docs/sdk.md).
 *
 * Uplink messages are kept in the outbox until the gateway acks them and resent after every
 * reconnect from NEXT_UPLINK_SEQ (3.2, 7); commands run at most once per seq (4.2).
 */
export class VehicleClient extends EventEmitter<VehicleClientEvents> {
  private stateValue: ClientState = 'idle';
  private readonly opts: {
    vehicleId: string;
    keepaliveS: number;
    versions: readonly [number, number];
    clientInfo: string | undefined;
    backoff: BackoffOptions;
    resetAfterMs: number;
    maxOutbox: number;
    maxInFlight: number;
    batch: { maxSamples: number; maxDelayMs: number } | undefined;
    inProgressAfterMs: number;
    throttleWaitMs: number;
    connectTimeoutMs: number;
    maxMessageBytes: number;
  };
  private readonly gateways: GatewayAddress[];
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly store: OutboxStore;
  private readonly transport: Transport;
  private readonly tls: ConnectionOptions | undefined;
  private readonly tokenSource: string | (() => string | Promise<string>) | undefined;
  private readonly credential: Uint8Array | undefined;

  // Reconnect
  private conn: Connection | undefined;
  private attempt = 0;
  private gatewayIndex = 0;
  private redirect: string | undefined;
  private reconnectTimer: TimerHandle | undefined;
  private connectTimer: TimerHandle | undefined;
  private keepaliveTimer: TimerHandle | undefined;
  private batchTimer: TimerHandle | undefined;
  private throttleTimer: TimerHandle | undefined;
  private frameTimer: TimerHandle | undefined;
  private issuedToken: string | undefined;
  private skipConfiguredToken = false;
  /** Bumped by stop() and every dial, so a dial resumed after an await knows it is stale. */
  private generation = 0;

  // Uplink outbox: every seq in [lowSeq, nextSeqValue) is held in `pending`.
  private readonly pending = new Map<number, OutEntry>();
  private lowSeq: number;
  private nextSeqValue: number;
  private pumpScheduled = false;

  // Downlink
  private readonly commandHandlers = new Map<string, CommandHandler>();
  private readonly sensorHandlers = new Map<number, SensorHandler>();
  private readonly records = new Map<number, CommandRecord>();
  private readonly running = new Map<number, RunningCommand>();
  private lastCommandSeqValue: number;

  constructor(options: VehicleClientOptions) {
    super();
    if (!isValidVehicleId(options.vehicleId))
      throw new TypeError(`vehicleId must match [A-Za-z0-9._:-]{1,64}, got "${options.vehicleId}"`);
    if (options.gateways.length === 0)
      throw new TypeError('gateways must name at least one host:port');
    if (options.token === undefined && options.credential === undefined)
      throw new TypeError('one of token or credential is required (PROTOCOL.md 2.1)');
    this.gateways = options.gateways.map(parseGateway);
    const versions = options.versions ?? [MIN_VERSION, MAX_VERSION];
    if (versions[0] > versions[1] || versions[0] < 1)
      throw new TypeError('versions must be [min, max] with 1 ≤ min ≤ max');
    // 2.1: KEEPALIVE is a u16 (0 means the default, 60); CLIENT_INFO at most 128 bytes of UTF-8.
    const keepaliveS = options.keepaliveS ?? 60;
    if (!Number.isInteger(keepaliveS) || keepaliveS < 0 || keepaliveS > 0xffff)
      throw new TypeError(`keepaliveS must be an integer in 0..65535, got ${String(keepaliveS)}`);
    if (options.clientInfo !== undefined && Buffer.byteLength(options.clientInfo, 'utf8') > 128)
      throw new TypeError('clientInfo must be at most 128 bytes of UTF-8 (PROTOCOL.md 2.1)');
    const batch = options.batch;
    this.opts = {
      vehicleId: options.vehicleId,
      keepaliveS,
      versions,
      clientInfo: options.clientInfo,
      backoff: {
        baseMs: options.reconnect?.baseMs ?? 1000,
        capMs: options.reconnect?.capMs ?? 60_000,
      },
      resetAfterMs: options.reconnect?.resetAfterMs ?? 60_000,
      maxOutbox: options.maxOutbox ?? 10_000,
      maxInFlight: Math.max(1, options.maxInFlight ?? 256),
      batch:
        batch === undefined
          ? undefined
          : {
              maxSamples: Math.min(MAX_BATCH_SAMPLES, Math.max(1, batch.maxSamples ?? 50)),
              maxDelayMs: Math.max(0, batch.maxDelayMs ?? 100),
            },
      inProgressAfterMs: options.inProgressAfterMs ?? 2000,
      throttleWaitMs: Math.max(
        MIN_THROTTLE_WAIT_MS,
        options.throttleWaitMs ?? MIN_THROTTLE_WAIT_MS,
      ),
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      maxMessageBytes: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    };
    this.timers = options.timers ?? realTimers;
    this.random = options.random ?? Math.random;
    this.store = options.outbox ?? new MemoryOutbox();
    this.transport = options.transport ?? tcpTransport;
    this.tls = options.tls;
    this.tokenSource = options.token;
    this.credential =
      typeof options.credential === 'string' ? encodeUtf8(options.credential) : options.credential;

    const snap = this.store.load();
    this.nextSeqValue = snap.nextSeq;
    this.lowSeq = snap.unacked[0]?.seq ?? snap.nextSeq;
    for (const m of snap.unacked) {
      let tlv: Uint8Array;
      try {
        tlv =
          m.kind === 'telemetry'
            ? telemetryTlvs(m.sample, Infinity)
            : eventTlvs(m.sample, Infinity);
      } catch {
        // A damaged stored sample cannot be skipped (that would leave a gap, 3.2): sent empty, the
        // gateway answers REJECTED and the seq is consumed as a hole.
        tlv = new Uint8Array(0);
      }
      this.pending.set(m.seq, { seq: m.seq, kind: m.kind, tlv, enqueuedAt: -Infinity });
    }
    for (const rec of snap.commands) this.records.set(rec.seq, rec);
    this.lastCommandSeqValue = snap.lastCommandSeq;
    this.issuedToken = snap.token;
  }

  // ---- public surface -------------------------------------------------------------------------

  get state(): ClientState {
    return this.stateValue;
  }

  /** The seq the next publish gets. */
  get nextSeq(): number {
    return this.nextSeqValue;
  }

  /** Messages held until the gateway acks them. */
  get unacked(): number {
    return this.pending.size;
  }

  /** CONNECT's LAST_COMMAND_SEQ: the highest command seq finished. */
  get lastCommandSeq(): number {
    return this.lastCommandSeqValue;
  }

  /** The token issued by the gateway in CONNACK, if any. */
  get token(): string | undefined {
    return this.issuedToken;
  }

  /** Connects (and keeps reconnecting) until stop(). Messages published before start() wait in the outbox. */
  start(): void {
    if (this.stateValue !== 'idle' && this.stateValue !== 'closed') return;
    this.attempt = 0;
    this.transition('connecting');
    void this.dial();
  }

  /**
   * Sends DISCONNECT NORMAL, closes, and stops reconnecting. Unacked messages stay in the outbox
   * (their promises stay pending) and are resent after the next start() — by this client or, with
   * a FileOutbox, a new one.
   */
  async stop(): Promise<void> {
    this.clearTimer('reconnectTimer');
    this.generation++;
    const conn = this.conn;
    if (this.stateValue !== 'idle') this.transition('idle');
    if (conn === undefined || conn.closed) return;
    conn.message ??= 'stopped';
    await new Promise<void>((resolve) => {
      conn.socket.once('close', () => resolve());
      if (!conn.accepted) {
        conn.socket.destroy(); // nothing to say before CONNACK
        return;
      }
      this.write(conn, Cmd.DISCONNECT, encodeDisconnect({ reason: DisconnectReason.NORMAL }));
      conn.socket.end(() => conn.socket.destroy());
    });
  }

  /** Queues a telemetry sample; resolves with its seq once the gateway STORED it (3.2). */
  publishTelemetry(sample: TelemetrySample): Promise<number> {
    return this.publish('telemetry', sample);
  }

  /** Queues an event; resolves with its seq once the gateway STORED it (3.2). */
  publishEvent(event: EventSample): Promise<number> {
    return this.publish('event', event);
  }

  /** Registers the handler of a command NAME (4.1). Unknown names are answered UNSUPPORTED. */
  onCommand(name: string, handler: CommandHandler): this {
    this.commandHandlers.set(name, handler);
    return this;
  }

  /** Registers the reader of a sensor channel (4.3). Unknown channels answer status 1. */
  onSensorRead(channel: number, handler: SensorHandler): this {
    if (!Number.isInteger(channel) || channel < 0 || channel > 255)
      throw new RangeError('channel is 0–255');
    this.sensorHandlers.set(channel, handler);
    return this;
  }

  /** QUERY (version 2 sessions, 5): answered in order. Rejects with NotConnectedError without a session. */
  query(query: number): Promise<QueryResultMessage> {
    const conn = this.conn;
    if (conn === undefined || !conn.accepted || conn.closed)
      return Promise.reject(new NotConnectedError());
    if (conn.version < 2)
      return Promise.reject(new NotConnectedError('QUERY needs a version 2 session'));
    return new Promise((resolve, reject) => {
      conn.queries.push({ resolve, reject });
      this.write(conn, Cmd.QUERY, encodeQuery({ query }));
    });
  }

  // ---- state and connection lifecycle -----------------------------------------------------------

  private transition(next: ClientState): void {
    const from = this.stateValue;
    if (!TRANSITIONS[from].includes(next))
      throw new ClientProtocolError(`illegal client state change ${from} → ${next}`);
    this.stateValue = next;
  }

  private emitError(err: Error): void {
    // An SDK must not crash its host: without a listener, errors are only visible through state and events.
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private nextTarget(): string {
    if (this.redirect !== undefined) {
      const target = this.redirect;
      this.redirect = undefined;
      return target;
    }
    const target = this.gateways[this.gatewayIndex % this.gateways.length]!;
    this.gatewayIndex = (this.gatewayIndex + 1) % this.gateways.length;
    return formatGateway(target);
  }

  private async resolveAuth(): Promise<{
    mode: AuthMode;
    token?: string;
    credential?: Uint8Array;
  }> {
    if (this.issuedToken !== undefined) return { mode: 'issued', token: this.issuedToken };
    if (
      this.tokenSource !== undefined &&
      !(this.skipConfiguredToken && this.credential !== undefined)
    ) {
      const token =
        typeof this.tokenSource === 'string' ? this.tokenSource : await this.tokenSource();
      return { mode: 'token', token };
    }
    return { mode: 'credential', credential: this.credential! };
  }

  private async dial(): Promise<void> {
    const generation = ++this.generation;
    const target = this.nextTarget();
    let auth: { mode: AuthMode; token?: string; credential?: Uint8Array };
    let address: GatewayAddress;
    try {
      address = parseGateway(target);
      auth = await this.resolveAuth();
    } catch (err) {
      if (generation !== this.generation) return;
      const error = err instanceof Error ? err : new Error(String(err));
      this.emitError(error);
      this.scheduleReconnect({ wasConnected: false, gateway: target, error }, undefined, false);
      return;
    }
    if (generation !== this.generation) return; // stopped while the token was fetched
    let socket: Duplex;
    try {
      socket = this.transport(address, this.tls);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.scheduleReconnect({ wasConnected: false, gateway: target, error }, undefined, false);
      return;
    }
    const now = this.timers.now();
    const conn: Connection = {
      socket,
      gateway: target,
      authMode: auth.mode,
      closed: false,
      accepted: false,
      version: 0,
      keepaliveMs: 0,
      connectedAt: now,
      blocked: false,
      cursor: this.lowSeq,
      rewoundTo: undefined,
      staleOoo: 0,
      sentFirsts: [],
      batches: new Map(),
      throttledUntil: 0,
      lastSentAt: now,
      lastByteAt: now,
      pingSentAt: undefined,
      misses: 0,
      queries: [],
    };
    this.conn = conn;
    const decoder = new FrameDecoder(
      new MessageAssembler(
        {
          onMessage: (code, data) => this.onMessage(conn, code, data),
          onBrokenRun: () => undefined,
          onTooLarge: (code) => this.onTooLarge(conn, code),
          onBadFrame: () => undefined,
          onGarbage: () => undefined,
        },
        // Our own limit on what we buffer; a COMMAND with large PARAMS still fits.
        Math.max(this.opts.maxMessageBytes, DEFAULT_MAX_MESSAGE_BYTES),
      ),
    );
    socket.on('data', (chunk: Uint8Array) => {
      if (conn.closed) return;
      conn.lastByteAt = this.timers.now();
      decoder.push(chunk);
      if (decoder.hasPartialFrame && this.frameTimer === undefined)
        this.armFrameTimer(conn, decoder, FRAME_TIMEOUT_MS);
    });
    socket.on('error', (err: Error) => {
      conn.error ??= err;
    });
    // Duplex pairs keep a half-open side; a gateway that ends its side has closed the session.
    socket.on('end', () => socket.destroy());
    socket.on('close', () => this.onClose(conn));
    socket.on('drain', () => {
      conn.blocked = false;
      this.schedulePump();
    });
    this.connectTimer = this.timers.setTimeout(() => {
      this.connectTimer = undefined;
      if (conn.closed || conn.accepted) return;
      conn.message ??= 'no CONNACK in time';
      socket.destroy();
    }, this.opts.connectTimeoutMs);
    this.write(
      conn,
      Cmd.CONNECT,
      encodeConnect({
        versionMin: this.opts.versions[0],
        versionMax: this.opts.versions[1],
        vehicleId: this.opts.vehicleId,
        token: auth.token,
        credential: auth.credential,
        keepalive: this.opts.keepaliveS,
        lastCommandSeq: this.lastCommandSeqValue,
        clientInfo: this.opts.clientInfo,
      }),
    );
  }

  private onClose(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    for (const q of conn.queries) q.reject(new NotConnectedError('session ended'));
    conn.queries = [];
    if (conn !== this.conn) return;
    this.conn = undefined;
    for (const t of [
      'connectTimer',
      'keepaliveTimer',
      'batchTimer',
      'throttleTimer',
      'frameTimer',
    ] as const)
      this.clearTimer(t);
    const info: DisconnectedInfo = { wasConnected: conn.accepted, gateway: conn.gateway };
    if (conn.reason !== undefined) info.reason = conn.reason;
    if (conn.message !== undefined) info.message = conn.message;
    if (conn.connackStatus !== undefined) info.connackStatus = conn.connackStatus;
    if (conn.error !== undefined) info.error = conn.error;
    if (conn.accepted && this.timers.now() - conn.connectedAt >= this.opts.resetAfterMs)
      this.attempt = 0; // 7: a session that lasted resets the backoff
    if (this.stateValue === 'idle') {
      this.emit('disconnected', info);
      return;
    }
    if (conn.fatal !== undefined) {
      this.transition('closed');
      this.emitError(conn.fatal);
      this.emit('disconnected', info);
      return;
    }
    if (conn.redirect !== undefined) this.redirect = conn.redirect;
    this.scheduleReconnect(info, conn.retryAfterMs, conn.retryNow === true);
  }

  /** 7: wait min(cap, base × 2^attempt) × random(0.5, 1.0), or exactly RETRY_AFTER_MS when the gateway gave one. */
  private scheduleReconnect(
    info: DisconnectedInfo,
    retryAfterMs: number | undefined,
    now: boolean,
  ): void {
    let delay: number;
    if (now) delay = 0;
    else if (retryAfterMs !== undefined) {
      delay = retryAfterMs;
      this.attempt++;
    } else delay = backoffDelay(this.attempt++, this.opts.backoff, this.random());
    this.transition('waiting');
    this.reconnectTimer = this.timers.setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.stateValue !== 'waiting') return;
      this.transition('connecting');
      void this.dial();
    }, delay);
    info.willRetryInMs = delay;
    this.emit('disconnected', info);
  }

  /**
   * 1.1 frame timeout, one timer per client: armed when a chunk leaves an incomplete frame, it
   * re-arms for the remainder while bytes keep arriving and discards the frame after 2 s of silence.
   */
  private armFrameTimer(conn: Connection, decoder: FrameDecoder, ms: number): void {
    this.frameTimer = this.timers.setTimeout(() => {
      this.frameTimer = undefined;
      if (conn.closed || conn !== this.conn || !decoder.hasPartialFrame) return;
      const quietFor = this.timers.now() - conn.lastByteAt;
      if (quietFor >= FRAME_TIMEOUT_MS) decoder.expirePartialFrame();
      else this.armFrameTimer(conn, decoder, FRAME_TIMEOUT_MS - quietFor);
    }, ms);
  }

  private clearTimer(
    name:
      | 'reconnectTimer'
      | 'connectTimer'
      | 'keepaliveTimer'
      | 'batchTimer'
      | 'throttleTimer'
      | 'frameTimer',
  ): void {
    const t = this[name];
    if (t !== undefined) {
      this.timers.clearTimeout(t);
      this[name] = undefined;
    }
  }

  /** Closes the transport; onClose decides what follows from what `conn` recorded. */
  private drop(conn: Connection, message: string): void {
    conn.message ??= message;
    conn.socket.destroy();
  }

  private write(conn: Connection, code: number, data: Uint8Array): boolean {
    return this.writeBytes(conn, encodeMessage(code, data));
  }

  private writeBytes(conn: Connection, bytes: Uint8Array): boolean {
    if (conn.closed || conn.socket.destroyed || !conn.socket.writable) return false;
    conn.lastSentAt = this.timers.now();
    const ok = conn.socket.write(bytes);
    if (!ok) conn.blocked = true;
    return ok;
  }

  // ---- incoming messages ------------------------------------------------------------------------

  private onMessage(conn: Connection, code: number, data: Uint8Array): void {
    // After stop() the connection only drains: nothing it receives matters any more.
    if (conn.closed || conn !== this.conn || this.stateValue === 'idle') return;
    try {
      if (!conn.accepted) {
        // 2: before CONNACK only CONNACK, or the gateway's last words, can arrive.
        if (code === Cmd.CONNACK) this.onConnack(conn, data);
        else if (code === Cmd.DISCONNECT) this.onDisconnect(conn, data);
        else if (code === Cmd.ERROR) this.onError(data);
        return;
      }
      switch (code) {
        case Cmd.PING:
          // 2.4: a PING with more than 8 bytes gets ERROR INVALID_DATA and no PONG.
          if (data.length > 8)
            this.write(
              conn,
              Cmd.ERROR,
              encodeError({ code: ErrorCode.INVALID_DATA, refCmd: Cmd.PING }),
            );
          else this.write(conn, Cmd.PONG, data);
          return;
        case Cmd.PONG:
          conn.pingSentAt = undefined;
          conn.misses = 0;
          return;
        case Cmd.UPLINK_ACK: {
          const ack = decodeUplinkAck(data);
          this.onUplinkAck(conn, ack.seq, ack.status);
          return;
        }
        case Cmd.COMMAND:
          this.onCommandMessage(conn, data);
          return;
        case Cmd.SENSOR_READ:
          this.onSensorReadMessage(conn, data);
          return;
        case Cmd.QUERY_RESULT: {
          const q = conn.queries.shift();
          q?.resolve(decodeQueryResult(data));
          return;
        }
        case Cmd.ERROR:
          this.onError(data);
          return;
        case Cmd.DISCONNECT:
          this.onDisconnect(conn, data);
          return;
        default:
          this.write(
            conn,
            Cmd.ERROR,
            encodeError({ code: ErrorCode.UNKNOWN_COMMAND, refCmd: code & 0x7f }),
          );
      }
    } catch (err) {
      if (!isVmcpError(err)) {
        // A listener of ours threw: report it rather than tear down the session.
        this.emitError(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      // Undecodable DATA from the gateway: tell it (6) and carry on, except before CONNACK: an
      // attempt whose CONNACK cannot be read has failed, and is retried with backoff (7).
      this.emitError(
        new ClientProtocolError(`bad message ${cmdName(code)} from gateway`, { cause: err }),
      );
      if (!conn.closed)
        this.write(conn, Cmd.ERROR, encodeError({ code: ErrorCode.INVALID_DATA, refCmd: code }));
      if (!conn.accepted) this.drop(conn, `malformed ${cmdName(code)}`);
    }
  }

  /** A message from the gateway over our size limit (1.2): dropped whole, and the gateway told. */
  private onTooLarge(conn: Connection, code: number): void {
    this.emitError(new ClientProtocolError(`${cmdName(code)} from gateway over the message limit`));
    if (!conn.closed)
      this.write(conn, Cmd.ERROR, encodeError({ code: ErrorCode.TOO_LARGE, refCmd: code }));
  }

  private onConnack(conn: Connection, data: Uint8Array): void {
    this.clearTimer('connectTimer');
    const ack = decodeConnack(data);
    if (ack.status !== ConnackStatus.ACCEPTED) {
      this.onRefused(conn, ack);
      return;
    }
    const now = this.timers.now();
    conn.accepted = true;
    conn.version = ack.version;
    conn.connectedAt = now;
    conn.keepaliveMs = (ack.keepalive ?? this.opts.keepaliveS) * 1000;
    this.transition('connected');
    if (ack.token !== undefined) {
      this.issuedToken = ack.token;
      this.persist(() => this.store.saveToken(ack.token));
      this.emit('token', ack.token);
    }
    // 7: everything below NEXT_UPLINK_SEQ is consumed; resend the rest in order.
    const next = ack.nextUplinkSeq ?? this.lowSeq;
    if (next < this.lowSeq) {
      this.emitError(new UplinkGapError(next, this.lowSeq));
      conn.message = 'gateway expects an uplink seq the outbox no longer holds';
      conn.socket.destroy();
      return;
    }
    this.renumberUnsent(next);
    this.consumeUpTo(next - 1);
    conn.cursor = this.lowSeq;
    this.armKeepalive(conn);
    // Results finished while offline: the gateway still waits for them (4.2).
    for (const rec of [...this.records.values()].sort((a, b) => a.seq - b.seq))
      if (!rec.reported) this.sendCommandResult(conn, rec);
    this.emit('connected', {
      sessionId: ack.sessionId ?? '',
      version: ack.version,
      nextUplinkSeq: next,
      keepalive: conn.keepaliveMs / 1000,
      gateway: conn.gateway,
    });
    this.pump();
  }

  private onRefused(conn: Connection, ack: ConnackMessage): void {
    conn.connackStatus = ack.status;
    if (ack.reason !== undefined) conn.message = ack.reason;
    if (ack.status === ConnackStatus.BAD_CREDENTIALS && this.canFallBack(conn.authMode)) {
      // The issued token expired or was refused: forget it and register again with what we were given.
      if (conn.authMode === 'issued') {
        this.issuedToken = undefined;
        this.persist(() => this.store.saveToken(undefined));
      } else this.skipConfiguredToken = true;
      conn.retryNow = true;
    } else if (FATAL_CONNACK.has(ack.status)) {
      conn.fatal = new ConnectRefusedError(ack.status, ack.reason, true);
    } else {
      // SERVER_BUSY (or a status this SDK does not know): retry, honouring the gateway's advice.
      if (ack.retryAfterMs !== undefined) conn.retryAfterMs = ack.retryAfterMs;
      if (ack.redirect !== undefined) conn.redirect = ack.redirect;
    }
    // 2.2: the gateway closes after a refusing CONNACK; do not wait for it.
    conn.socket.destroy();
  }

  private canFallBack(mode: AuthMode): boolean {
    if (mode === 'issued') return this.tokenSource !== undefined || this.credential !== undefined;
    return mode === 'token' && this.credential !== undefined;
  }

  private onDisconnect(conn: Connection, data: Uint8Array): void {
    const d = decodeDisconnect(data);
    conn.reason = d.reason;
    if (d.message !== undefined) conn.message = d.message;
    if (d.retryAfterMs !== undefined) conn.retryAfterMs = d.retryAfterMs;
    if (d.redirect !== undefined) conn.redirect = d.redirect;
    conn.socket.destroy();
  }

  private onError(data: Uint8Array): void {
    const e = decodeError(data);
    this.emitError(new GatewayErrorReceived(e.code, e.refCmd, e.refSeq, e.message));
  }

  // ---- keepalive (2.4) -----------------------------------------------------------------------

  /**
   * One timer per client: it fires at the next deadline (idle for KEEPALIVE → PING; PING unanswered
   * for KEEPALIVE → a miss) and re-arms itself. Sending only updates `lastSentAt`.
   */
  /**
   * 2.4: PING when nothing was sent for KEEPALIVE. Also when nothing was received for KEEPALIVE:
   * a vehicle that publishes all the time never idles, and a gateway that takes bytes but answers
   * nothing (acks included) would never be noticed; either side may PING, and misses close it.
   */
  private quietSince(conn: Connection): number {
    return Math.min(conn.lastSentAt, conn.lastByteAt);
  }

  private armKeepalive(conn: Connection): void {
    if (conn.keepaliveMs <= 0) return;
    const due = (conn.pingSentAt ?? this.quietSince(conn)) + conn.keepaliveMs;
    this.keepaliveTimer = this.timers.setTimeout(
      () => this.onKeepaliveTimer(conn),
      Math.max(0, due - this.timers.now()),
    );
  }

  private onKeepaliveTimer(conn: Connection): void {
    this.keepaliveTimer = undefined;
    if (conn.closed || conn !== this.conn) return;
    const now = this.timers.now();
    const k = conn.keepaliveMs;
    if (conn.pingSentAt !== undefined) {
      if (now >= conn.pingSentAt + k) {
        conn.misses++;
        if (conn.misses >= MAX_KEEPALIVE_MISSES) {
          this.drop(conn, `no PONG for ${MAX_KEEPALIVE_MISSES} keepalive intervals`);
          return;
        }
        this.sendPing(conn, now);
      }
    } else if (now >= this.quietSince(conn) + k) {
      this.sendPing(conn, now);
    }
    this.armKeepalive(conn);
  }

  private sendPing(conn: Connection, now: number): void {
    conn.pingSentAt = now;
    this.write(conn, Cmd.PING, new Uint8Array(0));
  }

  // ---- uplink -----------------------------------------------------------------------------------

  private publish(
    kind: 'telemetry' | 'event',
    sample: TelemetrySample | EventSample,
  ): Promise<number> {
    if (this.pending.size >= this.opts.maxOutbox)
      return Promise.reject(new OutboxFullError(this.opts.maxOutbox));
    let tlv: Uint8Array;
    try {
      tlv =
        kind === 'telemetry'
          ? telemetryTlvs(sample, this.opts.maxMessageBytes)
          : eventTlvs(sample as EventSample, this.opts.maxMessageBytes);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const seq = this.nextSeqValue;
    const stored: StoredUplink =
      kind === 'telemetry'
        ? { seq, kind, sample: copySample(sample) }
        : { seq, kind, sample: copySample(sample) as EventSample };
    try {
      this.store.append(stored);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.nextSeqValue = seq + 1;
    const entry: OutEntry = { seq, kind, tlv, enqueuedAt: this.timers.now(), unsent: stored };
    this.pending.set(seq, entry);
    const promise = new Promise<number>((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    this.schedulePump();
    return promise;
  }

  /**
   * Messages never written to a socket whose seqs the gateway says are consumed (NEXT_UPLINK_SEQ past
   * them) cannot be those seqs: the gateway stored other messages under them, from before this
   * client's outbox was lost or replaced. Resolving them would report data as stored that never left
   * the vehicle; instead they move, in order, to the seqs from `next` on (persisted before sending).
   * Unsent messages are always the newest (sending goes in seq order), so order is kept.
   */
  private renumberUnsent(next: number): void {
    let first = this.nextSeqValue;
    for (let seq = this.nextSeqValue - 1; seq >= this.lowSeq; seq--) {
      const e = this.pending.get(seq);
      if (e === undefined || e.unsent === undefined) break;
      first = seq;
    }
    if (first >= next || first >= this.nextSeqValue) return;
    const by = next - first;
    const moved: OutEntry[] = [];
    for (let seq = first; seq < this.nextSeqValue; seq++) {
      moved.push(this.pending.get(seq)!);
      this.pending.delete(seq);
    }
    for (const e of moved) {
      e.seq += by;
      e.unsent!.seq = e.seq;
      this.pending.set(e.seq, e);
    }
    this.nextSeqValue += by;
    // Durable before any of them is sent. A store without renumber gets them appended again: their
    // new seqs are all past its consumed mark (consumeUpTo moves it to next - 1 only afterwards).
    const store = this.store;
    this.persist(() => {
      if (store.renumber !== undefined) store.renumber(first, by);
      else for (const e of moved) store.append(e.unsent!);
    });
    this.emit('renumbered', { from: first, to: next, count: moved.length });
  }

  /**
   * Every seq ≤ upTo is consumed (3.2). Held messages resolve, except those from `refused.from` on,
   * which the gateway consumed without storing (REJECTED / FORBIDDEN).
   */
  private consumeUpTo(
    upTo: number,
    refused?: { from: number; status: number; batch?: { firstSeq: number; lastSeq: number } },
  ): void {
    if (upTo < this.lowSeq) return;
    const end = Math.min(upTo, this.nextSeqValue - 1);
    for (let seq = this.lowSeq; seq <= end; seq++) {
      const e = this.pending.get(seq);
      if (e === undefined) continue;
      this.pending.delete(seq);
      if (refused !== undefined && seq >= refused.from)
        e.reject?.(new UplinkRefusedError(seq, refused.status, refused.batch));
      else e.resolve?.(seq);
    }
    this.lowSeq = upTo + 1;
    // The gateway knows a later seq than we do (our store was lost): never reuse a consumed seq.
    if (this.nextSeqValue < this.lowSeq) this.nextSeqValue = this.lowSeq;
    this.persist(() => this.store.consume(upTo));
    const conn = this.conn;
    if (conn !== undefined) {
      if (conn.cursor < this.lowSeq) conn.cursor = this.lowSeq;
      if (conn.rewoundTo !== undefined && conn.rewoundTo < this.lowSeq) conn.rewoundTo = undefined;
      while (conn.sentFirsts.length > 0 && conn.sentFirsts[0]! < this.lowSeq)
        conn.sentFirsts.shift();
      for (const last of conn.batches.keys()) if (last <= upTo) conn.batches.delete(last);
    }
  }

  private onUplinkAck(conn: Connection, seq: number, status: number): void {
    switch (status) {
      case AckStatus.STORED:
      case AckStatus.DUPLICATE: // consumed earlier: as good as stored for the caller
        this.consumeUpTo(seq);
        break;
      case AckStatus.REJECTED:
      case AckStatus.FORBIDDEN: {
        const first = conn.batches.get(seq);
        this.consumeUpTo(seq, {
          from: first ?? seq,
          status,
          ...(first === undefined ? {} : { batch: { firstSeq: first, lastSeq: seq } }),
        });
        break;
      }
      case AckStatus.OUT_OF_ORDER:
        this.rewind(conn, seq, false);
        break;
      case AckStatus.THROTTLED:
        this.rewind(conn, seq, true);
        break;
      default:
        break; // a status this SDK does not know: wait for the next ack
    }
    this.emit('acked', { seq, status });
    this.schedulePump();
  }

  /**
   * OUT_OF_ORDER / THROTTLED: SEQ is the seq the gateway expects next; resend from it. The seqs
   * before it are not taken as stored: the gateway may still be committing them (their STORED comes
   * after the commit, and a failed commit answers with a lower SEQ), so they stay in the outbox.
   */
  private rewind(conn: Connection, seq: number, throttled: boolean): void {
    if (conn.closed) return;
    if (seq < this.lowSeq) {
      this.emitError(new UplinkGapError(seq, this.lowSeq));
      this.drop(conn, 'gateway expects an uplink seq the outbox no longer holds');
      return;
    }
    if (throttled) {
      conn.throttledUntil = this.timers.now() + this.opts.throttleWaitMs;
      this.clearTimer('throttleTimer');
      this.wakeAfterThrottle(this.opts.throttleWaitMs);
    } else if (conn.rewoundTo === seq && conn.staleOoo > 0) {
      // Messages pipelined behind the one that made us rewind get OUT_OF_ORDER too (3.2): already handled.
      conn.staleOoo--;
      return;
    }
    // Every message written since the last rewind with a FIRST seq above `seq` gets OUT_OF_ORDER:
    // all but the one answered now (for THROTTLED, all: the throttled one has seq `seq`).
    let later = 0;
    for (const first of conn.sentFirsts) if (first > seq) later++;
    conn.staleOoo = Math.max(0, throttled ? later : later - 1);
    conn.sentFirsts = [];
    conn.rewoundTo = seq;
    conn.cursor = seq;
    conn.batches.clear();
  }

  /** Pumps again once a THROTTLED wait is over (one timer at a time). */
  private wakeAfterThrottle(ms: number): void {
    if (this.throttleTimer !== undefined) return;
    this.throttleTimer = this.timers.setTimeout(() => {
      this.throttleTimer = undefined;
      this.schedulePump();
    }, ms);
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    // Coalesce: publishes in one tick go out in one write.
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Writes unsent messages from the connection's cursor, within maxInFlight, as one chunk. */
  private pump(): void {
    const conn = this.conn;
    if (this.stateValue !== 'connected' || conn === undefined || conn.closed || conn.blocked)
      return;
    const now = this.timers.now();
    if (now < conn.throttledUntil) {
      // A timer may fire a little before the clock reaches the end of the wait: never leave the
      // outbox without a wake-up for the rest of it.
      this.wakeAfterThrottle(conn.throttledUntil - now);
      return;
    }
    const batching = this.opts.batch !== undefined && conn.version >= 2;
    const chunks: Uint8Array[] = [];
    while (conn.cursor < this.nextSeqValue && conn.cursor - this.lowSeq < this.opts.maxInFlight) {
      const first = this.pending.get(conn.cursor);
      if (first === undefined) {
        conn.cursor++;
        continue;
      }
      if (batching && first.kind === 'telemetry') {
        const room = this.opts.maxInFlight - (conn.cursor - this.lowSeq);
        const samples = this.collectBatch(conn.cursor, Math.min(room, this.opts.batch!.maxSamples));
        const reachesEnd = conn.cursor + samples.length === this.nextSeqValue;
        const due = first.enqueuedAt + this.opts.batch!.maxDelayMs;
        if (samples.length < this.opts.batch!.maxSamples && reachesEnd && now < due) {
          // More samples may come: wait up to maxDelayMs from the oldest (5).
          if (this.batchTimer === undefined)
            this.batchTimer = this.timers.setTimeout(() => {
              this.batchTimer = undefined;
              this.schedulePump();
            }, due - now);
          break;
        }
        if (samples.length > 1) {
          for (const e of samples) e.unsent = undefined;
          chunks.push(encodeMessage(Cmd.TELEMETRY_BATCH, this.batchData(conn.cursor, samples)));
          conn.batches.set(conn.cursor + samples.length - 1, conn.cursor);
          conn.sentFirsts.push(conn.cursor);
          conn.cursor += samples.length;
          continue;
        }
      }
      chunks.push(
        encodeMessage(
          first.kind === 'telemetry' ? Cmd.TELEMETRY : Cmd.EVENT,
          new ByteWriter(4 + first.tlv.length).u32(first.seq).bytes(first.tlv).finish(),
        ),
      );
      first.unsent = undefined;
      conn.sentFirsts.push(first.seq);
      conn.cursor++;
    }
    if (chunks.length === 0) return;
    this.writeBytes(conn, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
  }

  /** Contiguous telemetry from `from`, at most `max` samples and one message's bytes. */
  private collectBatch(from: number, max: number): OutEntry[] {
    const out: OutEntry[] = [];
    let bytes = 5; // FIRST_SEQ u32 + COUNT u8
    for (let seq = from; seq < this.nextSeqValue && out.length < max; seq++) {
      const e = this.pending.get(seq);
      if (e === undefined || e.kind !== 'telemetry') break;
      if (bytes + 2 + e.tlv.length > this.opts.maxMessageBytes) break;
      bytes += 2 + e.tlv.length;
      out.push(e);
    }
    return out;
  }

  private batchData(firstSeq: number, samples: OutEntry[]): Uint8Array {
    let size = 5;
    for (const s of samples) size += 2 + s.tlv.length;
    const w = new ByteWriter(size).u32(firstSeq).u8(samples.length);
    for (const s of samples) w.u16(s.tlv.length).bytes(s.tlv);
    return w.finish();
  }

  private persist(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.emitError(
        err instanceof Error ? err : new VehicleClientError('VMCP_CLIENT_STORE', String(err)),
      );
    }
  }

  // ---- downlink (4) -------------------------------------------------------------------------

  private onCommandMessage(conn: Connection, data: Uint8Array): void {
    let cmd: CommandMessage;
    try {
      cmd = decodeCommand(data);
    } catch (err) {
      const seq =
        data.length >= 4 ? new DataView(data.buffer, data.byteOffset).getUint32(0) : undefined;
      this.emitError(new ClientProtocolError('undecodable COMMAND', { cause: err }));
      this.write(
        conn,
        Cmd.ERROR,
        encodeError({ code: ErrorCode.INVALID_DATA, refCmd: Cmd.COMMAND, refSeq: seq }),
      );
      return;
    }
    // 4.2: a seq received again answers the recorded result without running again.
    const rec = this.records.get(cmd.seq);
    if (rec !== undefined) {
      this.sendCommandResult(conn, rec);
      return;
    }
    const run = this.running.get(cmd.seq);
    if (run !== undefined) {
      if (run.inProgressSent) this.sendAck(conn, cmd.seq, CommandResult.IN_PROGRESS);
      return;
    }
    this.emit('command', cmd);
    if (this.timers.now() > cmd.expiresAt) {
      this.finishCommand(cmd.seq, { result: CommandResult.EXPIRED });
      return;
    }
    const handler = this.commandHandlers.get(cmd.name);
    if (handler === undefined) {
      this.finishCommand(cmd.seq, {
        result: CommandResult.UNSUPPORTED,
        message: `no handler for ${cmd.name}`,
      });
      return;
    }
    // 4.2 at most once, across a crash too: the start is durable before the handler runs.
    try {
      this.store.markStarted?.(cmd.seq);
    } catch (err) {
      this.emitError(err instanceof Error ? err : new Error(String(err)));
      this.finishCommand(cmd.seq, {
        result: CommandResult.FAILED,
        message: 'not run: its start could not be recorded',
      });
      return;
    }
    const state: RunningCommand = { timer: undefined, inProgressSent: false };
    this.running.set(cmd.seq, state);
    state.timer = this.timers.setTimeout(() => {
      state.timer = undefined;
      if (!this.running.has(cmd.seq)) return;
      state.inProgressSent = true;
      const live = this.conn;
      if (live !== undefined && live.accepted && !live.closed)
        this.sendAck(live, cmd.seq, CommandResult.IN_PROGRESS);
    }, this.opts.inProgressAfterMs);
    let outcome: Promise<CommandOutcome>;
    try {
      outcome = Promise.resolve(handler(cmd));
    } catch (err) {
      outcome = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    outcome.then(
      (o) => this.finishCommand(cmd.seq, o),
      (err: unknown) =>
        this.finishCommand(cmd.seq, {
          result: CommandResult.FAILED,
          message: err instanceof Error ? err.message : String(err),
        }),
    );
  }

  /** Records the final result (durably with a file store) and reports it if a session is up. */
  private finishCommand(seq: number, outcome: CommandOutcome): void {
    const run = this.running.get(seq);
    if (run?.timer !== undefined) this.timers.clearTimeout(run.timer);
    this.running.delete(seq);
    const rec = toRecord(seq, outcome);
    this.records.set(seq, rec);
    if (this.records.size > MAX_COMMAND_RECORDS) {
      let min = Infinity;
      for (const s of this.records.keys()) if (s < min) min = s;
      this.records.delete(min);
    }
    if (seq > this.lastCommandSeqValue) this.lastCommandSeqValue = seq;
    this.persist(() => this.store.recordCommand({ ...rec }));
    const conn = this.conn;
    if (conn !== undefined && conn.accepted && !conn.closed) this.sendCommandResult(conn, rec);
  }

  private sendCommandResult(conn: Connection, rec: CommandRecord): void {
    this.write(
      conn,
      Cmd.COMMAND_ACK,
      encodeCommandAck({
        seq: rec.seq,
        result: rec.result,
        resultPayload: rec.payload === undefined ? undefined : encodeUtf8(rec.payload),
        message: rec.message,
      }),
    );
    if (!rec.reported) {
      rec.reported = true;
      this.persist(() => this.store.markReported(rec.seq));
    }
  }

  private sendAck(conn: Connection, seq: number, result: number): void {
    this.write(conn, Cmd.COMMAND_ACK, encodeCommandAck({ seq, result }));
  }

  private onSensorReadMessage(conn: Connection, data: Uint8Array): void {
    const { channel, tag } = decodeSensorRead(data);
    const answer = (status: number, value: Uint8Array): void => {
      // 4.3: a read belongs to its session; a late answer after a reconnect is meaningless.
      if (conn.closed || conn !== this.conn) return;
      this.write(conn, Cmd.SENSOR_DATA, encodeSensorData({ channel, tag, status, value }));
    };
    const handler = this.sensorHandlers.get(channel);
    if (handler === undefined) {
      answer(SensorStatus.NO_SUCH_CHANNEL, new Uint8Array(0));
      return;
    }
    let value: Promise<Uint8Array>;
    try {
      value = Promise.resolve(handler());
    } catch (err) {
      value = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    value.then(
      (v) =>
        v instanceof Uint8Array
          ? answer(SensorStatus.OK, v)
          : answer(SensorStatus.FAILURE, new Uint8Array(0)),
      () => answer(SensorStatus.FAILURE, new Uint8Array(0)),
    );
  }
}

function toRecord(seq: number, outcome: CommandOutcome): CommandRecord {
  const result = outcome.result;
  if (
    !Number.isInteger(result) ||
    result < CommandResult.SUCCEEDED ||
    result > CommandResult.EXPIRED
  )
    return {
      seq,
      result: CommandResult.FAILED,
      message: `handler returned ${String(result)}, not a final result 0–4`,
      reported: false,
    };
  let payload: string | undefined;
  if (outcome.payload !== undefined) {
    try {
      payload = JSON.stringify(outcome.payload);
    } catch (err) {
      return {
        seq,
        result: CommandResult.FAILED,
        message: `result payload is not JSON: ${err instanceof Error ? err.message : String(err)}`,
        reported: false,
      };
    }
  }
  const rec: CommandRecord = { seq, result, reported: false };
  if (payload !== undefined) rec.payload = payload;
  if (outcome.message !== undefined) rec.message = outcome.message;
  return rec;
}
