// One vehicle connection: the session state machine, frame intake, bad-input limits and the write path (PROTOCOL.md 1.1, 2, 6).
import type { Duplex } from 'node:stream';
import type { CertIdentity } from '../auth/certificate.js';
import { UplinkTracer } from '../observability/trace.js';
import {
  Cmd,
  DisconnectReason,
  ErrorCode,
  FrameDecoder,
  MessageAssembler,
  encodeDisconnect,
  encodeError,
  encodeMessage,
  type FrameSink,
  type MessageSink,
} from '../protocol/index.js';
import type { CommandRow } from '../store/types.js';
import type { Gateway } from './gateway.js';

export type SessionState = 'connecting' | 'connected' | 'closing' | 'closed';

/** The legal transitions (PROTOCOL.md 2): anything else is a bug and throws. */
const TRANSITIONS: Readonly<Record<SessionState, readonly SessionState[]>> = {
  connecting: ['connected', 'closing', 'closed'],
  connected: ['closing', 'closed'],
  closing: ['closed'],
  closed: [],
};

/** Scope bits (2.3), resolved once at CONNECT so the hot path tests a bit, not a string. */
export const ScopeBit = { TELEMETRY: 1, EVENT: 2, COMMAND: 4 } as const;

export interface TransportInfo {
  transport: 'tcp' | 'tls' | 'memory';
  remoteAddress: string;
  /** The verified client certificate's identity on the TLS listener. */
  certificate?: CertIdentity | undefined;
}

export interface PendingRead {
  channel: number;
  resolve(result: { status: number; value: Uint8Array }): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** Per-session downlink state: the open commands this session knows, the unsent queue and the window. */
export interface DownlinkState {
  /** Every open command known to the session by seq (sent, queued, or finished-on-vehicle). */
  known: Map<number, CommandRow>;
  /** Open commands not yet written, in seq order. */
  queue: CommandRow[];
  /** Seqs written and without a final result. */
  inflight: Set<number>;
  /** Seqs whose final result (COMMAND_ACK) is being written to the store. */
  recording: Set<number>;
  /** The highest command seq this session has known: a seq past it + 1 may have lower ones unseen. */
  highestSeq: number;
  /** Store reads in progress for such lower seqs: nothing is sent meanwhile (4.1: in SEQ order). */
  syncing: number;
  /** pump() was called while the delivery loop ran: run it once more when it ends. */
  pumpAgain: boolean;
}

const kSession = Symbol('vmcp.session');
type Tagged = Duplex & { [kSession]?: Session };

// Stream listeners shared by all sessions: `this` is the stream, so no closure is made per connection.
function onStreamData(this: Tagged, chunk: Buffer): void {
  this[kSession]?.receive(chunk);
}
/**
 * The read callback of TCP sockets that read into one shared buffer (transports.ts): the bytes are
 * copied out (a pooled allocation) because the next read of any socket refills the buffer, and the
 * codec hands frames and messages on as views of their chunk, which may be kept after the read.
 */
export function onSharedBufferRead(this: Tagged, nread: number, buf: Uint8Array): boolean {
  const session = this[kSession];
  if (session === undefined) return true;
  const chunk = Buffer.allocUnsafe(nread);
  chunk.set(buf.subarray(0, nread));
  session.receive(chunk);
  return true;
}
function onStreamDrain(this: Tagged): void {
  this[kSession]?.drained();
}
function onStreamClose(this: Tagged): void {
  this[kSession]?.closed();
}
function onStreamError(this: Tagged, err: Error): void {
  this[kSession]?.streamError(err);
}
function onStreamEnd(this: Tagged): void {
  // The peer half-closed: finish our side too (2: the gateway does not answer a closing peer).
  this.end();
}

let sessionCounter = 0;

export class Session implements FrameSink, MessageSink {
  state: SessionState = 'connecting';
  /** Session id (assigned at CONNACK ACCEPTED). */
  id = '';
  /** Monotonic ordinal of the connection, for grouping and logs. */
  readonly ordinal = ++sessionCounter;
  vehicleId = '';
  /** The VEHICLE_ID its CONNECT named, once decoded (logs of a refused connection carry it). */
  connectId = '';
  version = 0;
  scopes = 0;
  keepaliveS = 0;
  clientInfo: string | undefined;
  readonly openedAt: number;
  connectedAt = 0;
  /** Last complete valid frame (2.4: traffic). */
  lastRxAt: number;
  /** Last byte of any kind (1.1: frame timeout). */
  lastByteAt: number;
  /** Token expiry; the sweep sends DISCONNECT AUTH_EXPIRED after it (2.3). */
  authExpiresAt = Infinity;
  /** CONNECT received and being processed (auth, takeover); later messages wait in `held`. */
  connectStarted = false;
  /** The CONNECT's acceptance (takeover, CONNACK) once past authentication; a takeover from another node waits on it. */
  accepting: Promise<void> | undefined;
  /** Cluster: the claim's epoch, carried by this session's writes (SessionRecord.epoch). */
  fence: number | undefined = undefined;
  held: [number, Uint8Array][] | null = null;

  // Uplink (3.2): next expected seq (optimistic, includes in-flight) and the durable consumed seq.
  uplinkNext = 1;
  uplinkDurable = 0;
  bucketTokens = 0;
  bucketAt = 0;
  /** Uplink writes of this session waiting for the store. */
  inflight = 0;
  /** Highest STORED seq to ack at the end of the current commit (ack coalescing). */
  ackRun = 0;
  settleWaiters: (() => void)[] | null = null;
  tracer: UplinkTracer | null = null;

  downlink: DownlinkState | null = null;
  /** A command delivery loop is running for this session. */
  pumping = false;
  /** Commands announced by other nodes while this session was being accepted. */
  lateCommands: string[] | null = null;
  reads: Map<number, PendingRead> | null = null;
  nextReadTag = 0;
  queryChain: Promise<void> | null = null;

  // Bad input (1.1), over a sliding window: timestamps of recent bad frames; garbage as (time,
  // count) pairs, flat, and their sum (at most garbageByteLimit pairs: each counts ≥ 1 byte).
  private badFrameTimes: number[] | null = null;
  private garbageLog: number[] | null = null;
  private garbageInWindow = 0;
  private lastFrameErrorAt = -Infinity;

  /** Ending because the peer does not read (slowConsumer): the output bound no longer applies. */
  private ending = false;
  /** Since when writes have been refused by the stream (0 = not blocked). */
  blockedSince = 0;
  readPaused = false;

  private readonly decoder: FrameDecoder;
  private readonly assembler: MessageAssembler;

  constructor(
    readonly gw: Gateway,
    readonly stream: Duplex,
    readonly info: TransportInfo,
  ) {
    const now = gw.now;
    this.openedAt = now;
    this.lastRxAt = now;
    this.lastByteAt = now;
    this.assembler = new MessageAssembler(this, gw.config.maxMessageBytes);
    this.decoder = new FrameDecoder(this);
    const s = stream as Tagged;
    s[kSession] = this;
    s.on('data', onStreamData);
    s.on('drain', onStreamDrain);
    s.on('close', onStreamClose);
    s.on('error', onStreamError);
    s.on('end', onStreamEnd);
  }

  get hasPartialFrame(): boolean {
    return this.decoder.hasPartialFrame;
  }

  /** The single place the state changes: checks the table, counts, logs and emits. */
  transition(next: SessionState, reason: string): void {
    const from = this.state;
    if (from === next) return;
    if (!TRANSITIONS[from].includes(next))
      throw new Error(`illegal session transition ${from} → ${next} (${reason})`);
    this.state = next;
    this.gw.sessionTransition(this, from, next, reason);
  }

  // ---- intake ----

  receive(chunk: Buffer): void {
    if (this.state === 'closed' || this.state === 'closing') return;
    const now = this.gw.tickNow();
    this.lastByteAt = now;
    this.decoder.push(chunk);
    if (this.gw.uplinkPaused && !this.readPaused && this.state === 'connected')
      this.gw.pauseSession(this);
  }

  onFrame(cmdByte: number, data: Uint8Array): void {
    this.lastRxAt = this.gw.now;
    // 2: the first complete valid frame must be (the first fragment of) a CONNECT. A frame that
    // breaks a CONNECT run goes to the assembler first (1.2: ERROR INVALID_FRAME REF_CMD 0x10), and
    // then, as a whole message, gets NOT_CONNECTED in onMessage.
    if (
      this.state === 'connecting' &&
      !this.connectStarted &&
      !this.assembler.inRun &&
      (cmdByte & 0x7f) !== Cmd.CONNECT
    ) {
      this.refuseNotConnected(cmdByte & 0x7f);
      return;
    }
    this.assembler.onFrame(cmdByte, data);
  }

  onMessage(code: number, data: Uint8Array): void {
    this.gw.metrics.messageIn(code);
    const state = this.state;
    if (state === 'connected') {
      if (code === Cmd.CONNECT) {
        // 2: a CONNECT on a connected session.
        this.disconnect(DisconnectReason.PROTOCOL_ERROR, 'CONNECT on a connected session');
        return;
      }
      const handler = this.gw.registry.lookup(this.version, code);
      if (handler === undefined) {
        this.sendError(
          ErrorCode.UNKNOWN_COMMAND,
          code,
          `unknown command 0x${code.toString(16).padStart(2, '0')}`,
        );
        return;
      }
      handler(this, data);
      return;
    }
    if (state !== 'connecting') return;
    if (this.connectStarted) {
      // Pipelined behind CONNECT: replayed in order once the CONNACK is out. The socket is paused
      // while CONNECT is processed, so this holds at most what one read delivered.
      (this.held ??= []).push([code, data.slice()]);
      return;
    }
    if (code !== Cmd.CONNECT) {
      this.refuseNotConnected(code);
      return;
    }
    this.connectStarted = true;
    this.stream.pause();
    this.gw.connect(this, data.slice());
  }

  onBrokenRun(code: number): void {
    this.gw.metrics.protocolErrors.labels('broken_run').inc();
    this.frameError(code, 'fragment run interrupted');
    this.countBadFrame();
  }

  onTooLarge(code: number): void {
    this.gw.metrics.protocolErrors.labels('too_large').inc();
    this.decoder.halt();
    // 1.2: ERROR TOO_LARGE then close; after CONNACK with DISCONNECT PROTOCOL_ERROR in between.
    this.sendError(
      ErrorCode.TOO_LARGE,
      code,
      `message exceeds ${this.gw.config.maxMessageBytes} bytes`,
    );
    if (this.state === 'connected')
      this.disconnect(DisconnectReason.PROTOCOL_ERROR, 'message too large');
    else this.close('too large before CONNACK');
  }

  onBadFrame(): void {
    this.gw.metrics.protocolErrors.labels('bad_crc').inc();
    this.frameError(0x00, 'bad CRC');
    this.countBadFrame();
  }

  onGarbage(count: number): void {
    this.gw.metrics.protocolErrors.labels('garbage').inc(count);
    const cfg = this.gw.config;
    const now = this.gw.now;
    const log = (this.garbageLog ??= []);
    let leave = 0;
    while (leave < log.length && log[leave]! <= now - cfg.badInputWindowMs) {
      this.garbageInWindow -= log[leave + 1]!;
      leave += 2;
    }
    if (leave > 0) log.splice(0, leave);
    if (log.length > 0 && log[log.length - 2] === now) log[log.length - 1]! += count;
    else log.push(now, count);
    this.garbageInWindow += count;
    if (this.garbageInWindow >= cfg.garbageByteLimit) this.badInputLimit('garbage');
  }

  private countBadFrame(): void {
    const cfg = this.gw.config;
    const now = this.gw.now;
    const times = (this.badFrameTimes ??= []);
    times.push(now);
    while (times.length > 0 && times[0]! <= now - cfg.badInputWindowMs) times.shift();
    if (times.length >= cfg.badFrameLimit) this.badInputLimit('bad frames');
  }

  /** 1.1: the bad-input limits send DISCONNECT PROTOCOL_ERROR and close, in any state. */
  private badInputLimit(what: string): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.decoder.halt();
    this.gw.metrics.protocolErrors.labels('limit').inc();
    this.sendMessage(
      Cmd.DISCONNECT,
      encodeDisconnect({ reason: DisconnectReason.PROTOCOL_ERROR, message: `${what} limit` }),
    );
    this.close(`${what} limit`, DisconnectReason.PROTOCOL_ERROR);
  }

  /** ERROR INVALID_FRAME, at most one per second per connection (more are dropped, not queued). */
  private frameError(refCmd: number, message: string): void {
    const now = this.gw.now;
    if (now - this.lastFrameErrorAt < 1000) return;
    this.lastFrameErrorAt = now;
    this.sendError(ErrorCode.INVALID_FRAME, refCmd, message);
  }

  private refuseNotConnected(code: number): void {
    this.decoder.halt();
    this.sendError(ErrorCode.NOT_CONNECTED, code, 'CONNECT expected first');
    this.close('frame before CONNECT');
  }

  /** Frame timeout (1.1), called by the sweep. */
  expirePartialFrame(): void {
    this.decoder.expirePartialFrame();
  }

  /** Replays messages that arrived behind CONNECT, then resumes reading. */
  resumeAfterConnect(): void {
    const held = this.held;
    this.held = null;
    if (held !== null)
      for (const [code, data] of held) if (this.state === 'connected') this.onMessage(code, data);
    if (this.state === 'connected' && !this.readPaused) this.stream.resume();
  }

  // ---- output ----

  sendMessage(code: number, data: Uint8Array): void {
    this.gw.metrics.messageOut(code);
    this.write(encodeMessage(code, data));
  }

  sendError(code: number, refCmd: number, message?: string, refSeq?: number): void {
    this.sendMessage(Cmd.ERROR, encodeError({ code, refCmd, message, refSeq }));
  }

  /**
   * Writes encoded frames. A peer that stops reading is bounded: past writeBufferBytes of pending
   * output the session stops reading its uplink (whose acks it does not read) and the drain timeout
   * starts; past 4 × writeBufferBytes it is destroyed at once.
   */
  write(bytes: Uint8Array): void {
    if (this.state === 'closed' || this.stream.destroyed) return;
    this.stream.write(bytes);
    const pending = this.stream.writableLength;
    const limit = this.gw.config.writeBufferBytes;
    if (pending <= limit) return;
    if (this.blockedSince === 0) this.blockedSince = this.gw.now;
    if (!this.readPaused) {
      this.readPaused = true;
      this.stream.pause();
    }
    if (pending > 4 * limit && !this.ending) {
      this.gw.metrics.disconnects.labels('slow_consumer').inc();
      this.slowConsumer('output buffer overflow');
    }
  }

  /**
   * A peer that does not read its output: DISCONNECT OVERLOADED goes behind what it has not read
   * (6: every close after CONNACK has one), then the connection ends; one that still does not read
   * is destroyed after the linger (2 s).
   */
  slowConsumer(why: string): void {
    this.ending = true;
    this.disconnect(DisconnectReason.OVERLOADED, `slow consumer: ${why}`);
  }

  /** Called on 'drain' and by the sweep: once pending output is back under the limit, reading resumes. */
  drained(): void {
    if (this.blockedSince === 0 || this.stream.writableLength > this.gw.config.writeBufferBytes)
      return;
    this.blockedSince = 0;
    if (this.readPaused && !this.gw.uplinkPaused) {
      this.readPaused = false;
      if (this.state === 'connected') this.stream.resume();
    }
  }

  /** Sends DISCONNECT with `reason` (after CONNACK every gateway-initiated close has one, 6) and closes. */
  disconnect(
    reason: number,
    message?: string,
    extra: { redirect?: string; retryAfterMs?: number } = {},
  ): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.decoder.halt();
    if (this.state === 'connected') {
      this.sendMessage(
        Cmd.DISCONNECT,
        encodeDisconnect({
          reason,
          message,
          redirect: extra.redirect,
          retryAfterMs: extra.retryAfterMs,
        }),
      );
    }
    this.close(message ?? 'disconnect', reason);
  }

  /** Ends the connection after flushing what was written; destroys it if the peer lingers. */
  close(why: string, reason?: number): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.decoder.halt();
    this.transition('closing', why);
    this.gw.sessionClosing(this, why, reason);
    this.stream.end();
    this.gw.lingerUntilClosed(this);
  }

  /**
   * Resolves once our side of the connection is shut: the FIN is out ('finish', after what was
   * written before it) or the stream is gone ('close': destroyed, or by the linger after LINGER_MS).
   * A takeover waits on it so the old connection is closed before the new one's CONNACK (2).
   */
  shutDown(): Promise<void> {
    const st = this.stream;
    if (st.writableFinished || st.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        st.off('finish', done);
        st.off('close', done);
        resolve();
      };
      st.on('finish', done);
      st.on('close', done);
    });
  }

  destroy(why: string): void {
    if (this.state === 'closed') return;
    if (this.state !== 'closing') {
      this.decoder.halt();
      this.transition('closing', why);
      this.gw.sessionClosing(this, why);
    }
    this.stream.destroy();
  }

  closed(): void {
    if (this.state === 'closed') return;
    if (this.state !== 'closing') {
      this.decoder.halt();
      this.transition('closing', 'peer closed');
      this.gw.sessionClosing(this, 'peer closed');
    }
    this.transition('closed', 'stream closed');
    const s = this.stream as Tagged;
    s.off('data', onStreamData);
    s.off('drain', onStreamDrain);
    s.off('end', onStreamEnd);
    delete s[kSession];
    this.gw.sessionClosed(this);
  }

  streamError(err: Error): void {
    this.gw.logger.debug(
      { err: err.message, sessionId: this.id, vehicleId: this.vehicleId },
      'stream error',
    );
  }

  ensureTracer(): UplinkTracer {
    return (this.tracer ??= new UplinkTracer());
  }
}
