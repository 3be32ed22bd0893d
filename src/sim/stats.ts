// Fleet-wide counters of the simulator (one object shared by every simulated vehicle).
import { LatencyHistogram } from './histogram.js';

export class SimStats {
  // Connections
  connectAttempts = 0;
  accepted = 0;
  reconnects = 0;
  connected = 0;
  connecting = 0;
  peakConnected = 0;
  /** performance.now() when every vehicle was first connected at once (0: never). */
  allConnectedAt = 0;
  refused: Record<string, number> = {};
  disconnects: Record<string, number> = {};
  errors: Record<string, number> = {};
  redirects = 0;
  pingsSent = 0;
  pongs = 0;
  pingMisses = 0;

  // Uplink
  generated = 0;
  events = 0;
  /** Samples written at least once. */
  sent = 0;
  /** Messages written (a TELEMETRY_BATCH is one). */
  messages = 0;
  /** Sample transmissions after the first (after THROTTLED, OUT_OF_ORDER or a reconnect). */
  resent = 0;
  /** Samples acked STORED (cumulatively). */
  stored = 0;
  /** Samples found consumed by NEXT_UPLINK_SEQ after a reconnect (their STORED ack was lost). */
  storedOnResume = 0;
  duplicates = 0;
  rejected = 0;
  throttled = 0;
  outOfOrder = 0;
  /** Samples not generated because the vehicle's outbox was full. */
  skipped = 0;
  /** Ticks where a vehicle held back uplink because its socket buffer was full. */
  blocked = 0;

  // Downlink
  commands = 0;
  commandsRedelivered = 0;
  commandsExpired = 0;
  sensorReads = 0;

  /** Epoch ms of the last CONNACK after a reconnect, and of the last reconnected vehicle's resend completing. */
  lastReconnectAt = 0;
  lastResyncAt = 0;

  /** Send → STORED, every sample of the run. */
  readonly latency = new LatencyHistogram();
  /** Send → STORED, since the last progress report. */
  readonly interval = new LatencyHistogram();
  /** Last transmission → STORED (the gateway's service time; excludes waits after THROTTLED). */
  readonly service = new LatencyHistogram();
  /** TCP connect → CONNACK ACCEPTED. */
  readonly connect = new LatencyHistogram();
  /** API accept (EXPIRES_AT − ttl) → COMMAND received. */
  readonly commandDelivery = new LatencyHistogram();

  error(code: string): void {
    this.errors[code] = (this.errors[code] ?? 0) + 1;
  }

  get errorsTotal(): number {
    let n = 0;
    for (const k in this.errors) n += this.errors[k]!;
    return n;
  }

  recordAck(ms: number): void {
    this.latency.recordMs(ms);
    this.interval.recordMs(ms);
  }
}

export function bump(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}
