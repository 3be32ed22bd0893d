// Reliable downlink: the persisted command outbox, in-order delivery within a window, resend on reconnect, expiry, results (PROTOCOL.md 4).
import { randomUUID } from 'node:crypto';
import { VmcpError } from '../errors.js';
import {
  Cmd,
  CommandResult,
  ErrorCode,
  decodeCommandAck,
  decodeSensorData,
  decodeUtf8,
  encodeCommand,
  encodeSensorRead,
  readU32,
  toHex,
} from '../protocol/index.js';
import { RESULT_STATUS, type CommandRow, type CommandStatus } from '../store/types.js';
import type { Gateway } from './gateway.js';
import { ScopeBit, type DownlinkState, type Session } from './session.js';
import { isVmcpError } from '../errors.js';

/** Statuses of a command that is neither final nor expired. */
const OPEN: ReadonlySet<CommandStatus> = new Set<CommandStatus>(['pending', 'delivered']);

/** How long after a failed write a command result is written again (the store's probe period). */
const RESULT_RETRY_MS = 1_000;

/** 9: a command that is no longer pending answers 409 command_delivered or command_final. */
function notCancellable(status: CommandStatus): VmcpError {
  return new VmcpError(
    status === 'delivered' ? 'VMCP_ERR_COMMAND_DELIVERED' : 'VMCP_ERR_COMMAND_FINAL',
  );
}

function newState(): DownlinkState {
  return {
    known: new Map(),
    queue: [],
    inflight: new Set(),
    recording: new Set(),
    highestSeq: 0,
    syncing: 0,
    pumpAgain: false,
  };
}

/** Inserts `row` into a queue kept in seq order. */
function insertBySeq(queue: CommandRow[], row: CommandRow): void {
  let i = queue.length;
  while (i > 0 && queue[i - 1]!.seq > row.seq) i--;
  queue.splice(i, 0, row);
}

/** The session's downlink state, created on first use. */
function stateOf(s: Session): DownlinkState {
  return (s.downlink ??= newState());
}

export interface PostCommand {
  vehicleId: string;
  name: string;
  /** JSON text sent as PARAMS (as the API client wrote it); null → no PARAMS TLV. */
  paramsText: string | null;
  ttlMs: number;
  traceparent: string | null;
}

/** 4.2: RESULT_PAYLOAD is JSON; otherwise its text, or lower-case hex when it is not UTF-8. */
export function parseResultPayload(payload: Uint8Array | undefined): unknown {
  if (payload === undefined) return null;
  const text = decodeUtf8(payload, 0, payload.length);
  if (text === undefined) return toHex(payload);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export class Downlink {
  constructor(private readonly gw: Gateway) {}

  /** Persists a command (202 means durable) and sends it at once when the vehicle is online. */
  async post(req: PostCommand): Promise<CommandRow> {
    const now = this.gw.clock.now();
    const row = await this.gw.store.createCommand({
      id: `cmd_${randomUUID()}`,
      vehicleId: req.vehicleId,
      name: req.name,
      params: req.paramsText,
      createdAt: now,
      expiresAt: now + req.ttlMs,
      traceparent: req.traceparent,
    });
    this.gw.commandChanged(row);
    const s = this.gw.sessions.get(req.vehicleId);
    if (s !== undefined && s.state === 'connected') {
      // The session keeps its own copy: sending it changes its status, the caller's answer stays `pending`.
      void this.enqueue(s, { ...row });
    } else if (s !== undefined && s.state === 'connecting') {
      (s.lateCommands ??= []).push(row.id);
    } else if (this.gw.cluster !== undefined) {
      // Delivered by whichever node holds the vehicle (cluster mode).
      const owner = await this.gw.cluster.lookup(req.vehicleId).catch(() => undefined);
      if (owner !== undefined && owner.nodeId !== this.gw.nodeId) {
        await this.gw.cluster
          .send(owner.nodeId, { t: 'command', vehicleId: req.vehicleId, commandId: row.id })
          .catch((err: unknown) =>
            this.gw.logger.warn(
              { err: String(err), commandId: row.id },
              'command notification failed',
            ),
          );
      }
    }
    return row;
  }

  /** 9: only a pending command (never written to the vehicle) can be cancelled. */
  async cancel(id: string): Promise<CommandRow> {
    const row = await this.current(id);
    if (row === undefined) throw new VmcpError('VMCP_ERR_COMMAND_NOT_FOUND');
    if (row.status !== 'pending') throw notCancellable(row.status);
    const s = this.gw.sessions.get(row.vehicleId);
    const state = s?.downlink;
    if (state != null && state.inflight.has(row.seq))
      throw new VmcpError('VMCP_ERR_COMMAND_DELIVERED');
    const now = this.gw.clock.now();
    const updated = await this.gw.store.transitionCommand(id, ['pending'], 'cancelled', now);
    if (updated === undefined) throw notCancellable((await this.gw.store.getCommand(id))!.status);
    if (state != null) this.forget(state, updated.seq);
    else if (this.gw.cluster !== undefined) {
      const owner = await this.gw.cluster.lookup(row.vehicleId).catch(() => undefined);
      if (owner !== undefined && owner.nodeId !== this.gw.nodeId) {
        await this.gw.cluster
          .send(owner.nodeId, { t: 'cancel', vehicleId: row.vehicleId, seq: row.seq })
          .catch(() => undefined);
      }
    }
    this.gw.commandChanged(updated);
    return updated;
  }

  /** Open commands of a vehicle at `now` (QUERY 0x02). */
  async pendingCount(vehicleId: string): Promise<number> {
    return (await this.gw.store.openCommands(vehicleId, this.gw.clock.now())).length;
  }

  /**
   * On CONNACK ACCEPTED (4.1): open commands with SEQ ≤ LAST_COMMAND_SEQ finished on the vehicle and
   * are not sent again (they become `delivered` until they expire); the others are queued in order.
   */
  async attach(s: Session, lastCommandSeq: number, open: CommandRow[]): Promise<void> {
    // Most sessions have no open command: they get no downlink state until one arrives.
    if (open.length === 0) return;
    const state = newState();
    const now = this.gw.clock.now();
    state.highestSeq = Math.max(lastCommandSeq, open[open.length - 1]!.seq);
    for (const row of open) {
      state.known.set(row.seq, row);
      if (row.seq > lastCommandSeq) state.queue.push(row);
      else if (row.status === 'pending') {
        const updated = await this.gw.store.transitionCommand(
          row.id,
          ['pending'],
          'delivered',
          now,
        );
        if (updated !== undefined) {
          state.known.set(row.seq, updated);
          this.gw.commandChanged(updated);
        }
      }
    }
    s.downlink = state;
  }

  /** Writes queued commands while the window has room (4.1: at most `commandWindow` without a final result). */
  pump(s: Session): void {
    const state = s.downlink;
    if (state === null || state.syncing > 0 || s.state !== 'connected') return;
    if (s.pumping) {
      state.pumpAgain = true;
      return;
    }
    // 2.3: a session without command:receive is sent no command; they stay pending.
    if ((s.scopes & ScopeBit.COMMAND) === 0) return;
    s.pumping = true;
    state.pumpAgain = false;
    this.pumpLoop(s)
      .catch((err: unknown) =>
        this.gw.logger.error({ err, vehicleId: s.vehicleId }, 'command delivery failed'),
      )
      .finally(() => {
        s.pumping = false;
        if (state.pumpAgain) this.pump(s);
      });
  }

  /**
   * Sends queued commands in seq order while the window has room. A pending command is marked
   * `delivered` (compare-and-set in the store) right before its frame is written: a cancel that won
   * the race keeps it unsent, and an API on another node sees `delivered` as soon as it may be on
   * the wire (4.1, 9).
   */
  private async pumpLoop(s: Session): Promise<void> {
    const state = s.downlink!;
    const window = this.gw.config.commandWindow;
    while (
      state.queue.length > 0 &&
      state.inflight.size < window &&
      state.syncing === 0 &&
      s.state === 'connected'
    ) {
      const row = state.queue.shift()!;
      const now = this.gw.clock.now();
      if (row.expiresAt <= now) {
        state.known.delete(row.seq); // the expiry sweep marks it
        continue;
      }
      state.inflight.add(row.seq);
      if (row.status === 'pending') {
        let updated: CommandRow | undefined;
        try {
          updated = await this.gw.store.transitionCommand(row.id, ['pending'], 'delivered', now);
        } catch (err) {
          // Store unavailable: the command goes back to the front of the queue, still pending.
          state.inflight.delete(row.seq);
          state.queue.unshift(row);
          throw err;
        }
        if (updated === undefined) {
          // Cancelled or expired meanwhile: never sent.
          state.inflight.delete(row.seq);
          state.known.delete(row.seq);
          continue;
        }
        row.status = 'delivered';
        this.gw.commandChanged(updated);
      }
      if (s.state !== 'connected') return; // resent on the next session (seq > LAST_COMMAND_SEQ)
      s.sendMessage(
        Cmd.COMMAND,
        encodeCommand({
          seq: row.seq,
          commandId: row.id,
          name: row.name,
          params: row.params ?? undefined,
          expiresAt: row.expiresAt,
          traceparent: row.traceparent ?? undefined,
        }),
      );
      this.gw.logger.debug(
        { vehicleId: s.vehicleId, commandId: row.id, seq: row.seq, traceparent: row.traceparent },
        'command sent',
      );
    }
  }

  /** Another node created a command for a vehicle connected here (cluster mode). */
  async notify(vehicleId: string, commandId: string): Promise<void> {
    const s = this.gw.sessions.get(vehicleId);
    if (s === undefined) return;
    if (s.state === 'connecting') {
      // Its open commands are being loaded: re-checked right after attach.
      (s.lateCommands ??= []).push(commandId);
      return;
    }
    await this.enqueueById(s, commandId);
  }

  private async enqueueById(s: Session, commandId: string): Promise<void> {
    const row = await this.gw.store.getCommand(commandId);
    if (row === undefined || s.state !== 'connected') return;
    if (row.status !== 'pending' && row.status !== 'delivered') return;
    await this.enqueue(s, row);
  }

  /**
   * Queues an open command in seq order (a notification may arrive after a later command was
   * queued) and pumps. A seq past the highest this session has known + 1 may have lower ones,
   * created on another node, whose notices are still on their way: those are read from the store
   * first, and nothing is sent until they are queued (4.1: delivered in SEQ order).
   */
  private async enqueue(s: Session, row: CommandRow): Promise<void> {
    const state = stateOf(s);
    if (state.known.has(row.seq)) return;
    state.known.set(row.seq, row);
    insertBySeq(state.queue, row);
    const gap = row.seq > state.highestSeq + 1;
    if (row.seq > state.highestSeq) state.highestSeq = row.seq;
    if (gap) {
      state.syncing++;
      try {
        const open = await this.gw.store.openCommands(s.vehicleId, this.gw.clock.now());
        for (const r of open) {
          if (r.seq >= row.seq || state.known.has(r.seq)) continue;
          state.known.set(r.seq, r);
          insertBySeq(state.queue, r);
        }
      } catch (err) {
        this.gw.logger.warn(
          { err: String(err), vehicleId: s.vehicleId },
          'reading earlier open commands failed',
        );
      } finally {
        state.syncing--;
      }
    }
    this.pump(s);
  }

  /** Commands another node announced while this session was being accepted. */
  async catchUp(s: Session): Promise<void> {
    const late = s.lateCommands;
    s.lateCommands = null;
    if (late !== null) for (const id of late) await this.enqueueById(s, id);
  }

  /** Another node cancelled a pending command of a vehicle connected here. */
  cancelled(vehicleId: string, seq: number): void {
    const state = this.gw.sessions.get(vehicleId)?.downlink;
    if (state != null && !state.inflight.has(seq)) this.forget(state, seq);
  }

  /** COMMAND_ACK (4.2): the first final result counts; unknown, final or repeated acks are ignored. */
  onCommandAck(s: Session, data: Uint8Array): void {
    if ((s.scopes & ScopeBit.COMMAND) === 0) {
      // 6: REF_SEQ whenever the message has a readable SEQ.
      const seq = data.length >= 4 ? readU32(data, 0) : undefined;
      s.sendError(ErrorCode.FORBIDDEN, Cmd.COMMAND_ACK, 'command:receive scope required', seq);
      return;
    }
    let ack;
    try {
      ack = decodeCommandAck(data);
    } catch (err) {
      if (!isVmcpError(err)) throw err;
      s.sendError(ErrorCode.INVALID_DATA, Cmd.COMMAND_ACK, err.message, err.seq);
      return;
    }
    const state = s.downlink;
    const row = state?.known.get(ack.seq);
    // A second ack while the first is being recorded is a repeat: the first final result counts.
    if (state == null || row === undefined || state.recording.has(ack.seq)) return;
    if (ack.result === CommandResult.IN_PROGRESS) return;
    // 4.1: at EXPIRES_AT the command is expired, whatever arrives later (the sweep records it).
    if (row.expiresAt <= this.gw.clock.now()) return;
    const status: CommandStatus = RESULT_STATUS[ack.result]!;
    const result = parseResultPayload(ack.resultPayload);
    // The command keeps its window slot until its result is durable. A failed write (store outage)
    // is retried: the vehicle finished the command and is not asked again within this session
    // (4.1), so the result it sent is the only one there will be.
    state.recording.add(ack.seq);
    this.recordResult(s, state, row, status, result, this.gw.clock.now(), 0);
  }

  /**
   * Writes a command's final result; on a store failure, again every RESULT_RETRY_MS until it is
   * written, the command is final already, or it expires (4.1: then it is `expired`, and the
   * result is lost as if the vehicle had never answered).
   */
  private recordResult(
    s: Session,
    state: DownlinkState,
    row: CommandRow,
    status: CommandStatus,
    result: unknown,
    at: number,
    attempt: number,
  ): void {
    const done = (updated: CommandRow | undefined): void => {
      state.recording.delete(row.seq);
      this.forget(state, row.seq);
      if (updated !== undefined) this.gw.commandChanged(updated);
      this.pump(s);
    };
    void this.gw.store
      .transitionCommand(row.id, ['pending', 'delivered'], status, at, result)
      .then(done, (err: unknown) => {
        const expired = row.expiresAt <= this.gw.clock.now();
        if (attempt === 0 || expired)
          this.gw.logger.warn(
            { err, commandId: row.id, vehicleId: s.vehicleId, attempt },
            expired
              ? 'command result not recorded before the command expired'
              : 'recording a command result failed: retrying until the store answers',
          );
        if (expired) done(undefined);
        else
          setTimeout(
            () => this.recordResult(s, state, row, status, result, at, attempt + 1),
            RESULT_RETRY_MS,
          ).unref();
      });
  }

  private forget(state: DownlinkState, seq: number): void {
    state.known.delete(seq);
    state.inflight.delete(seq);
    const i = state.queue.findIndex((r) => r.seq === seq);
    if (i >= 0) state.queue.splice(i, 1);
  }

  /** The expiry sweep: open commands past EXPIRES_AT become `expired` in the store. */
  async expire(now: number): Promise<void> {
    for (;;) {
      const rows = await this.gw.store.expireCommands(now, 500);
      for (const row of rows) this.gw.commandChanged(row);
      if (rows.length < 500) return;
    }
  }

  /**
   * Expiry frees a window slot (4.1) on the node holding the vehicle, by its own clock: the store
   * may have been marked by another node's sweep (cluster mode), or not yet (an outage). A result
   * being recorded keeps its slot until recordResult gives up.
   */
  freeExpired(now: number): void {
    for (const s of this.gw.sessions.values()) {
      const state = s.downlink;
      if (state == null || state.inflight.size === 0) continue;
      let freed = false;
      for (const seq of state.inflight) {
        const row = state.known.get(seq);
        if (row !== undefined && row.expiresAt <= now && !state.recording.has(seq)) {
          this.forget(state, seq);
          freed = true;
        }
      }
      if (freed) this.pump(s);
    }
  }

  /**
   * A command as of now: one still open past its EXPIRES_AT is marked `expired` here rather than
   * at the next sweep, so the API never shows it pending or lets it be cancelled (4.1, 9).
   */
  async current(id: string): Promise<CommandRow | undefined> {
    const row = await this.gw.store.getCommand(id);
    const now = this.gw.clock.now();
    if (row === undefined || !OPEN.has(row.status) || row.expiresAt > now) return row;
    const expired = await this.gw.store.transitionCommand(id, [...OPEN], 'expired', now);
    if (expired === undefined) return this.gw.store.getCommand(id); // moved on meanwhile
    this.gw.commandChanged(expired);
    return expired;
  }

  // ---- sensor reads (4.3): live, unpersisted, correlated by TAG ----

  readSensor(
    s: Session,
    channel: number,
    timeoutMs: number,
  ): Promise<{ status: number; value: Uint8Array }> {
    if ((s.scopes & ScopeBit.COMMAND) === 0)
      return Promise.reject(new VmcpError('VMCP_ERR_NOT_PERMITTED'));
    const reads = (s.reads ??= new Map());
    if (reads.size >= this.gw.config.sensorReadLimit)
      return Promise.reject(new VmcpError('VMCP_ERR_TOO_MANY_READS'));
    let tag = s.nextReadTag;
    while (reads.has(tag)) tag = (tag + 1) & 0xff;
    s.nextReadTag = (tag + 1) & 0xff;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reads.delete(tag);
        reject(new VmcpError('VMCP_ERR_TIMEOUT'));
      }, timeoutMs);
      reads.set(tag, { channel, resolve, reject, timer });
      s.sendMessage(Cmd.SENSOR_READ, encodeSensorRead({ channel, tag }));
    });
  }

  onSensorData(s: Session, data: Uint8Array): void {
    if ((s.scopes & ScopeBit.COMMAND) === 0) {
      s.sendError(ErrorCode.FORBIDDEN, Cmd.SENSOR_DATA, 'command:receive scope required');
      return;
    }
    if (data.length < 3) {
      s.sendError(ErrorCode.INVALID_DATA, Cmd.SENSOR_DATA, 'SENSOR_DATA shorter than 3 bytes');
      return;
    }
    const msg = decodeSensorData(data);
    const read = s.reads?.get(msg.tag);
    // A CHANNEL/TAG pair with no outstanding read is ignored.
    if (read === undefined || read.channel !== msg.channel) return;
    s.reads!.delete(msg.tag);
    clearTimeout(read.timer);
    read.resolve({ status: msg.status, value: msg.value });
  }

  /** Session ended: reads waiting on it fail with 409 vehicle_offline (2). */
  detach(s: Session): void {
    const reads = s.reads;
    if (reads === null) return;
    s.reads = null;
    for (const read of reads.values()) {
      clearTimeout(read.timer);
      read.reject(new VmcpError('VMCP_ERR_VEHICLE_OFFLINE'));
    }
  }
}
