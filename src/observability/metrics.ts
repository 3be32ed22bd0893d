// Prometheus metrics (prom-client) of one gateway: a private registry, label children cached for the hot path.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ACK_STATUS_NAMES, cmdName } from '../protocol/constants.js';

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
  readonly messages = new Counter({
    name: 'vmcp_messages_total',
    help: 'VMCP messages by direction and command',
    labelNames: ['direction', 'command'],
    registers: [this.registry],
  });
  readonly acks = new Counter({
    name: 'vmcp_uplink_acks_total',
    help: 'Uplink messages answered, by UPLINK_ACK status',
    labelNames: ['status'],
    registers: [this.registry],
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

  private readonly inByCmd: Counter.Internal[] = [];
  private readonly outByCmd: Counter.Internal[] = [];
  private readonly ackByStatus: Counter.Internal[] = [];

  constructor(defaultMetrics = true) {
    if (defaultMetrics)
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });
    for (let code = 0; code < 128; code++) {
      this.inByCmd.push(this.messages.labels('in', cmdName(code)));
      this.outByCmd.push(this.messages.labels('out', cmdName(code)));
    }
    ACK_STATUS_NAMES.forEach((name) => this.ackByStatus.push(this.acks.labels(name)));
    for (const s of ['connecting', 'connected', 'closing']) this.connections.labels(s).set(0);
    this.storeUp.set(1);
  }

  messageIn(code: number, n = 1): void {
    this.inByCmd[code & 0x7f]!.inc(n);
  }

  messageOut(code: number, n = 1): void {
    this.outByCmd[code & 0x7f]!.inc(n);
  }

  ack(status: number, n = 1): void {
    this.ackByStatus[status]?.inc(n);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
