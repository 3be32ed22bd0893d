// The MQTT side of the bench: the same fleet shape as `vmcp sim` (N vehicles × R msgs/s, the same
// ~70-byte TELEMETRY payload from the same motion model) published with QoS 1 to an MQTT broker, and
// one backend subscriber counting deliveries. Same progress lines and summary keys as `vmcp sim`.
// Run: node --import tsx bench/scenarios/mqtt-sim.ts --target 127.0.0.1:1883 --vehicles N --rate R
//        --duration 60s [--subscriber] [--sub-qos 1] [--id-prefix P] [--progress json] [--control stdin]
import { connect as netConnect, type Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseDuration, parseFlags, parseHostPort } from '../../src/config/index.js';
import { encodeTelemetry } from '../../src/protocol/index.js';
import { LatencyHistogram } from '../../src/sim/histogram.js';
import { VehicleMotion, hashSeed } from '../../src/sim/motion.js';
import { ensureFdLimit } from '../../src/sim/limits.js';
import {
  DISCONNECT,
  PINGREQ,
  PacketParser,
  connectPacket,
  encodeTopic,
  pubackPacket,
  publishPacket,
  subscribePacket,
  type PacketSink,
} from './mqtt-codec.js';

interface Options {
  host: string;
  port: number;
  vehicles: number;
  rate: number;
  durationMs: number;
  keepaliveS: number;
  idPrefix: string;
  rampPerSec: number;
  window: number;
  drainMs: number;
  subscriber: boolean;
  subQos: 0 | 1;
  tickMs: number;
}

const st = {
  attempts: 0,
  accepted: 0,
  connected: 0,
  peak: 0,
  allConnectedAt: 0,
  sent: 0,
  acked: 0,
  delivered: 0,
  errors: {} as Record<string, number>,
  refused: 0,
  latency: new LatencyHistogram(),
  interval: new LatencyHistogram(),
};

function error(code: string): void {
  st.errors[code] = (st.errors[code] ?? 0) + 1;
}

let rate = 0;
let generating = true;
let stopping = false;

class MqttVehicle implements PacketSink {
  state: 'idle' | 'connecting' | 'connected' | 'waiting' | 'stopped' = 'idle';
  reconnectAt = 0;
  private sock: Socket | null = null;
  private parser: PacketParser | null = null;
  private readonly topic: Buffer;
  private motion: VehicleMotion | null = null;
  private seq = 1;
  private pid = 0;
  /** In-flight publishes: packet ids and send times, FIFO (brokers ack QoS 1 in order). */
  private ids: number[] = [];
  private times: number[] = [];
  private qhead = 0;
  private nextAt = 0;
  private lastTx = 0;
  private attempt = 0;

  constructor(
    readonly id: string,
    private readonly index: number,
    private readonly opts: Options,
  ) {
    this.topic = encodeTopic(`vmcp/${id}/telemetry`);
  }

  get inflight(): number {
    return this.ids.length - this.qhead;
  }

  start(now: number): void {
    this.state = 'connecting';
    st.attempts++;
    const sock = netConnect({ host: this.opts.host, port: this.opts.port, noDelay: true });
    this.sock = sock;
    this.parser = new PacketParser(this);
    sock.on('connect', () => sock.write(connectPacket(this.id, this.opts.keepaliveS)));
    sock.on('data', (c: Buffer) => this.parser?.push(c));
    sock.on('error', (e: NodeJS.ErrnoException) => error(e.code ?? 'socket_error'));
    sock.on('close', () => this.closed(sock));
    this.lastTx = now;
  }

  private closed(sock: Socket): void {
    if (sock !== this.sock) return;
    this.sock = null;
    if (this.state === 'connected') st.connected--;
    // In-flight QoS 1 publishes of a clean session are gone with it: count them as errors.
    if (this.inflight > 0) error('inflight_lost');
    this.ids = [];
    this.times = [];
    this.qhead = 0;
    if (stopping) {
      this.state = 'stopped';
      return;
    }
    this.state = 'waiting';
    this.reconnectAt =
      performance.now() + Math.min(60_000, 1000 * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
  }

  onConnack(code: number): void {
    if (code !== 0) {
      st.refused++;
      error(`connack_${code}`);
      this.sock?.destroy();
      return;
    }
    this.state = 'connected';
    st.accepted++;
    st.connected++;
    if (st.connected > st.peak) st.peak = st.connected;
    if (this.motion === null) {
      this.motion = new VehicleMotion(hashSeed(this.id, 1), Date.now());
      const r = rate;
      this.nextAt = performance.now() + (r > 0 ? (1000 / r) * ((this.index * 0.618_034) % 1) : 0);
    }
  }

  onPuback(packetId: number): void {
    const now = performance.now();
    while (this.qhead < this.ids.length) {
      const id = this.ids[this.qhead]!;
      const t = this.times[this.qhead]!;
      this.qhead++;
      if (id === packetId) {
        st.acked++;
        st.latency.recordMs(now - t);
        st.interval.recordMs(now - t);
        break;
      }
      error('puback_out_of_order');
    }
    if (this.qhead >= 64 && this.qhead * 2 >= this.ids.length) {
      this.ids = this.ids.slice(this.qhead);
      this.times = this.times.slice(this.qhead);
      this.qhead = 0;
    }
  }

  onPublish(): void {
    error('unexpected_publish');
  }
  onSuback(): void {}
  onPingresp(): void {}
  onMalformed(): void {
    error('malformed');
    this.sock?.destroy();
  }

  tick(now: number): void {
    if (this.state !== 'connected' || this.motion === null) return;
    const sock = this.sock!;
    const r = rate;
    if (generating && r > 0) {
      const interval = 1000 / r;
      if (this.nextAt < now - 5_000) this.nextAt = now - 5_000;
      let chunks: Buffer[] | null = null;
      while (this.nextAt <= now && this.inflight < this.opts.window) {
        this.nextAt += interval;
        if (sock.writableLength > 65_536) {
          error('blocked');
          continue;
        }
        const m = this.motion;
        const t = Date.now();
        m.advance(t);
        const payload = encodeTelemetry({ seq: this.seq++, ...m.telemetry(t) });
        this.pid = this.pid === 65_535 ? 1 : this.pid + 1;
        (chunks ??= []).push(publishPacket(this.topic, this.pid, payload, 1));
        this.ids.push(this.pid);
        this.times.push(now);
        st.sent++;
      }
      if (chunks !== null) {
        sock.write(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
        this.lastTx = now;
      }
    }
    if (now - this.lastTx >= this.opts.keepaliveS * 1000) {
      sock.write(PINGREQ);
      this.lastTx = now;
    }
  }

  stop(): void {
    if (this.sock === null) {
      this.state = 'stopped';
      return;
    }
    this.sock.write(DISCONNECT);
    this.sock.end();
  }

  destroy(): void {
    this.sock?.destroy();
  }
}

/** The backend: one subscription to every vehicle's telemetry, counting deliveries. */
class Subscriber implements PacketSink {
  private sock: Socket | null = null;
  ready = false;

  constructor(private readonly opts: Options) {}

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = netConnect({ host: this.opts.host, port: this.opts.port, noDelay: true });
      this.sock = sock;
      const parser = new PacketParser(this);
      const timer = setTimeout(() => reject(new Error('subscriber: no SUBACK in 10 s')), 10_000);
      this.onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      sock.on('connect', () => {
        sock.write(connectPacket(`${this.opts.idPrefix}backend`, 60));
        sock.write(subscribePacket(1, 'vmcp/+/telemetry', this.opts.subQos));
      });
      sock.on('data', (c: Buffer) => parser.push(c));
      sock.on('error', (e: NodeJS.ErrnoException) => error(`sub_${e.code ?? 'error'}`));
    });
  }

  private onReady: () => void = () => undefined;

  onConnack(code: number): void {
    if (code !== 0) error(`sub_connack_${code}`);
  }
  onPuback(): void {}
  onPublish(qos: number, packetId: number): void {
    st.delivered++;
    if (qos === 1) this.sock?.write(pubackPacket(packetId));
  }
  onSuback(): void {
    this.ready = true;
    this.onReady();
  }
  onPingresp(): void {}
  onMalformed(): void {
    error('sub_malformed');
  }

  stop(): void {
    this.sock?.end(DISCONNECT);
  }
}

function parseOptions(argv: string[]): Options {
  const { flags } = parseFlags(argv);
  const s = (k: string): string | undefined =>
    typeof flags[k] === 'string' ? (flags[k] as string) : undefined;
  const n = (k: string, d: number): number => (s(k) === undefined ? d : Number(s(k)));
  const target = parseHostPort(s('target') ?? '127.0.0.1:1883');
  if (target === undefined) throw new Error('--target HOST:PORT');
  return {
    host: target.host,
    port: target.port,
    vehicles: n('vehicles', 100),
    rate: n('rate', 1),
    durationMs: parseDuration(s('duration') ?? '60s') ?? 60_000,
    keepaliveS: n('keepalive', 30),
    idPrefix: s('idPrefix') ?? 'MQ-',
    rampPerSec: n('ramp', 2000),
    window: n('window', 256),
    drainMs: parseDuration(s('drain') ?? '5s') ?? 5_000,
    subscriber: flags.subscriber === true,
    subQos: n('subQos', 1) === 0 ? 0 : 1,
    tickMs: parseDuration(s('tick') ?? '20ms') ?? 20,
  };
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const { flags } = parseFlags(process.argv.slice(2));
  const progressJson = flags.progress === 'json';
  rate = opts.rate;
  const fd = ensureFdLimit(opts.vehicles + 64);
  if (!fd.enough) process.stderr.write(`mqtt-sim: ${fd.note}\n`);
  let stopRequested = false;
  if (flags.control === 'stdin') {
    createInterface({ input: process.stdin }).on('line', (line) => {
      try {
        const msg = JSON.parse(line) as { rate?: number; stop?: boolean };
        if (typeof msg.rate === 'number') rate = msg.rate;
        if (msg.stop === true) stopRequested = true;
      } catch {
        // ignore
      }
    });
  }
  process.on('SIGTERM', () => (stopRequested = true));
  process.on('SIGINT', () => (stopRequested = true));

  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const sub = opts.subscriber ? new Subscriber(opts) : undefined;
  if (sub !== undefined) await sub.start();
  const vehicles = Array.from(
    { length: opts.vehicles },
    (_, i) => new MqttVehicle(`${opts.idPrefix}${String(i).padStart(6, '0')}`, i, opts),
  );
  const started = performance.now();
  const startEpoch = Date.now();
  let last = started;
  let budget = 0;
  let cursor = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    budget = Math.min(budget + (opts.rampPerSec * (now - last)) / 1000, opts.rampPerSec);
    last = now;
    if (!stopping) {
      for (let k = 0; k < vehicles.length && budget >= 1; k++) {
        const v = vehicles[cursor]!;
        cursor = (cursor + 1) % vehicles.length;
        if ((v.state === 'idle' || v.state === 'waiting') && now >= v.reconnectAt) {
          budget--;
          v.start(now);
        }
      }
    }
    for (const v of vehicles) v.tick(now);
    if (st.allConnectedAt === 0 && st.connected === vehicles.length) st.allConnectedAt = now;
  }, opts.tickMs);
  let prev = { at: started, sent: 0, acked: 0, delivered: 0 };
  const report = (): void => {
    const now = performance.now();
    const dt = Math.max(1, now - prev.at) / 1000;
    let inflight = 0;
    for (const v of vehicles) inflight += v.inflight;
    const line = {
      kind: 'vmcp-sim-progress',
      t: Math.round(now - started),
      at: Date.now(),
      connected: st.connected,
      connecting: 0,
      sent: st.sent,
      stored: st.acked,
      delivered: st.delivered,
      throttled: 0,
      resent: 0,
      backlog: inflight,
      reconnects: 0,
      errors: Object.values(st.errors).reduce((a, b) => a + b, 0),
      commands: 0,
      sentPerSec: Math.round((st.sent - prev.sent) / dt),
      storedPerSec: Math.round((st.acked - prev.acked) / dt),
      deliveredPerSec: Math.round((st.delivered - prev.delivered) / dt),
      p50: st.interval.percentileMs(50),
      p99: st.interval.percentileMs(99),
      max: st.interval.percentileMs(100),
      loopMaxMs: Math.round(loop.max / 10_000) / 100,
      h: st.interval.encode(),
    };
    loop.reset();
    st.interval.reset();
    prev = { at: now, sent: st.sent, acked: st.acked, delivered: st.delivered };
    if (progressJson) process.stderr.write(`${JSON.stringify(line)}\n`);
  };
  const progress = setInterval(report, 1000);
  const waitUntil = async (done: () => boolean, ms: number): Promise<void> => {
    const until = performance.now() + ms;
    while (!done() && performance.now() < until) await new Promise((r) => setTimeout(r, 50));
  };
  await waitUntil(() => stopRequested, opts.durationMs);
  generating = false;
  const sendingMs = performance.now() - started;
  await waitUntil(
    () =>
      vehicles.every((v) => v.inflight === 0) && (sub === undefined || st.delivered >= st.acked),
    opts.drainMs,
  );
  stopping = true;
  clearInterval(timer);
  report();
  clearInterval(progress);
  const atEnd = st.connected;
  for (const v of vehicles) v.stop();
  sub?.stop();
  await waitUntil(() => vehicles.every((v) => v.state === 'stopped'), 3_000);
  for (const v of vehicles) v.destroy();
  let unacked = 0;
  for (const v of vehicles) unacked += v.inflight;
  const usage = process.cpuUsage();
  const summary = {
    kind: 'mqtt-sim-summary',
    target: `mqtt://${opts.host}:${opts.port}`,
    idPrefix: opts.idPrefix,
    vehicles: opts.vehicles,
    rate,
    batch: 1,
    startedAt: startEpoch,
    durationMs: opts.durationMs,
    elapsedMs: Math.round(performance.now() - started),
    fdLimit: fd,
    connections: {
      peak: st.peak,
      atEnd,
      attempts: st.attempts,
      accepted: st.accepted,
      reconnects: Math.max(0, st.accepted - opts.vehicles),
      allConnectedMs: st.allConnectedAt === 0 ? null : Math.round(st.allConnectedAt - started),
      refused: { refused: st.refused },
    },
    uplink: {
      sent: st.sent,
      stored: st.acked,
      delivered: st.delivered,
      unacked,
      storedPerSec: Math.round((st.acked / sendingMs) * 1000),
    },
    latencyMs: st.latency.summary(),
    histogram: st.latency.encode(),
    errors: st.errors,
    errorsTotal: Object.values(st.errors).reduce((a, b) => a + b, 0),
    process: {
      cpuUserMs: Math.round(usage.user / 1000),
      cpuSystemMs: Math.round(usage.system / 1000),
      rssMb: Math.round(process.memoryUsage.rss() / 1048576),
    },
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  setTimeout(() => process.exit(0), 200).unref();
}

main().catch((err: unknown) => {
  process.stderr.write(`mqtt-sim: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
