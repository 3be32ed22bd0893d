// Prometheus metrics (prom-client) of one gateway: a private registry, label children cached for the hot path.
import { readdir } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ACK_STATUS_NAMES, cmdName } from '../protocol/constants.js';

const CMD_NAMES = Array.from({ length: 128 }, (_, code) => cmdName(code));

/**
 * prom-client defaults whose scrape walks every open handle or file descriptor on the event loop:
 * at 18,000 vehicle sockets one scrape took ~31 ms (active handles and resources ~15 ms, the
 * synchronous scan of /proc/self/fd ~15 ms), a stall for every vehicle on each scrape. The handle
 * counts are left out (vmcp_connections counts the vehicles); process_open_fds is counted off the
 * event loop instead (openFdsGauge).
 */
const LOOP_SCANNING_DEFAULTS = [
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
  'process_open_fds',
];

/**
 * prom-client defaults that break Prometheus naming (promtool check metrics): a gauge named
 * `_total`. nodejs_active_requests (by type) carries the same count.
 */
const MISNAMED_DEFAULTS = ['nodejs_active_requests_total'];

/** How long a count of open file descriptors is reused: a scan of 18,000 costs ~23 ms of CPU. */
export const OPEN_FDS_REFRESH_MS = 10_000;

export interface MetricsOptions {
  /** prom-client's process and Node.js metrics (default true). */
  defaultMetrics?: boolean;
  /** Reuse of the open-fd count, ms (default OPEN_FDS_REFRESH_MS; 0: count on every scrape). */
  openFdsRefreshMs?: number;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly connections = new Gauge({
    name: 'vmcp_connections',
    help: 'Vehicle connections by session state',
    labelNames: ['state'],
    registers: [this.registry],
  });
  readonly connectionsAccepted = new Counter({
    name: 'vmcp_connections_accepted_total',
    help: 'Transport connections accepted',
    labelNames: ['transport'],
    registers: [this.registry],
  });
  readonly connacks = new Counter({
    name: 'vmcp_connacks_total',
    help: 'CONNACKs sent by status',
    labelNames: ['status'],
    registers: [this.registry],
  });
  // Per-message counts are plain numbers on the hot path, handed to prom-client on each scrape.
  private readonly inCounts = new Float64Array(128);
  private readonly outCounts = new Float64Array(128);
  private readonly ackCounts = new Float64Array(ACK_STATUS_NAMES.length);
  readonly messages = new Counter({
    name: 'vmcp_messages_total',
    help: 'VMCP messages by direction and command',
    labelNames: ['direction', 'command'],
    registers: [this.registry],
    collect: () => {
      const c = this.messages;
      c.reset();
      for (let code = 0; code < 128; code++) {
        const name = CMD_NAMES[code]!;
        c.labels('in', name).inc(this.inCounts[code]);
        c.labels('out', name).inc(this.outCounts[code]);
      }
    },
  });
  readonly acks = new Counter({
    name: 'vmcp_uplink_acks_total',
    help: 'Uplink messages answered, by UPLINK_ACK status',
    labelNames: ['status'],
    registers: [this.registry],
    collect: () => {
      const c = this.acks;
      c.reset();
      ACK_STATUS_NAMES.forEach((name, i) => c.labels(name).inc(this.ackCounts[i]));
    },
  });
  readonly storeCommit = new Histogram({
    name: 'vmcp_store_commit_seconds',
    help: 'Duration of one uplink group commit',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });
  readonly storeBatch = new Histogram({
    name: 'vmcp_store_batch_messages',
    help: 'Uplink seqs per group commit',
    buckets: [1, 4, 16, 64, 256, 1024, 4096, 16384],
    registers: [this.registry],
  });
  readonly storeUp = new Gauge({
    name: 'vmcp_store_up',
    help: '1 while the store accepts writes, 0 after a failed write until it recovers',
    registers: [this.registry],
  });
  readonly diskFree = new Gauge({
    name: 'vmcp_disk_free_bytes',
    help: 'Free bytes in the data dir, as last checked (every 5 s while a disk floor is set)',
    registers: [this.registry],
  });
  readonly diskBelowFloor = new Gauge({
    name: 'vmcp_disk_below_floor',
    help: '1 while free disk is below --disk-floor: uplink is answered THROTTLED and /readyz 503',
    registers: [this.registry],
  });
  readonly commands = new Counter({
    name: 'vmcp_commands_total',
    help: 'Downlink command status changes',
    labelNames: ['status'],
    registers: [this.registry],
  });
  readonly protocolErrors = new Counter({
    name: 'vmcp_protocol_errors_total',
    help: 'Protocol errors detected, by kind',
    labelNames: ['code'],
    registers: [this.registry],
  });
  readonly disconnects = new Counter({
    name: 'vmcp_disconnects_total',
    help: 'Sessions closed, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly uplinkPending = new Gauge({
    name: 'vmcp_uplink_pending',
    help: 'Uplink messages waiting for the store',
    registers: [this.registry],
  });

  constructor(options: MetricsOptions = {}) {
    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });
      for (const name of [...LOOP_SCANNING_DEFAULTS, ...MISNAMED_DEFAULTS])
        this.registry.removeSingleMetric(name);
      if (process.platform === 'linux')
        openFdsGauge(this.registry, options.openFdsRefreshMs ?? OPEN_FDS_REFRESH_MS);
    }
    for (const s of ['connecting', 'connected', 'closing']) this.connections.labels(s).set(0);
    this.storeUp.set(1);
  }

  messageIn(code: number, n = 1): void {
    this.inCounts[code & 0x7f]! += n;
  }

  messageOut(code: number, n = 1): void {
    this.outCounts[code & 0x7f]! += n;
  }

  ack(status: number, n = 1): void {
    if (status < this.ackCounts.length) this.ackCounts[status]! += n;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * process_open_fds (prom-client's name and meaning), counted by an asynchronous readdir of
 * /proc/self/fd on the thread pool, at most once per `refreshMs`; scrapes in between report the
 * last count. The scan's result is converted on the event loop (~2 ms at 18,000 descriptors).
 */
function openFdsGauge(registry: Registry, refreshMs: number): void {
  let countedAt = -Infinity;
  let counting: Promise<void> | undefined;
  new Gauge({
    name: 'process_open_fds',
    help: `Number of open file descriptors (counted at most every ${refreshMs / 1000} s).`,
    registers: [registry],
    collect(): Promise<void> | void {
      if (counting !== undefined) return counting;
      if (performance.now() - countedAt < refreshMs) return;
      countedAt = performance.now();
      counting = readdir('/proc/self/fd')
        // The directory's own descriptor is in the list while it is read.
        .then((names) => this.set(names.length - 1))
        .catch(() => undefined)
        .finally(() => (counting = undefined));
      return counting;
    },
  });
}
