// The gateway core: sessions by vehicle, CONNECT (auth, takeover), dispatch registry, sweeps, store health, operations for the API.
import { EventEmitter } from 'node:events';
import { statfs } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { certificateMatches } from '../auth/certificate.js';
import { Scope } from '../auth/scopes.js';
import { verifySecret } from '../auth/secrets.js';
import type { TokenService } from '../auth/tokens.js';
import type { GatewayConfig } from '../config/index.js';
import { VmcpError, isVmcpError, type VmcpErrorCode } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import {
  Cmd,
  CommandRegistry,
  CONNACK_STATUS_NAMES,
  ConnackStatus,
  DISCONNECT_REASON_NAMES,
  DisconnectReason,
  MAX_VERSION,
  MIN_VERSION,
  encodeConnack,
  decodeConnect,
  type ConnackMessage,
  type ConnectMessage,
  type UplinkRecord,
} from '../protocol/index.js';
import type { CommandRow, Store, VehicleRow } from '../store/types.js';
import {
  TAKEOVER_TIMEOUT_MS,
  type NodeMessage,
  type RedisCoordinator,
  type SessionRecord,
} from '../cluster/coordinator.js';
import { fromHex } from '../protocol/index.js';
import type { Clock } from './clock.js';
import { Downlink } from './downlink.js';
import { onDisconnect, onError, onPing, onPong, onQuery } from './handlers/control.js';
import { onEvent, onTelemetry, onTelemetryBatch } from './handlers/uplink.js';
import { ScopeBit, Session, type SessionState, type TransportInfo } from './session.js';
import { UplinkPipeline } from './uplink.js';

export type Handler = (s: Session, data: Uint8Array) => void;

export interface GatewayDeps {
  config: Readonly<GatewayConfig>;
  store: Store;
  tokens: TokenService;
  logger: Logger;
  metrics: GatewayMetrics;
  clock: Clock;
  /** Identifies this process in session ids and logs. */
  nodeId: string;
  /** Multi-node deployments: the session registry and node-to-node messages on Redis. */
  cluster?: RedisCoordinator | undefined;
}

export interface PresenceEvent {
  vehicleId: string;
  online: boolean;
  sessionId: string;
  at: number;
  reason?: string;
}

export interface GatewayEvents {
  uplink: [UplinkRecord];
  presence: [PresenceEvent];
  command: [CommandRow];
}

export interface SessionView {
  id: string;
  connectedAt: number;
  remote: string;
  version: number;
  keepalive: number;
}

export interface VehicleView {
  id: string;
  online: boolean;
  lastUplinkSeq: number;
  latest: VehicleRow['latest'];
  session: SessionView | null;
}

type AuthOutcome =
  | { ok: true; scopes: readonly string[]; expiresAt: number; token?: string }
  | { ok: false; status: number; reason: string };

const SWEEP_MS = 500;
const LINGER_MS = 2_000; // a closing connection the peer does not close is destroyed after this
const PROBE_MS = 1_000; // after a failed write, how often the store is tried again
const PING_TIMEOUT_MS = 2_000; // an idle store that does not answer a ping this fast is down
const RETENTION_EVERY_MS = 10_000;
const CONNECT_PROCESSING_LIMIT = 3; // × connectTimeoutMs for a CONNECT being authenticated and accepted
const RETENTION_ROUNDS = 200; // at most 200 × retentionBatch records per pass
const RETENTION_PAUSE_MS = 5; // between batches: ingest commits get the event loop

/** `p`, or a rejection with `message` after `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function scopeBits(scopes: readonly string[]): number {
  let bits = 0;
  for (const s of scopes) {
    if (s === Scope.TELEMETRY_PUBLISH) bits |= ScopeBit.TELEMETRY;
    else if (s === Scope.EVENT_PUBLISH) bits |= ScopeBit.EVENT;
    else if (s === Scope.COMMAND_RECEIVE) bits |= ScopeBit.COMMAND;
  }
  return bits;
}

export class Gateway {
  readonly config: Readonly<GatewayConfig>;
  readonly store: Store;
  readonly tokens: TokenService;
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  readonly clock: Clock;
  readonly nodeId: string;
  readonly cluster: RedisCoordinator | undefined;
  readonly events = new EventEmitter<GatewayEvents>();
  readonly registry = new CommandRegistry<Handler>();
  readonly uplink: UplinkPipeline;
  readonly downlink: Downlink;
  /** Connected (or being connected) sessions by vehicle id: one per vehicle (2). */
  readonly sessions = new Map<string, Session>();
  /** Every live connection. */
  readonly all = new Set<Session>();
  /** Cached clock reading, refreshed once per read and per sweep. */
  now: number;
  draining = false;
  uplinkPaused = false;

  private readonly closingSince = new Map<Session, number>();
  /**
   * Ended sessions, by vehicle, until their uplink is durable and their connection shut: a new
   * CONNECT (here or, by a takeover message, on another node) waits for them.
   */
  private readonly settling = new Map<string, Session>();
  private readonly paused = new Set<Session>();
  private readonly vehicleLocks = new Map<string, Promise<void>>();
  private readonly authFailures = new Map<string, { count: number; since: number }>();
  private connectTokens: number;
  private connectTokensAt: number;
  private storeUp = true;
  private probeAt = 0;
  private diskLow = false;
  private sessionSeq = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private slowTimer: NodeJS.Timeout | undefined;
  private slowRunning = false;

  constructor(deps: GatewayDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.tokens = deps.tokens;
    this.logger = deps.logger;
    this.metrics = deps.metrics;
    this.clock = deps.clock;
    this.nodeId = deps.nodeId;
    this.cluster = deps.cluster;
    this.now = this.clock.now();
    this.connectTokens = this.config.connectBurst;
    this.connectTokensAt = this.now;
    this.uplink = new UplinkPipeline(this);
    this.downlink = new Downlink(this);
    this.registerHandlers();
  }

  /** Dispatch table (PROTOCOL.md 2): version 2 inherits version 1 and adds QUERY and TELEMETRY_BATCH. */
  private registerHandlers(): void {
    const dl = this.downlink;
    this.registry
      .register(1, Cmd.PING, onPing)
      .register(1, Cmd.PONG, onPong)
      .register(1, Cmd.ERROR, onError)
      .register(1, Cmd.DISCONNECT, onDisconnect)
      .register(1, Cmd.TELEMETRY, onTelemetry)
      .register(1, Cmd.EVENT, onEvent)
      .register(1, Cmd.COMMAND_ACK, (s, d) => dl.onCommandAck(s, d))
      .register(1, Cmd.SENSOR_DATA, (s, d) => dl.onSensorData(s, d))
      .register(2, Cmd.QUERY, onQuery)
      .register(2, Cmd.TELEMETRY_BATCH, onTelemetryBatch)
      .freeze();
  }

  start(): void {
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
    this.slowTimer = setInterval(() => void this.slowSweep(), 1_000);
    this.slowTimer.unref();
  }

  tickNow(): number {
    return (this.now = this.clock.now());
  }

  /** Whether uplink may be admitted: the store takes writes (or is due a retry) and disk is above the floor. */
  get storeWritable(): boolean {
    return (this.storeUp || this.now >= this.probeAt) && !this.diskLow;
  }

  /** /readyz: the store takes writes, the disk is above the floor, and the gateway is not draining. */
  get ready(): boolean {
    return this.notReadyReason === undefined;
  }

  /** Why /readyz answers 503, or undefined when ready. */
  get notReadyReason(): string | undefined {
    if (this.draining) return 'draining';
    if (!this.storeUp) return 'store not taking writes';
    if (this.diskLow) return 'free disk below the floor';
    return undefined;
  }

  get connectedCount(): number {
    return this.sessions.size;
  }

  // ---- connections ----

  /** Takes a new transport connection (TCP, TLS or an in-memory duplex). */
  handle(stream: Duplex, info: TransportInfo): Session {
    this.tickNow();
    const s = new Session(this, stream, info);
    this.all.add(s);
    this.metrics.connections.labels('connecting').inc();
    this.metrics.connectionsAccepted.labels(info.transport).inc();
    return s;
  }

  sessionTransition(s: Session, from: SessionState, to: SessionState, reason: string): void {
    if (from !== 'closed') this.metrics.connections.labels(from).dec();
    if (to !== 'closed') this.metrics.connections.labels(to).inc();
    this.logger.debug(
      {
        sessionId: s.id || undefined,
        vehicleId: s.vehicleId || s.connectId || undefined,
        from,
        to,
        reason,
      },
      'session state',
    );
  }

  sessionClosing(s: Session, why: string, reason?: number): void {
    // Labels stay bounded: the DISCONNECT reason name, or 'closed' for closes without one.
    this.metrics.disconnects
      .labels(reason === undefined ? 'closed' : (DISCONNECT_REASON_NAMES[reason] ?? 'other'))
      .inc();
    if (s.vehicleId !== '' && this.sessions.get(s.vehicleId) === s) {
      this.sessions.delete(s.vehicleId);
      if (s.connectedAt !== 0) {
        this.presence({
          vehicleId: s.vehicleId,
          online: false,
          sessionId: s.id,
          at: this.now,
          reason: why,
        });
        this.logger.info(
          { vehicleId: s.vehicleId, sessionId: s.id, why, reason },
          'vehicle disconnected',
        );
      }
    }
    const cluster = this.cluster;
    if (cluster !== undefined && s.vehicleId !== '' && s.id !== '') {
      // Released once its uplink is durable, so a CONNECT on another node meanwhile still finds this
      // session and waits for it. Only removes the entry if it still names this session.
      void this.ended(s)
        .then(() => cluster.release(s.vehicleId, s.id))
        .catch((err: unknown) =>
          this.logger.warn({ err: String(err), vehicleId: s.vehicleId }, 'registry release failed'),
        );
    }
    this.downlink.detach(s);
    if (s.connectedAt !== 0) this.uplink.keepBucket(s);
    if (s.vehicleId !== '' && s.id !== '') {
      this.settling.set(s.vehicleId, s);
      void Promise.all([this.ended(s), s.accepting?.catch(() => undefined)]).then(() => {
        if (this.settling.get(s.vehicleId) === s) this.settling.delete(s.vehicleId);
      });
    }
  }

  /** Resolves once an ended session's uplink is durable and its side of the connection shut. */
  private async ended(s: Session): Promise<void> {
    await Promise.all([this.uplink.settle(s), s.shutDown()]);
  }

  lingerUntilClosed(s: Session): void {
    this.closingSince.set(s, this.now);
  }

  sessionClosed(s: Session): void {
    this.all.delete(s);
    this.closingSince.delete(s);
    this.paused.delete(s);
  }

  pauseSession(s: Session): void {
    s.readPaused = true;
    s.stream.pause();
    this.paused.add(s);
  }

  /** The store is behind: stop reading uplink until the backlog halves (backpressure, not buffering). */
  pauseUplink(): void {
    if (this.uplinkPaused) return;
    this.uplinkPaused = true;
    this.logger.warn({ backlog: this.uplink.backlog }, 'uplink backlog high: pausing reads');
  }

  resumeUplink(): void {
    if (!this.uplinkPaused) return;
    this.uplinkPaused = false;
    for (const s of this.paused) {
      s.readPaused = false;
      if (s.state === 'connected' && s.stream.writableLength <= this.config.writeBufferBytes)
        s.stream.resume();
    }
    this.paused.clear();
  }

  // ---- CONNECT (2.1–2.3) ----

  connect(s: Session, data: Uint8Array): void {
    this.connectFlow(s, data).catch((err: unknown) => {
      this.logger.error({ err, sessionId: s.id }, 'CONNECT failed');
      if (s.state === 'connecting')
        this.refuse(s, ConnackStatus.SERVER_BUSY, 'internal error', 1_000);
    });
  }

  private refuse(
    s: Session,
    status: number,
    reason: string,
    retryAfterMs?: number,
    redirect?: string,
  ): void {
    if (s.state !== 'connecting') return;
    const msg: ConnackMessage = { status, version: 0, reason, retryAfterMs, redirect };
    this.metrics.connacks.labels(String(status)).inc();
    // Every refusal is logged alike; SERVER_BUSY (overload, draining) only at debug: under a storm
    // the metric counts them without a log line each.
    this.logger[status === ConnackStatus.SERVER_BUSY ? 'debug' : 'info'](
      {
        vehicleId: s.connectId || undefined,
        remote: s.info.remoteAddress,
        status: CONNACK_STATUS_NAMES[status] ?? status,
        reason,
      },
      'CONNECT refused',
    );
    s.sendMessage(Cmd.CONNACK, encodeConnack(msg));
    s.close(`connect refused: ${reason}`);
  }

  private busyRetryMs(): number {
    return 1_000 + Math.floor(Math.random() * 1_000);
  }

  private async connectFlow(s: Session, data: Uint8Array): Promise<void> {
    let msg: ConnectMessage;
    try {
      msg = decodeConnect(data);
    } catch (err) {
      if (!isVmcpError(err)) throw err;
      return this.refuse(s, ConnackStatus.INVALID, err.message);
    }
    s.connectId = msg.vehicleId;
    const version = Math.min(msg.versionMax, MAX_VERSION);
    if (version < Math.max(msg.versionMin, MIN_VERSION)) {
      return this.refuse(
        s,
        ConnackStatus.UNSUPPORTED_VERSION,
        `gateway speaks versions ${MIN_VERSION}–${MAX_VERSION}`,
      );
    }
    // Overload is refused before the expensive part (signature or hash checks).
    const now = this.tickNow();
    if (this.draining)
      return this.refuse(
        s,
        ConnackStatus.SERVER_BUSY,
        'draining',
        this.busyRetryMs(),
        this.config.redirect,
      );
    if (this.sessions.size >= this.config.maxConnections && !this.sessions.has(msg.vehicleId)) {
      return this.refuse(
        s,
        ConnackStatus.SERVER_BUSY,
        'at capacity',
        this.busyRetryMs(),
        this.config.redirect,
      );
    }
    if (!this.takeConnectToken(now))
      return this.refuse(s, ConnackStatus.SERVER_BUSY, 'connect rate', this.busyRetryMs());
    // Guessing a registered secret is what the failure limit stops, and each CREDENTIAL costs a
    // slow hash check: only CREDENTIAL attempts count and are refused. A token check is cheap (the
    // connect rate bounds it), and vehicles behind one NAT address keep connecting with theirs.
    const ip = s.info.remoteAddress;
    const failures = msg.credential === undefined ? undefined : this.authFailures.get(ip);
    if (
      failures !== undefined &&
      now - failures.since < this.config.authFailureWindowMs &&
      failures.count >= this.config.authFailureLimit
    ) {
      return this.refuse(
        s,
        ConnackStatus.SERVER_BUSY,
        'too many failed authentications',
        this.config.authFailureWindowMs - (now - failures.since),
      );
    }

    const auth = await this.authenticate(s, msg);
    if (!auth.ok) {
      if (auth.status === ConnackStatus.BAD_CREDENTIALS && msg.credential !== undefined)
        this.countAuthFailure(ip);
      return this.refuse(s, auth.status, auth.reason);
    }
    if (s.state !== 'connecting') return;
    const accepting = this.withVehicleLock(msg.vehicleId, () => this.accept(s, msg, version, auth));
    s.accepting = accepting;
    await accepting;
    s.resumeAfterConnect();
    await this.downlink.catchUp(s);
    this.downlink.pump(s);
  }

  private takeConnectToken(now: number): boolean {
    const cfg = this.config;
    this.connectTokens = Math.min(
      cfg.connectBurst,
      this.connectTokens + ((now - this.connectTokensAt) * cfg.connectRatePerSec) / 1000,
    );
    this.connectTokensAt = now;
    if (this.connectTokens < 1) return false;
    this.connectTokens -= 1;
    return true;
  }

  private countAuthFailure(ip: string): void {
    const now = this.now;
    const f = this.authFailures.get(ip);
    if (f === undefined || now - f.since >= this.config.authFailureWindowMs)
      this.authFailures.set(ip, { count: 1, since: now });
    else f.count++;
  }

  /** 2.2/2.3: BAD_CREDENTIALS before FORBIDDEN; scopes from the token or the device registry. */
  private async authenticate(s: Session, msg: ConnectMessage): Promise<AuthOutcome> {
    const now = this.clock.now();
    const id = msg.vehicleId;
    const cert = s.info.certificate;
    const certOk =
      s.info.transport !== 'tls' || (cert !== undefined && certificateMatches(cert, id));
    if (msg.token !== undefined) {
      const r = await this.tokens.verify(msg.token, now);
      if (!r.ok)
        return { ok: false, status: ConnackStatus.BAD_CREDENTIALS, reason: `token ${r.failure}` };
      if (r.token.subject !== id)
        return {
          ok: false,
          status: ConnackStatus.FORBIDDEN,
          reason: 'token is for another vehicle',
        };
      if (!certOk)
        return {
          ok: false,
          status: ConnackStatus.FORBIDDEN,
          reason: 'certificate identity mismatch',
        };
      const device = await this.store.getDevice(id);
      if (device !== undefined && device.revokedAt !== null)
        return { ok: false, status: ConnackStatus.FORBIDDEN, reason: 'device revoked' };
      const outcome: AuthOutcome = {
        ok: true,
        scopes: r.token.scopes,
        expiresAt: r.token.expiresAtMs,
      };
      // Renew a token that nears expiry, with the same scopes (2.2 TOKEN); tokenRenewBeforeMs 0 disables it.
      const renewBefore = this.config.tokenRenewBeforeMs;
      if (this.tokens.canSign && renewBefore > 0 && r.token.expiresAtMs - now < renewBefore) {
        outcome.token = await this.tokens.sign({
          subject: id,
          scopes: r.token.scopes,
          ttlMs: this.config.tokenTtlMs,
          nowMs: now,
        });
        outcome.expiresAt = now + this.config.tokenTtlMs;
      }
      return outcome;
    }
    if (msg.credential !== undefined) {
      const device = await this.store.getDevice(id);
      if (device === undefined || !(await verifySecret(msg.credential, device.secretHash))) {
        return {
          ok: false,
          status: ConnackStatus.BAD_CREDENTIALS,
          reason: 'unknown device or wrong credential',
        };
      }
      if (device.revokedAt !== null)
        return { ok: false, status: ConnackStatus.FORBIDDEN, reason: 'device revoked' };
      if (!certOk)
        return {
          ok: false,
          status: ConnackStatus.FORBIDDEN,
          reason: 'certificate identity mismatch',
        };
      const outcome: AuthOutcome = { ok: true, scopes: device.scopes, expiresAt: Infinity };
      if (this.tokens.canSign) {
        outcome.token = await this.tokens.sign({
          subject: id,
          scopes: device.scopes,
          ttlMs: this.config.tokenTtlMs,
          nowMs: now,
        });
      }
      return outcome;
    }
    return {
      ok: false,
      status: ConnackStatus.BAD_CREDENTIALS,
      reason: 'neither TOKEN nor CREDENTIAL',
    };
  }

  /** Serializes CONNECTs of one vehicle so racing connections take over one after the other. */
  private async withVehicleLock(vehicleId: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.vehicleLocks.get(vehicleId) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.vehicleLocks.set(vehicleId, tail);
    try {
      await run;
    } finally {
      if (this.vehicleLocks.get(vehicleId) === tail) this.vehicleLocks.delete(vehicleId);
    }
  }

  private async accept(
    s: Session,
    msg: ConnectMessage,
    version: number,
    auth: Extract<AuthOutcome, { ok: true }>,
  ): Promise<void> {
    const id = msg.vehicleId;
    // 2: the old session gets DISCONNECT TAKEN_OVER and is closed before the new one gets its CONNACK;
    // its uplink in flight settles first so NEXT_UPLINK_SEQ is exact.
    const old = this.sessions.get(id);
    if (old !== undefined && old !== s) {
      old.disconnect(DisconnectReason.TAKEN_OVER, 'taken over by a new session');
      await this.ended(old);
    }
    // A session of this vehicle that already ended may still have uplink in a commit (or its FIN not
    // out yet): wait for it too, or NEXT_UPLINK_SEQ could be read before those seqs are durable.
    const ended = this.settling.get(id);
    if (ended !== undefined && ended !== s) await this.ended(ended);
    if (s.state !== 'connecting') return;
    this.sessions.set(id, s);
    s.vehicleId = id;
    s.id = `${this.nodeId}-${(++this.sessionSeq).toString(36)}`;
    const cfg0 = this.config;
    const proposedKeepalive =
      msg.keepalive === undefined || msg.keepalive === 0 ? 60 : msg.keepalive;
    s.keepaliveS = Math.min(cfg0.keepaliveMaxS, Math.max(cfg0.keepaliveMinS, proposedKeepalive));
    s.version = version;
    if (this.cluster !== undefined) {
      // 2: one live session per vehicle in the whole deployment. The claim is atomic; the node that
      // held the previous session closes it (TAKEN_OVER) and settles its uplink before we go on.
      try {
        const { epoch, prev } = await this.cluster.claim(this.sessionRecord(s));
        s.fence = epoch;
        if (prev !== undefined) await this.cluster.takeOver(this.sessionRecord(s), prev);
      } catch (err) {
        if (this.sessions.get(id) === s) this.sessions.delete(id);
        this.logger.error(
          { err: String(err), vehicleId: id },
          'session registry unavailable during CONNECT',
        );
        return this.refuse(
          s,
          ConnackStatus.SERVER_BUSY,
          'session registry unavailable',
          this.busyRetryMs(),
        );
      }
      if (s.state !== 'connecting') {
        if (this.sessions.get(id) === s) this.sessions.delete(id);
        return;
      }
    }
    let vehicle: VehicleRow;
    let open: CommandRow[];
    try {
      const now = this.clock.now();
      vehicle = await this.store.markSeen(id, now, s.fence);
      open = await this.store.openCommands(id, now);
    } catch (err) {
      if (this.sessions.get(id) === s) this.sessions.delete(id);
      this.logger.error({ err, vehicleId: id }, 'store unavailable during CONNECT');
      return this.refuse(s, ConnackStatus.SERVER_BUSY, 'store unavailable', this.busyRetryMs());
    }
    if (s.state !== 'connecting') {
      if (this.sessions.get(id) === s) this.sessions.delete(id);
      return;
    }
    s.scopes = scopeBits(auth.scopes);
    s.clientInfo = msg.clientInfo;
    s.authExpiresAt = auth.expiresAt === Infinity ? Infinity : auth.expiresAt + 30_000;
    s.uplinkDurable = vehicle.lastUplinkSeq;
    s.uplinkNext = vehicle.lastUplinkSeq + 1;
    this.tickNow();
    this.uplink.startBucket(s);
    await this.downlink.attach(s, msg.lastCommandSeq ?? 0, open);
    if (s.state !== 'connecting') {
      if (this.sessions.get(id) === s) this.sessions.delete(id);
      return;
    }
    s.connectedAt = this.tickNow();
    this.metrics.connacks.labels(String(ConnackStatus.ACCEPTED)).inc();
    s.sendMessage(
      Cmd.CONNACK,
      encodeConnack({
        status: ConnackStatus.ACCEPTED,
        version,
        sessionId: s.id,
        keepalive: s.keepaliveS,
        nextUplinkSeq: s.uplinkNext,
        token: auth.token,
        serverTime: this.clock.now(),
      }),
    );
    s.transition('connected', 'CONNACK ACCEPTED');
    this.presence({ vehicleId: id, online: true, sessionId: s.id, at: s.connectedAt });
    this.logger.info(
      {
        vehicleId: id,
        sessionId: s.id,
        version,
        keepalive: s.keepaliveS,
        remote: s.info.remoteAddress,
        nextUplinkSeq: s.uplinkNext,
      },
      'vehicle connected',
    );
    if (vehicle.fence !== undefined && s.fence !== undefined && vehicle.fence > s.fence) {
      // A later claim of this vehicle has connected already (this node stalled between the claim and
      // here, and could not be asked): as a racer taken over. Its writes would be refused anyway.
      s.disconnect(DisconnectReason.TAKEN_OVER, 'taken over on another node');
    }
  }

  // ---- timers: one sweep for every session (no per-connection timers) ----

  sweep(): void {
    const now = this.tickNow();
    const cfg = this.config;
    for (const s of this.all) {
      if (s.state === 'connecting') {
        if (!s.connectStarted && now - s.openedAt >= cfg.connectTimeoutMs) {
          s.close('CONNECT timeout');
          continue;
        }
        // A CONNECT whose processing hangs (a store or registry that does not answer) is dropped
        // too, later: the vehicle retries with backoff instead of holding a socket forever.
        if (
          s.connectStarted &&
          now - s.openedAt >= CONNECT_PROCESSING_LIMIT * cfg.connectTimeoutMs
        ) {
          s.close('CONNECT processing timeout');
          continue;
        }
      } else if (s.state === 'connected') {
        if (now - s.lastRxAt >= 1.5 * s.keepaliveS * 1000) {
          s.disconnect(DisconnectReason.KEEPALIVE_TIMEOUT, 'no traffic for 1.5 × keepalive');
          continue;
        }
        if (now >= s.authExpiresAt) {
          s.disconnect(DisconnectReason.AUTH_EXPIRED, 'token expired');
          continue;
        }
      }
      if (s.hasPartialFrame && now - s.lastByteAt >= cfg.frameTimeoutMs) s.expirePartialFrame();
      if (s.blockedSince !== 0) {
        s.drained();
        // A closing session that does not drain is the linger's (closingSince) to destroy.
        if (
          s.blockedSince !== 0 &&
          s.state !== 'closing' &&
          now - s.blockedSince >= cfg.drainTimeoutMs
        ) {
          this.metrics.disconnects.labels('drain_timeout').inc();
          s.slowConsumer('drain timeout');
        }
      }
    }
    for (const [s, since] of this.closingSince) if (now - since >= LINGER_MS) s.stream.destroy();
  }

  /** Once a second: command expiry, store recovery probe, disk floor, retention, stale auth-failure entries. */
  private async slowSweep(): Promise<void> {
    if (this.slowRunning) return;
    this.slowRunning = true;
    try {
      const now = this.tickNow();
      if (!this.storeUp && now >= this.probeAt && !this.uplink.busy) {
        try {
          await this.store.setMeta('health.probe', String(now));
          this.storeSucceeded();
        } catch (err) {
          this.storeFailed(err instanceof Error ? err : new Error(String(err)));
        }
      } else if (this.storeUp && !this.uplink.busy) {
        // An idle gateway learns of an outage from a ping, not only from a failed write, so that
        // /readyz says so (9) while no vehicle is writing.
        try {
          await withTimeout(this.store.ping(), PING_TIMEOUT_MS, 'store ping timed out');
        } catch (err) {
          this.storeFailed(err instanceof Error ? err : new Error(String(err)));
        }
      }
      this.downlink.freeExpired(now);
      this.uplink.pruneBuckets(now);
      if (this.storeUp) {
        await this.downlink.expire(now);
        // Every 10 s, or on the next tick while the last pass hit its cap (a backlog to catch up on).
        if (this.retentionBacklog || now - this.lastRetentionAt >= RETENTION_EVERY_MS) {
          this.lastRetentionAt = now;
          const n = await this.pruneExpired(now);
          this.retentionBacklog = n >= RETENTION_ROUNDS * this.config.retentionBatch;
        }
      }
      await this.checkDisk();
      for (const [ip, f] of this.authFailures)
        if (now - f.since >= this.config.authFailureWindowMs) this.authFailures.delete(ip);
    } catch (err) {
      this.logger.error({ err }, 'periodic maintenance failed');
    } finally {
      this.slowRunning = false;
    }
  }

  private lastRetentionAt = 0;
  private retentionBacklog = false;

  /**
   * Retention: deletes uplink records received before now − retentionMs in small batches, yielding to
   * the event loop between them so ingest never stalls. Seq state and latest state are kept. Returns
   * how many records went; a round is capped so one call never runs long.
   */
  async pruneExpired(now: number, retentionMs = this.config.retentionMs): Promise<number> {
    const before = now - retentionMs;
    let total = 0;
    for (let i = 0; i < RETENTION_ROUNDS; i++) {
      const n = await this.store.pruneUplink(before, this.config.retentionBatch);
      total += n;
      if (n < this.config.retentionBatch) break;
      await sleep(RETENTION_PAUSE_MS);
    }
    return total;
  }

  private lastDiskCheckAt = 0;

  private async checkDisk(): Promise<void> {
    if (this.config.diskFloorBytes <= 0 || this.now - this.lastDiskCheckAt < 5_000) return;
    this.lastDiskCheckAt = this.now;
    try {
      const st = await statfs(this.config.dataDir);
      const free = st.bavail * st.bsize;
      const low = free < this.config.diskFloorBytes;
      this.metrics.diskFree.set(free);
      this.metrics.diskBelowFloor.set(low ? 1 : 0);
      if (low !== this.diskLow)
        this.logger.warn(
          { freeBytes: free, floorBytes: this.config.diskFloorBytes, low },
          'disk floor',
        );
      this.diskLow = low;
    } catch {
      // No data dir (an in-memory store): no floor to watch.
    }
  }

  storeFailed(err: Error): void {
    if (this.storeUp)
      this.logger.error(
        { err: err.message },
        'store write failed: uplink throttled until it recovers',
      );
    this.storeUp = false;
    this.probeAt = this.now + PROBE_MS;
    this.metrics.storeUp.set(0);
  }

  storeSucceeded(): void {
    if (!this.storeUp) this.logger.info('store writes recovered');
    this.storeUp = true;
    this.metrics.storeUp.set(1);
  }

  commandChanged(row: CommandRow): void {
    this.metrics.commands.labels(row.status).inc();
    // A command's end is logged with its trace, like its acceptance (API) and its sending.
    if (row.status !== 'pending' && row.status !== 'delivered')
      this.logger.info(
        {
          vehicleId: row.vehicleId,
          commandId: row.id,
          seq: row.seq,
          status: row.status,
          traceparent: row.traceparent ?? undefined,
        },
        'command finished',
      );
    this.events.emit('command', row);
    this.cluster?.broadcast('command', row).catch(() => undefined);
  }

  private presence(event: PresenceEvent): void {
    this.events.emit('presence', event);
    this.cluster?.broadcast('presence', event).catch(() => undefined);
  }

  sessionRecord(s: Session): SessionRecord {
    return {
      vehicleId: s.vehicleId,
      nodeId: this.nodeId,
      sessionId: s.id,
      connectedAt: s.connectedAt || this.now,
      remote: s.info.remoteAddress,
      version: s.version,
      keepalive: s.keepaliveS,
      epoch: s.fence,
    };
  }

  /** Where a vehicle's live session is: this node, another node (cluster), or nowhere. */
  async locate(
    vehicleId: string,
  ): Promise<{ local: Session } | { remote: SessionRecord } | undefined> {
    const s = this.sessions.get(vehicleId);
    if (s !== undefined && s.state === 'connected') return { local: s };
    if (this.cluster === undefined) return undefined;
    const rec = await this.cluster.lookup(vehicleId);
    if (rec === undefined || rec.nodeId === this.nodeId) return undefined;
    return { remote: rec };
  }

  /**
   * Cluster: the registry forgot this node's sessions (it was declared dead while frozen or cut off,
   * or Redis lost its data). Each live session is registered again, or, when a CONNECT elsewhere
   * took the vehicle meanwhile, closed with TAKEN_OVER: one live session per vehicle.
   */
  async reclaimSessions(): Promise<void> {
    const cluster = this.cluster;
    if (cluster === undefined) return;
    let kept = 0;
    let closed = 0;
    for (const s of [...this.sessions.values()]) {
      if (s.state === 'connecting') await s.accepting?.catch(() => undefined);
      if (s.state !== 'connected' || this.sessions.get(s.vehicleId) !== s) continue;
      if (await cluster.reclaim(this.sessionRecord(s))) {
        kept++;
        // Closed while being registered: its release may have run first.
        if (s.state !== 'connected') await cluster.release(s.vehicleId, s.id);
      } else if (s.state === 'connected') {
        s.disconnect(DisconnectReason.TAKEN_OVER, 'taken over while this node was unreachable');
        closed++;
      }
    }
    this.logger.warn({ kept, closed }, 'sessions registered again');
  }

  /** Messages from other nodes (cluster mode). */
  async onNodeMessage(
    msg: NodeMessage,
  ): Promise<{ ok: boolean; code?: string; status?: number; value?: string } | void> {
    switch (msg.t) {
      case 'takeover': {
        const s = this.sessions.get(msg.vehicleId);
        if (s !== undefined && s.id === msg.sessionId) {
          // A CONNECT still in progress here (CONNECTs racing on several nodes) finishes first: it
          // gets its CONNACK and then TAKEN_OVER, as racing CONNECTs on one node do. Its own takeover
          // of the session before it is part of that, so the newer CONNECT's wait covers the whole
          // chain (claims are ordered, so the waits cannot form a cycle).
          if (s.state === 'connecting') await s.accepting?.catch(() => undefined);
          if (s.state === 'connected')
            s.disconnect(DisconnectReason.TAKEN_OVER, 'taken over on another node');
          else if (s.state === 'connecting') s.close('taken over on another node');
          await this.ended(s);
        }
        // The session already ended here (a CONNECT on this node took it over, or it closed): answer
        // once its uplink is durable, its connection shut and its own takeovers done (ok tells the
        // asker that every session before this one is closed too).
        const ended = this.settling.get(msg.vehicleId);
        if (ended !== undefined && ended.id === msg.sessionId) {
          await ended.accepting?.catch(() => undefined);
          await this.ended(ended);
        }
        return { ok: true };
      }
      case 'kick': {
        const s = this.sessions.get(msg.vehicleId);
        if (s === undefined || s.state !== 'connected') return { ok: false };
        s.disconnect(DisconnectReason.KICKED, msg.message);
        return { ok: true };
      }
      case 'command':
        await this.downlink.notify(msg.vehicleId, msg.commandId);
        return;
      case 'cancel':
        this.downlink.cancelled(msg.vehicleId, msg.seq);
        return;
      case 'sensor': {
        const s = this.sessions.get(msg.vehicleId);
        if (s === undefined || s.state !== 'connected')
          return { ok: false, code: 'VMCP_ERR_VEHICLE_OFFLINE' };
        try {
          const r = await this.downlink.readSensor(s, msg.channel, msg.timeoutMs);
          return { ok: true, status: r.status, value: Buffer.from(r.value).toString('hex') };
        } catch (err) {
          return { ok: false, code: isVmcpError(err) ? err.code : 'VMCP_ERR_INTERNAL' };
        }
      }
      default:
        return;
    }
  }

  // ---- operations for the API and CLI ----

  sessionView(s: Session | undefined): SessionView | null {
    if (s === undefined || s.state !== 'connected') return null;
    return {
      id: s.id,
      connectedAt: s.connectedAt,
      remote: s.info.remoteAddress,
      version: s.version,
      keepalive: s.keepaliveS,
    };
  }

  /** The vehicle's live session wherever it is (this node or, in a cluster, another one). */
  async sessionViewOf(vehicleId: string): Promise<SessionView | null> {
    const where = await this.locate(vehicleId);
    if (where === undefined) return null;
    if ('local' in where) return this.sessionView(where.local);
    const r = where.remote;
    return {
      id: r.sessionId,
      connectedAt: r.connectedAt,
      remote: r.remote,
      version: r.version,
      keepalive: r.keepalive,
    };
  }

  async vehicle(id: string): Promise<VehicleView | undefined> {
    const row = await this.store.getVehicle(id);
    if (row === undefined) return undefined;
    const session = await this.sessionViewOf(id);
    return {
      id,
      online: session !== null,
      lastUplinkSeq: row.lastUplinkSeq,
      latest: row.latest,
      session,
    };
  }

  /** Online vehicle ids in id order (cluster-wide with a coordinator). */
  async listOnline(
    limit: number,
    cursor: string | null,
  ): Promise<{ ids: string[]; next: string | null }> {
    if (this.cluster !== undefined) return this.cluster.listOnline(limit, cursor);
    const after = cursor === null ? '' : Buffer.from(cursor, 'base64url').toString('utf8');
    const ids: string[] = [];
    for (const [id, s] of this.sessions) if (id > after && s.state === 'connected') ids.push(id);
    ids.sort();
    const page = ids.slice(0, limit);
    return {
      ids: page,
      next: ids.length > limit ? Buffer.from(page[page.length - 1]!).toString('base64url') : null,
    };
  }

  async readSensor(
    vehicleId: string,
    channel: number,
    timeoutMs: number,
  ): Promise<{ status: number; value: Uint8Array }> {
    const where = await this.locate(vehicleId);
    if (where === undefined) {
      if ((await this.store.getVehicle(vehicleId)) === undefined)
        throw new VmcpError('VMCP_ERR_VEHICLE_NOT_FOUND');
      throw new VmcpError('VMCP_ERR_VEHICLE_OFFLINE');
    }
    if ('local' in where) return this.downlink.readSensor(where.local, channel, timeoutMs);
    const cluster = this.cluster!;
    const nodeId = where.remote.nodeId;
    // 9: a session that ends before the answer is 409, also when its node dies (kill -9) and can
    // no longer say so: that node is watched while the read is out.
    const watch = cluster.watchNode(nodeId);
    const reply = await Promise.race([
      cluster.request(
        nodeId,
        {
          t: 'sensor',
          vehicleId,
          channel,
          timeoutMs,
          from: this.nodeId,
          rid: cluster.newRequestId(),
        },
        timeoutMs + 2_000,
      ),
      watch.gone.then(() => 'dead' as const),
    ]).finally(watch.stop);
    if (reply === 'dead') throw new VmcpError('VMCP_ERR_VEHICLE_OFFLINE');
    if (reply === undefined) throw new VmcpError('VMCP_ERR_TIMEOUT');
    if (!reply.ok) throw new VmcpError((reply.code ?? 'VMCP_ERR_VEHICLE_OFFLINE') as VmcpErrorCode);
    return { status: reply.status ?? 2, value: fromHex(reply.value ?? '') };
  }

  /** Ends a live session with DISCONNECT KICKED, on whichever node holds it; false when offline. */
  async kick(vehicleId: string, message = 'kicked by an operator'): Promise<boolean> {
    const where = await this.locate(vehicleId);
    if (where === undefined) return false;
    if ('local' in where) {
      where.local.disconnect(DisconnectReason.KICKED, message);
      return true;
    }
    const reply = await this.cluster!.request(
      where.remote.nodeId,
      { t: 'kick', vehicleId, message, from: this.nodeId, rid: this.cluster!.newRequestId() },
      TAKEOVER_TIMEOUT_MS,
    );
    return reply?.ok === true;
  }

  async revokeDevice(id: string): Promise<boolean> {
    const revoked = await this.store.revokeDevice(id, this.clock.now());
    if (revoked) await this.kick(id, 'device revoked');
    return revoked;
  }

  /**
   * Graceful shutdown: refuse new CONNECTs, send DISCONNECT SHUTDOWN (with REDIRECT when configured),
   * flush the uplink to the store, and close within shutdownTimeoutMs.
   */
  async shutdown(): Promise<void> {
    this.draining = true;
    const deadline = this.clock.now() + this.config.shutdownTimeoutMs;
    const redirect = this.config.redirect ?? (await this.liveRedirect());
    for (const s of this.all) {
      if (s.state === 'connected') {
        s.disconnect(DisconnectReason.SHUTDOWN, 'gateway shutting down', {
          redirect,
          retryAfterMs: redirect === undefined ? 1_000 : undefined,
        });
      } else if (s.state === 'connecting') s.close('shutdown');
    }
    // The bound's timer is cleared as soon as the drain is done, so an idle gateway exits at once.
    let bound: NodeJS.Timeout | undefined;
    await Promise.race([
      this.uplink.drain(),
      new Promise<void>((r) => (bound = setTimeout(r, Math.max(0, deadline - this.clock.now())))),
    ]);
    clearTimeout(bound);
    while (this.all.size > 0 && this.clock.now() < deadline) await sleep(20);
    for (const s of this.all) s.stream.destroy();
    this.stop();
  }

  /** In a cluster, a live node's vehicle address for DISCONNECT SHUTDOWN's REDIRECT. */
  private async liveRedirect(): Promise<string | undefined> {
    if (this.cluster === undefined) return undefined;
    try {
      const others = (await this.cluster.liveNodes()).filter((n) => n.nodeId !== this.nodeId);
      return others.length === 0
        ? undefined
        : others[Math.floor(Math.random() * others.length)]!.vehicleAddress;
    } catch {
      return undefined;
    }
  }

  /** Stops timers (the store is closed by its owner). */
  stop(): void {
    clearInterval(this.sweepTimer);
    clearInterval(this.slowTimer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
