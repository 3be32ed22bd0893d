// The fleet simulator: N simulated vehicles on one shared timer loop, a connection ramp, live
// progress, and a final JSON summary (optionally checked against the gateway's store).
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { TokenService } from '../auth/tokens.js';
import { ensureFdLimit, FD_RESERVE, type FdLimit } from './limits.js';
import type { LatencySummary } from './histogram.js';
import { SimStats } from './stats.js';
import { verifyFleet, type VerifyResult } from './verify.js';
import { SimVehicle, type VehicleContext } from './vehicle.js';

export const ALL_SCOPES = ['telemetry:publish', 'event:publish', 'command:receive'] as const;

export type SimAuth =
  | { kind: 'jwt'; secret: string; ttlMs: number }
  | { kind: 'register'; adminToken: string; httpUrl: string; secretSeed: string };

export interface SimOptions {
  host: string;
  port: number;
  vehicles: number;
  /** Samples per second per vehicle (0: idle, keepalive only). */
  rate: number;
  durationMs: number;
  /** 1: TELEMETRY per sample; K > 1: TELEMETRY_BATCH of K samples (version 2). */
  batch: number;
  keepaliveS: number;
  idPrefix: string;
  /** Number of the first vehicle (ids are idPrefix + zero-padded number). */
  firstIndex: number;
  /**
   * Local source addresses, assigned round-robin (spreads past ~28k ephemeral ports per address); the
   * CLI defaults to DEFAULT_LOOPBACK_SOURCES for a target in 127.0.0.0/8 (defaultSources).
   */
  sources: string[];
  /** New connections started per second, at most. */
  rampPerSec: number;
  /**
   * Connections waiting for CONNACK, at most. Below it the fleet adapts its own limit: it starts at
   * CONNECT_LIMIT_START, grows by one per CONNACK answered within a quarter of connectTimeoutMs and
   * shrinks to 70 % (once per round of CONNECTs) on a slower one or a connect timeout.
   */
  maxConnecting: number;
  /** A connection without CONNACK after this long is dropped (connect_timeout) and retried. */
  connectTimeoutMs: number;
  auth: SimAuth;
  tickMs: number;
  window: number;
  maxBacklog: number;
  /** After the duration: how long to wait for outstanding acks before disconnecting. */
  drainMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  commandTtlMs: number;
  seed: number;
  progressMs: number;
  /** Check sent/acked against the store through the HTTP API at the end, within budgetMs (3 min). */
  verify: { httpUrl: string; adminToken: string; budgetMs?: number } | undefined;
}

export const SIM_DEFAULTS = {
  host: '127.0.0.1',
  port: 7000,
  vehicles: 100,
  rate: 1,
  durationMs: 60_000,
  batch: 1,
  keepaliveS: 30,
  idPrefix: 'SIM-',
  firstIndex: 0,
  sources: [] as string[],
  rampPerSec: 2_000,
  maxConnecting: 1_000,
  connectTimeoutMs: 15_000,
  tickMs: 20,
  window: 256,
  maxBacklog: 5_000,
  drainMs: 5_000,
  backoffBaseMs: 1_000,
  backoffCapMs: 60_000,
  commandTtlMs: 0,
  seed: 1,
  progressMs: 1_000,
} as const;

/** Where the simulator writes: injected so nothing in src/ touches the console. */
export interface SimOutput {
  /** Live status for a terminal (rewritten in place); called only when `tty` is true. */
  status?: (line: string) => void;
  /** One JSON line per progress interval (for the bench). */
  progress?: (json: string) => void;
  /** Warnings and notes (fd limit, registration). */
  note?: (text: string) => void;
}

export interface ProgressSample {
  kind: 'vmcp-sim-progress';
  /** ms since the start of the run, and epoch ms. */
  t: number;
  at: number;
  connected: number;
  connecting: number;
  sent: number;
  stored: number;
  throttled: number;
  resent: number;
  backlog: number;
  reconnects: number;
  errors: number;
  commands: number;
  /** Over the last interval. */
  sentPerSec: number;
  storedPerSec: number;
  /** Commands received by the vehicles over the interval (the downlink's deliveries), per second. */
  commandsPerSec: number;
  /** Deliveries to the receiving side: here the commands (as commands and commandsPerSec; the MQTT
   * simulator of the bench reports its subscriber's deliveries under these names). */
  delivered: number;
  deliveredPerSec: number;
  p50: number;
  p99: number;
  max: number;
  /** The simulator's own event-loop delay, max over the interval (ms): its stalls inflate latency. */
  loopMaxMs: number;
  /** The interval's send → STORED histogram, compressed (exact percentiles over several processes). */
  h: string;
}

export interface SimSummary {
  kind: 'vmcp-sim-summary';
  target: string;
  idPrefix: string;
  vehicles: number;
  rate: number;
  batch: number;
  startedAt: number;
  durationMs: number;
  elapsedMs: number;
  fdLimit: FdLimit;
  connections: {
    peak: number;
    atEnd: number;
    attempts: number;
    accepted: number;
    reconnects: number;
    /** ms from start until every vehicle was connected (null: never all at once). */
    allConnectedMs: number | null;
    refused: Record<string, number>;
    disconnects: Record<string, number>;
    connectLatencyMs: LatencySummary;
    /** CONNECTs awaiting CONNACK: the most at once, and the adaptive limit at the end. */
    peakConnecting: number;
    connectingLimit: number;
    lastReconnectAt: number;
    lastResyncAt: number;
  };
  /** --register: the devices registered through the API before the run (and its duration) started. */
  registration?: RegistrationResult;
  uplink: {
    generated: number;
    events: number;
    sent: number;
    messages: number;
    resent: number;
    stored: number;
    storedOnResume: number;
    duplicates: number;
    rejected: number;
    throttled: number;
    outOfOrder: number;
    skipped: number;
    blocked: number;
    /** Samples still unconsumed when the run ended. */
    unacked: number;
    /** stored per second over the sending period. */
    storedPerSec: number;
  };
  /** First transmission → STORED, every sample acked. */
  latencyMs: LatencySummary;
  /** Last transmission → STORED: what the gateway took for the accepted transmission. */
  serviceLatencyMs: LatencySummary;
  serviceHistogram: string;
  /** The send → STORED histogram, compressed (merge several processes with LatencyHistogram.addEncoded). */
  histogram: string;
  downlink: {
    commands: number;
    redelivered: number;
    expired: number;
    sensorReads: number;
    deliveryMs: LatencySummary;
  };
  keepalive: { pings: number; pongs: number; misses: number };
  errors: Record<string, number>;
  errorsTotal: number;
  process: { cpuUserMs: number; cpuSystemMs: number; rssMb: number; loopDelayMaxMs: number };
  store?: VerifyResult;
}

export interface RegistrationResult {
  devices: number;
  registered: number;
  /** Already registered (409): their secret is the same (derived from the seed). */
  existing: number;
  failed: number;
  /** Time the registration took (POST /api/v1/devices, a slow hash per device on the gateway). */
  elapsedMs: number;
}

/** Source addresses used by default against a loopback target: past ~28k ephemeral ports per address. */
export const DEFAULT_LOOPBACK_SOURCES = '127.0.0.1-127.0.0.50';

/** CONNECTs in flight at the start and at least (the adaptive limit; see SimOptions.maxConnecting). */
export const CONNECT_LIMIT_START = 64;
export const CONNECT_LIMIT_MIN = 16;

/** The default source addresses for a target host: spread over 127.0.0.1–50 if it is in 127.0.0.0/8. */
export function defaultSources(host: string): string[] {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
    ? parseSources(DEFAULT_LOOPBACK_SOURCES)
    : [];
}

/**
 * Why a finished run counts as failed (`vmcp sim` exits 1 and says so on stderr): no vehicle ever
 * connected, or the store check (--verify) found acked records missing. Empty: not failed.
 */
export function simFailures(s: SimSummary): string[] {
  const out: string[] = [];
  if (s.connections.accepted === 0) {
    const why = [...Object.entries(s.connections.refused), ...Object.entries(s.errors)]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 4)
      .map(([k, n]) => `${k} ×${n}`);
    out.push(
      `no vehicle ever connected to ${s.target} (${s.connections.attempts} attempts` +
        `${why.length > 0 ? `; ${why.join(', ')}` : ''})`,
    );
  }
  const lost = s.store?.lostAcked ?? 0;
  if (lost > 0)
    out.push(
      `${lost} acked records missing from the store (lostAcked): the gateway lost what it acknowledged`,
    );
  return out;
}

/** "127.0.0.1-127.0.0.50" or "127.0.0.1,127.0.0.2" → addresses. Throws on a malformed range. */
export function parseSources(text: string): string[] {
  const out: string[] = [];
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:-(\d+)\.(\d+)\.(\d+)\.(\d+))?$/.exec(part);
    if (!m) throw new Error(`bad source address or range: ${part}`);
    const a = m.slice(1, 5).map(Number);
    if (a.some((x) => x > 255)) throw new Error(`bad source address: ${part}`);
    if (m[5] === undefined) {
      out.push(a.join('.'));
      continue;
    }
    const b = m.slice(5, 9).map(Number);
    const from = ((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0;
    const to = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    if (to < from || to - from > 65_535) throw new Error(`bad source range: ${part}`);
    for (let x = from; x <= to; x++)
      out.push([x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255].join('.'));
  }
  return out;
}

export function vehicleId(prefix: string, n: number): string {
  return `${prefix}${String(n).padStart(6, '0')}`;
}

/** Deterministic registration secret of a simulated vehicle. */
export function registrationSecret(seed: string, id: string): string {
  return `${seed}:${id}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class SimFleet {
  readonly stats = new SimStats();
  readonly vehicles: SimVehicle[] = [];
  private readonly ctx: VehicleContext;
  private readonly tokens = new Map<string, string>();
  private readonly encoder = new TextEncoder();
  private startedAt = 0;
  private startEpoch = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastTick = 0;
  private connectBudget = 0;
  private cursor = 0;
  private lastProgress = { at: 0, sent: 0, stored: 0, commands: 0 };
  /** CONNECTs in flight allowed now (adaptive, ≤ opts.maxConnecting), and when it last shrank. */
  private connectLimit: number;
  private connectShrunkAt = 0;
  private registration: RegistrationResult | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private sendingEndedAt = 0;
  private stopRequested = false;
  private wake: (() => void) | undefined;
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private loopDelayMaxMs = 0;

  constructor(
    readonly opts: SimOptions,
    private readonly output: SimOutput = {},
  ) {
    const stats = this.stats;
    this.ctx = {
      host: opts.host,
      port: opts.port,
      stats,
      keepaliveS: opts.keepaliveS,
      batch: opts.batch,
      window: opts.window,
      maxBacklog: opts.maxBacklog,
      backoffBaseMs: opts.backoffBaseMs,
      backoffCapMs: opts.backoffCapMs,
      commandTtlMs: opts.commandTtlMs,
      seed: opts.seed,
      rate: opts.rate,
      generating: true,
      stopping: false,
      connectTimeoutMs: opts.connectTimeoutMs,
      dueAt: new Float64Array(opts.vehicles),
      credentials: (v) => this.credentials(v),
      connectAnswered: (startedAt, ms) => this.connectAnswered(startedAt, ms),
      connectTimedOut: (startedAt) => this.shrinkConnects(startedAt),
    };
    this.connectLimit = Math.min(opts.maxConnecting, CONNECT_LIMIT_START);
    for (let i = 0; i < opts.vehicles; i++) {
      const n = opts.firstIndex + i;
      const source = opts.sources.length > 0 ? opts.sources[i % opts.sources.length] : undefined;
      this.vehicles.push(new SimVehicle(vehicleId(opts.idPrefix, n), i, this.ctx, source));
    }
  }

  /** Changes every vehicle's sample rate from now on (the bench's saturation steps). */
  setRate(rate: number): void {
    this.ctx.rate = rate;
    this.ctx.dueAt.fill(0);
  }

  get rate(): number {
    return this.ctx.rate;
  }

  /** Ends the run early (SIGINT, the bench): stops sending, drains, disconnects. */
  requestStop(): void {
    this.stopRequested = true;
    this.wake?.();
  }

  /** The adaptive limit of CONNECTs in flight now (see SimOptions.maxConnecting). */
  get connectingLimit(): number {
    return Math.floor(this.connectLimit);
  }

  private connectAnswered(startedAt: number, ms: number): void {
    if (ms > this.opts.connectTimeoutMs / 4) this.shrinkConnects(startedAt);
    else this.connectLimit = Math.min(this.opts.maxConnecting, this.connectLimit + 1);
  }

  /**
   * A slow CONNACK or a connect timeout: the gateway has more CONNECTs than it answers in time (a
   * registered secret costs it a slow hash). Shrinks to 70 %, once per round: only for a CONNECT
   * started after the last shrink (those queued before it say nothing new).
   */
  private shrinkConnects(startedAt: number): void {
    if (startedAt < this.connectShrunkAt) return;
    this.connectShrunkAt = performance.now();
    const floor = Math.min(this.opts.maxConnecting, CONNECT_LIMIT_MIN);
    this.connectLimit = Math.max(floor, this.connectLimit * 0.7);
  }

  private credentials(v: SimVehicle): { token?: string; credential?: Uint8Array } {
    const auth = this.opts.auth;
    if (auth.kind === 'jwt') return { token: this.tokens.get(v.id) };
    if (v.issuedToken !== undefined) return { token: v.issuedToken };
    return { credential: this.encoder.encode(registrationSecret(auth.secretSeed, v.id)) };
  }

  /**
   * Mints (JWT) or registers (API) every vehicle's credentials, in bounded concurrent batches. Before
   * the run's duration starts; the registration's time is in the summary.
   */
  private async prepareCredentials(): Promise<void> {
    const auth = this.opts.auth;
    if (auth.kind === 'jwt') {
      const svc = await TokenService.create({ hs256Secret: auth.secret });
      const now = Date.now();
      for (let i = 0; i < this.vehicles.length; i += 500) {
        const chunk = this.vehicles.slice(i, i + 500);
        const minted = await Promise.all(
          chunk.map((v) =>
            svc.sign({ subject: v.id, scopes: ALL_SCOPES, ttlMs: auth.ttlMs, nowMs: now }),
          ),
        );
        chunk.forEach((v, j) => this.tokens.set(v.id, minted[j]!));
      }
      return;
    }
    const started = performance.now();
    let registered = 0;
    let existing = 0;
    const failures: string[] = [];
    const deadline = Date.now() + 300_000;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < this.vehicles.length && Date.now() < deadline) {
        const v = this.vehicles[next++]!;
        try {
          const res = await fetch(`${auth.httpUrl}/api/v1/devices`, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${auth.adminToken}`,
              'content-type': 'application/json',
            },
            body: JSON.stringify({
              id: v.id,
              secret: registrationSecret(auth.secretSeed, v.id),
              scopes: ALL_SCOPES,
            }),
          });
          await res.arrayBuffer();
          if (res.status === 201) registered++;
          else if (res.status === 409) existing++;
          else failures.push(`${v.id}: HTTP ${res.status}`);
        } catch (err) {
          failures.push(`${v.id}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const elapsedMs = Math.round(performance.now() - started);
    this.registration = {
      devices: this.vehicles.length,
      registered,
      existing,
      failed: failures.length,
      elapsedMs,
    };
    this.output.note?.(
      `registered ${registered} devices in ${(elapsedMs / 1000).toFixed(1)} s (${existing} already registered, ${failures.length} failed)\n`,
    );
    if (failures.length > 0) this.output.note?.(`  first failure: ${failures[0]}\n`);
  }

  /** Runs the whole simulation and returns its summary. Bounded by durationMs + drainMs + margins. */
  async run(): Promise<SimSummary> {
    const opts = this.opts;
    const fd = ensureFdLimit(opts.vehicles + FD_RESERVE);
    if (!fd.enough) this.output.note?.(`vmcp sim: ${fd.note}\n`);
    await this.prepareCredentials();

    this.startedAt = performance.now();
    this.startEpoch = Date.now();
    this.lastTick = this.startedAt;
    this.lastProgress = { at: this.startedAt, sent: 0, stored: 0, commands: 0 };
    this.connectBudget = Math.min(opts.rampPerSec * (opts.tickMs / 1000), opts.maxConnecting);
    this.loopDelay.enable();
    this.timer = setInterval(() => this.tick(), opts.tickMs);
    this.progressTimer = setInterval(() => this.report(), opts.progressMs);

    // Sending period.
    await this.waitUntil(() => this.stopRequested, opts.durationMs);
    this.ctx.generating = false;
    this.sendingEndedAt = performance.now();
    // Drain: outstanding samples get their acks (bounded).
    await this.waitUntil(() => this.outstanding() === 0, opts.drainMs);
    this.ctx.stopping = true;
    clearInterval(this.timer);
    this.report();
    clearInterval(this.progressTimer);
    this.loopDelay.disable();
    const elapsedMs = performance.now() - this.startedAt;
    const atEnd = this.stats.connected;
    for (const v of this.vehicles) v.disconnect();
    await this.waitUntil(
      () =>
        this.vehicles.every(
          (v) => v.state === 'stopped' || v.state === 'idle' || v.state === 'waiting',
        ),
      3_000,
    );
    for (const v of this.vehicles) v.destroy();

    const summary = this.summary(fd, elapsedMs, atEnd);
    if (opts.verify !== undefined) {
      summary.store = await verifyFleet(
        this.vehicles,
        opts.verify,
        (t) => this.output.note?.(t),
        opts.verify.budgetMs,
      );
    }
    return summary;
  }

  private outstanding(): number {
    let n = 0;
    for (const v of this.vehicles) if (v.connected) n += v.backlog;
    return n;
  }

  /** Resolves when `done()` holds (checked every 50 ms) or after `ms`. */
  private async waitUntil(done: () => boolean, ms: number): Promise<void> {
    const until = performance.now() + ms;
    while (!done() && performance.now() < until) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, Math.min(50, Math.max(1, until - performance.now())));
      });
      this.wake = undefined;
    }
  }

  /** The one loop: connection ramp (and reconnects), then every vehicle's sending and keepalive. */
  private tick(): void {
    const now = performance.now();
    const opts = this.opts;
    const st = this.stats;
    const dt = now - this.lastTick;
    this.lastTick = now;
    this.connectBudget = Math.min(
      this.connectBudget + (opts.rampPerSec * dt) / 1000,
      Math.max(1, (opts.rampPerSec * opts.tickMs * 2) / 1000),
    );
    const vehicles = this.vehicles;
    const n = vehicles.length;
    // Connections: a rotating cursor so no vehicle starves under the ramp limit.
    if (!this.ctx.stopping) {
      const limit = this.connectLimit;
      for (let k = 0; k < n && this.connectBudget >= 1; k++) {
        if (st.connecting >= limit) break;
        const v = vehicles[this.cursor]!;
        this.cursor = this.cursor + 1 === n ? 0 : this.cursor + 1;
        if ((v.state === 'idle' || v.state === 'waiting') && now >= v.reconnectAt) {
          this.connectBudget--;
          v.startConnect(now);
        }
      }
      if (st.connecting > st.peakConnecting) st.peakConnecting = st.connecting;
    }
    // Only the vehicles with something due (see VehicleContext.dueAt).
    const due = this.ctx.dueAt;
    for (let i = 0; i < n; i++) if (due[i]! <= now) vehicles[i]!.tick(now);
    if (st.allConnectedAt === 0 && st.connected === n) st.allConnectedAt = now;
  }

  private report(): void {
    const now = performance.now();
    const st = this.stats;
    const dt = Math.max(1, now - this.lastProgress.at) / 1000;
    let backlog = 0;
    for (const v of this.vehicles) backlog += v.backlog;
    const interval = st.takeInterval();
    const p: ProgressSample = {
      kind: 'vmcp-sim-progress',
      t: Math.round(now - this.startedAt),
      at: Date.now(),
      connected: st.connected,
      connecting: st.connecting,
      sent: st.sent,
      stored: st.stored,
      throttled: st.throttled,
      resent: st.resent,
      backlog,
      reconnects: st.reconnects,
      errors: st.errorsTotal,
      commands: st.commands,
      sentPerSec: Math.round((st.sent - this.lastProgress.sent) / dt),
      storedPerSec: Math.round((st.stored - this.lastProgress.stored) / dt),
      commandsPerSec: Math.round((st.commands - this.lastProgress.commands) / dt),
      delivered: st.commands,
      deliveredPerSec: Math.round((st.commands - this.lastProgress.commands) / dt),
      p50: interval.percentileMs(50),
      p99: interval.percentileMs(99),
      max: interval.percentileMs(100),
      loopMaxMs: Math.round(this.loopDelay.max / 10_000) / 100,
      h: interval.encode(),
    };
    if (p.loopMaxMs > this.loopDelayMaxMs) this.loopDelayMaxMs = p.loopMaxMs;
    this.loopDelay.reset();
    this.lastProgress = { at: now, sent: st.sent, stored: st.stored, commands: st.commands };
    this.output.progress?.(JSON.stringify(p));
    this.output.status?.(
      `t=${(p.t / 1000).toFixed(0)}s connected ${p.connected}/${this.vehicles.length}` +
        ` sent ${p.sentPerSec}/s stored ${p.storedPerSec}/s` +
        ` ack p50 ${p.p50.toFixed(1)} ms p99 ${p.p99.toFixed(1)} ms` +
        ` throttled ${p.throttled} reconnects ${p.reconnects} errors ${p.errors}`,
    );
  }

  private summary(fd: FdLimit, elapsedMs: number, atEnd: number): SimSummary {
    const st = this.stats;
    const o = this.opts;
    const sendingMs = Math.max(1, (this.sendingEndedAt || performance.now()) - this.startedAt);
    let unacked = 0;
    for (const v of this.vehicles) unacked += v.backlog;
    st.takeInterval(); // acks since the last progress report, into latency and service
    const usage = process.cpuUsage();
    return {
      kind: 'vmcp-sim-summary',
      target: `${o.host}:${o.port}`,
      idPrefix: o.idPrefix,
      vehicles: o.vehicles,
      rate: this.ctx.rate,
      batch: o.batch,
      startedAt: this.startEpoch,
      durationMs: o.durationMs,
      elapsedMs: Math.round(elapsedMs),
      fdLimit: fd,
      connections: {
        peak: st.peakConnected,
        atEnd,
        attempts: st.connectAttempts,
        accepted: st.accepted,
        reconnects: st.reconnects,
        allConnectedMs:
          st.allConnectedAt === 0 ? null : Math.round(st.allConnectedAt - this.startedAt),
        refused: st.refused,
        disconnects: st.disconnects,
        connectLatencyMs: st.connect.summary(),
        peakConnecting: st.peakConnecting,
        connectingLimit: this.connectingLimit,
        lastReconnectAt: st.lastReconnectAt,
        lastResyncAt: st.lastResyncAt,
      },
      ...(this.registration === undefined ? {} : { registration: this.registration }),
      uplink: {
        generated: st.generated,
        events: st.events,
        sent: st.sent,
        messages: st.messages,
        resent: st.resent,
        stored: st.stored,
        storedOnResume: st.storedOnResume,
        duplicates: st.duplicates,
        rejected: st.rejected,
        throttled: st.throttled,
        outOfOrder: st.outOfOrder,
        skipped: st.skipped,
        blocked: st.blocked,
        unacked,
        storedPerSec: Math.round((st.stored / sendingMs) * 1000),
      },
      latencyMs: st.latency.summary(),
      serviceLatencyMs: st.service.summary(),
      serviceHistogram: st.service.encode(),
      histogram: st.latency.encode(),
      downlink: {
        commands: st.commands,
        redelivered: st.commandsRedelivered,
        expired: st.commandsExpired,
        sensorReads: st.sensorReads,
        deliveryMs: st.commandDelivery.summary(),
      },
      keepalive: { pings: st.pingsSent, pongs: st.pongs, misses: st.pingMisses },
      errors: st.errors,
      errorsTotal: st.errorsTotal,
      process: {
        cpuUserMs: Math.round(usage.user / 1000),
        cpuSystemMs: Math.round(usage.system / 1000),
        rssMb: Math.round(process.memoryUsage.rss() / 1048576),
        loopDelayMaxMs: this.loopDelayMaxMs,
      },
    };
  }
}

export { sleep };
