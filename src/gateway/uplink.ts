// Durable uplink: the per-vehicle seq checks of PROTOCOL.md 3.2, rate limiting, group commit, and acks after commit.
import {
  AckStatus,
  writeUplinkAckFrame,
  UPLINK_ACK_FRAME_BYTES,
  Cmd,
  DisconnectReason,
} from '../protocol/index.js';
import type { UplinkRecord } from '../protocol/record.js';
import type { AppendFailure, UplinkWrite } from '../store/types.js';
import type { Gateway } from './gateway.js';
import type { Session } from './session.js';

/** No UPLINK_ACK at this write (a TELEMETRY_BATCH sample other than the last). */
export const NO_ACK = -1;

/** One consumed seq waiting for the store, and what to answer once it is durable. */
interface PendingWrite extends UplinkWrite {
  session: Session;
  /** Status to send at this seq on success, or NO_ACK. */
  ack: number;
  /** The seq the ack carries (LAST for a batch). */
  ackSeq: number;
  /** False for an echo: a resend of a seq still in flight, answered DUPLICATE once it is durable. */
  write: boolean;
}

/** Answer to the admission checks (a)–(c) of 3.2: ADMIT, or the status already sent. */
export const ADMIT = -1;

/**
 * Collects consumed uplink seqs from all sessions and commits them in groups: one store call at
 * once after an idle spell, then at most one per commitIntervalMs under load, then the acks.
 * Nothing is acked before the store reports it durable; on a failure nothing is consumed and the
 * vehicles are told THROTTLED so they resend.
 */
export class UplinkPipeline {
  private pending: PendingWrite[] = [];
  private inFlight = false;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private idleWaiters: (() => void)[] = [];
  /** performance.now() when the last commit started: commits start at most once per interval. */
  private lastCommitAt = -Infinity;
  /**
   * 3.2: the rate limit is per vehicle, so reconnecting does not refill it. Buckets of ended
   * sessions that were short of full, by vehicle, until they refill (on this node).
   */
  private readonly endedBuckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly gw: Gateway) {}

  get backlog(): number {
    return this.pending.length;
  }

  get busy(): boolean {
    return this.inFlight || this.pending.length > 0;
  }

  /**
   * Checks (a)–(c) of 3.2 for a message covering seqs first…last (last = first for TELEMETRY/EVENT).
   * Sends DUPLICATE / OUT_OF_ORDER / THROTTLED itself and returns its status, or returns ADMIT.
   * `samples` is what the rate limit charges.
   */
  admit(s: Session, first: number, last: number, samples: number, isBatch: boolean): number {
    const gw = this.gw;
    // (a) everything already consumed. A seq consumed but still in flight is answered after its commit.
    if (last <= s.uplinkDurable) {
      this.answer(s, isBatch ? last : first, AckStatus.DUPLICATE);
      return AckStatus.DUPLICATE;
    }
    if (last < s.uplinkNext) {
      this.push({
        session: s,
        vehicleId: s.vehicleId,
        seq: last,
        record: null,
        ack: AckStatus.DUPLICATE,
        ackSeq: last,
        write: false,
      });
      return AckStatus.DUPLICATE;
    }
    // (b) a gap: the vehicle must resend from the seq we expect.
    if (first > s.uplinkNext) {
      this.answer(s, s.uplinkNext, AckStatus.OUT_OF_ORDER);
      return AckStatus.OUT_OF_ORDER;
    }
    // (c) the per-vehicle token bucket, and shedding while the store cannot take writes.
    const resumeAt = s.uplinkNext;
    if (!gw.storeWritable || !this.takeTokens(s, samples)) {
      this.answer(s, resumeAt, AckStatus.THROTTLED);
      return AckStatus.THROTTLED;
    }
    return ADMIT;
  }

  /** A new session goes on from its vehicle's last bucket, refilled since; else a full one. */
  startBucket(s: Session): void {
    const kept = this.endedBuckets.get(s.vehicleId);
    this.endedBuckets.delete(s.vehicleId);
    s.bucketTokens = kept?.tokens ?? this.gw.config.uplinkBurst;
    s.bucketAt = kept?.at ?? this.gw.now;
  }

  /** An accepted session ended: its bucket is kept until it has refilled (pruneBuckets). */
  keepBucket(s: Session): void {
    const cfg = this.gw.config;
    const now = this.gw.now;
    const tokens = Math.min(
      cfg.uplinkBurst,
      s.bucketTokens + ((now - s.bucketAt) * cfg.uplinkRatePerSec) / 1000,
    );
    if (tokens <= cfg.uplinkBurst - 1) this.endedBuckets.set(s.vehicleId, { tokens, at: now });
  }

  /** Forgets kept buckets that are full again (once a second). */
  pruneBuckets(now: number): void {
    const cfg = this.gw.config;
    for (const [id, b] of this.endedBuckets) {
      if (b.tokens + ((now - b.at) * cfg.uplinkRatePerSec) / 1000 >= cfg.uplinkBurst)
        this.endedBuckets.delete(id);
    }
  }

  private takeTokens(s: Session, samples: number): boolean {
    const cfg = this.gw.config;
    const now = this.gw.now;
    const elapsed = now - s.bucketAt;
    s.bucketAt = now;
    s.bucketTokens = Math.min(
      cfg.uplinkBurst,
      s.bucketTokens + (elapsed * cfg.uplinkRatePerSec) / 1000,
    );
    if (s.bucketTokens < 1) return false;
    // 3.2: admitted with at least one token, then one per sample (the bucket may go negative).
    s.bucketTokens -= samples;
    return true;
  }

  /**
   * Consumes `seq` with a record (STORED) or as a hole (REJECTED / FORBIDDEN); acked after the
   * commit. `raw`: the record's TLVs (UplinkWrite.raw).
   */
  consume(
    s: Session,
    seq: number,
    record: UplinkRecord | null,
    ack: number,
    ackSeq = seq,
    raw?: Uint8Array,
  ): void {
    s.uplinkNext = seq + 1;
    // Every uplink record's traceparent is made by its session's tracer (handlers/uplink.ts).
    const traceIds = record === null ? undefined : s.tracer?.ids;
    this.push({
      session: s,
      vehicleId: s.vehicleId,
      seq,
      record,
      raw,
      traceIds,
      fence: s.fence,
      ack,
      ackSeq,
      write: true,
    });
  }

  /** Sends an UPLINK_ACK now (answers that consume nothing); it answers `messages` messages. */
  answer(s: Session, seq: number, status: number, messages = 1): void {
    const buf = Buffer.allocUnsafe(UPLINK_ACK_FRAME_BYTES);
    writeUplinkAckFrame(buf, 0, seq, status);
    this.gw.metrics.ack(status, messages);
    this.gw.metrics.messageOut(Cmd.UPLINK_ACK);
    s.write(buf);
  }

  private push(w: PendingWrite): void {
    w.session.inflight++;
    this.pending.push(w);
    if (this.pending.length >= this.gw.config.maxPendingUplink) this.gw.pauseUplink();
    this.schedule();
  }

  /**
   * Starts the next commit when the interval since the last one started has passed (at once when a
   * full batch waits). Under load, commits go back to back no more often than once per interval, so
   * each carries rate × interval messages: the per-commit cost (fsync, the pages each commit
   * rewrites) is shared by more messages, for at most one interval of added latency.
   */
  private schedule(): void {
    if (this.inFlight || this.timer !== undefined || this.immediate !== undefined) return;
    const interval = this.gw.config.commitIntervalMs;
    const wait =
      this.pending.length >= this.gw.config.commitMaxBatch
        ? 0
        : Math.min(interval, this.lastCommitAt + interval - performance.now());
    if (wait <= 0) {
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        void this.flush();
      });
    } else {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, wait);
    }
  }

  /** Commits what is pending (one store call), then sends the acks. */
  async flush(): Promise<void> {
    if (this.inFlight || this.pending.length === 0) return;
    const max = this.gw.config.commitMaxBatch;
    let batch: PendingWrite[];
    if (this.pending.length <= max) {
      batch = this.pending;
      this.pending = [];
    } else {
      batch = this.pending.slice(0, max);
      this.pending = this.pending.slice(max);
    }
    this.inFlight = true;
    // The store wants each vehicle's writes together and in order: group by session, keeping order.
    const groups = new Map<Session, PendingWrite[]>();
    for (const w of batch) {
      const g = groups.get(w.session);
      if (g === undefined) groups.set(w.session, [w]);
      else g.push(w);
    }
    const writes: UplinkWrite[] = [];
    for (const g of groups.values()) for (const w of g) if (w.write) writes.push(w);

    let failures: Map<string, AppendFailure> | undefined;
    let error: Error | undefined;
    const started = performance.now();
    this.lastCommitAt = started;
    if (writes.length > 0) {
      try {
        failures = await this.gw.store.appendUplink(writes);
      } catch (err) {
        error = err instanceof Error ? err : new Error(String(err));
      }
    } else {
      failures = new Map();
    }
    const gw = this.gw;
    gw.tickNow();
    if (writes.length > 0) {
      gw.metrics.storeCommit.observe((performance.now() - started) / 1000);
      gw.metrics.storeBatch.observe(writes.length);
    }
    if (error !== undefined) gw.storeFailed(error);
    else gw.storeSucceeded();

    for (const [s, group] of groups) {
      const failure =
        error !== undefined ? ({ kind: 'error', error } as const) : failures!.get(s.vehicleId);
      if (failure === undefined) this.committed(s, group);
      else this.rolledBack(s, group, failure);
      s.inflight -= group.length;
      if (s.inflight === 0 && s.settleWaiters !== null) {
        const waiters = s.settleWaiters;
        s.settleWaiters = null;
        for (const w of waiters) w();
      }
    }
    this.inFlight = false;
    gw.metrics.uplinkPending.set(this.pending.length);
    if (this.pending.length < gw.config.maxPendingUplink / 2) gw.resumeUplink();
    if (this.pending.length > 0) {
      // Under load the next batch goes once this one is done and the interval has passed.
      this.schedule();
    } else {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private committed(s: Session, group: PendingWrite[]): void {
    const gw = this.gw;
    const live = s.state !== 'closed';
    const hasListeners = gw.events.listenerCount('uplink') > 0;
    // Messages the pending cumulative STORED answers (the metric counts messages, not frames).
    let runMessages = 0;
    for (const w of group) {
      if (w.write && w.seq > s.uplinkDurable) s.uplinkDurable = w.seq;
      if (hasListeners && w.record !== null && w.write) gw.events.emit('uplink', w.record);
      if (w.ack === NO_ACK || !live) continue;
      if (w.ack === AckStatus.STORED) {
        s.ackRun = w.ackSeq; // coalesced: one cumulative STORED for a run of STORED seqs (3.2)
        runMessages++;
        continue;
      }
      if (s.ackRun !== 0) {
        this.answer(s, s.ackRun, AckStatus.STORED, runMessages);
        s.ackRun = 0;
        runMessages = 0;
      }
      this.answer(s, w.ackSeq, w.ack);
    }
    if (s.ackRun !== 0) {
      if (live) this.answer(s, s.ackRun, AckStatus.STORED, runMessages);
      s.ackRun = 0;
    }
  }

  /**
   * The store did not take this vehicle's writes: nothing of the group is consumed. The session
   * rolls back to the first unconsumed seq; the vehicle is told THROTTLED (resend from there after
   * ≥ 1 s) and any later answer point gets OUT_OF_ORDER. Writes of this session still pending
   * behind the failed batch are rolled back too, since they would leave a gap.
   */
  private rolledBack(s: Session, group: PendingWrite[], failure: AppendFailure): void {
    const gw = this.gw;
    if (failure.kind === 'fenced') {
      // A later session of this vehicle connected on another node while this one could not be
      // told (its node stalled): nothing is consumed or acked; the vehicle resends on that session.
      this.dropPending(s);
      s.uplinkNext = s.uplinkDurable + 1;
      if (s.state === 'connected')
        s.disconnect(DisconnectReason.TAKEN_OVER, 'taken over on another node');
      gw.logger.warn(
        { vehicleId: s.vehicleId, sessionId: s.id, fence: s.fence },
        'uplink of a superseded session refused by the store',
      );
      return;
    }
    let resumeAt: number;
    let status: number;
    if (failure.kind === 'conflict') {
      // The store knows a different last seq (another node consumed seqs): follow it.
      s.uplinkDurable = failure.lastSeq;
      resumeAt = failure.lastSeq + 1;
      status = AckStatus.OUT_OF_ORDER;
      gw.logger.warn(
        { vehicleId: s.vehicleId, sessionId: s.id, lastSeq: failure.lastSeq },
        'uplink seq conflict in store',
      );
    } else {
      resumeAt = s.uplinkDurable + 1;
      status = AckStatus.THROTTLED;
    }
    s.uplinkNext = resumeAt;
    const live = s.state !== 'closed';
    let first = true;
    const consumed = failure.kind === 'conflict' ? failure.lastSeq : 0;
    const answerPoint = (w: PendingWrite): void => {
      if (w.ack === NO_ACK || !live) return;
      // 3.2 (a): a seq the store had consumed already (a batch: its LAST) is a DUPLICATE.
      if (w.ackSeq <= consumed) return this.answer(s, w.ackSeq, AckStatus.DUPLICATE);
      this.answer(s, resumeAt, first ? status : AckStatus.OUT_OF_ORDER);
      first = false;
    };
    for (const w of group) answerPoint(w);
    this.dropPending(s, answerPoint);
  }

  /** Removes the writes of `s` still pending behind a failed batch (they would leave a gap). */
  private dropPending(s: Session, each?: (w: PendingWrite) => void): void {
    if (!this.pending.some((w) => w.session === s)) return;
    const keep: PendingWrite[] = [];
    for (const w of this.pending) {
      if (w.session !== s) keep.push(w);
      else {
        s.inflight--;
        each?.(w);
      }
    }
    this.pending = keep;
  }

  /** Resolves once every write of `s` is settled (committed or rolled back): takeover waits on it. */
  settle(s: Session): Promise<void> {
    if (s.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => (s.settleWaiters ??= []).push(resolve));
  }

  /** Resolves when nothing is pending or in flight (shutdown flushes the store through this). */
  async drain(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.flush();
    }
    if (!this.busy) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }
}
