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
  /** Most connections awaiting CONNACK at once. */
  peakConnecting = 0;
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

  /** Send → STORED, every sample of the run, up to the last takeInterval(). */
  readonly latency = new LatencyHistogram();
  /**
   * Last transmission → STORED (the gateway's service time; excludes waits after THROTTLED), every
   * sample of the run, up to the last takeInterval().
   */
  readonly service = new LatencyHistogram();
  // Since the last takeInterval(), send → STORED of the samples sent once (their service time is the
  // same value), and apart, of the samples sent more than once with their service times. A sample
  // sent once costs one histogram record; the run's histograms are added up once per interval.
  private readonly sentOnce = new LatencyHistogram();
  private readonly resentLatency = new LatencyHistogram();
  private readonly resentService = new LatencyHistogram();
  private readonly interval = new LatencyHistogram();
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

  /** One sample acked STORED: first transmission → ack, last transmission → ack (ms). */
  recordAck(ms: number, serviceMs: number): void {
    if (serviceMs === ms) this.sentOnce.recordMs(ms);
    else {
      this.resentLatency.recordMs(ms);
      this.resentService.recordMs(serviceMs);
    }
  }

  /**
   * Adds the samples acked since the last call to `latency` and `service`, and returns their
   * send → STORED histogram (the progress interval's; valid until the next call).
   */
  takeInterval(): LatencyHistogram {
    const iv = this.interval;
    iv.reset();
    const once = this.sentOnce;
    const resent = this.resentLatency;
    if (once.count > 0) {
      iv.add(once);
      this.service.add(once);
      once.reset();
    }
    if (resent.count > 0) {
      iv.add(resent);
      this.service.add(this.resentService);
      resent.reset();
      this.resentService.reset();
    }
    if (iv.count > 0) this.latency.add(iv);
    return iv;
  }
}

export function bump(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}
