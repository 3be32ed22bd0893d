// The uplink outbox stores of the vehicle SDK: unacked messages, the uplink seq, command results and the issued token.
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import {
  CommandResult,
  type CommandResultCode,
  type EventSample,
  type TelemetrySample,
} from '../protocol/index.js';
import { OutboxStoreError } from './errors.js';

/** One uplink message waiting for its ack: a TELEMETRY sample or an EVENT. */
export type StoredUplink =
  | { seq: number; kind: 'telemetry'; sample: TelemetrySample }
  | { seq: number; kind: 'event'; sample: EventSample };

/** The final result of a downlink command the vehicle executed (PROTOCOL.md 4.2). */
export interface CommandRecord {
  seq: number;
  /** A final result, 0–4 (never IN_PROGRESS). */
  result: CommandResultCode;
  /** RESULT_PAYLOAD as JSON text. */
  payload?: string | undefined;
  message?: string | undefined;
  /** True once the COMMAND_ACK was written to a connection. */
  reported: boolean;
}

/** What a store holds when a client starts. */
export interface OutboxSnapshot {
  /** The uplink seq the next publish gets (starts at 1, 3.1). */
  nextSeq: number;
  /** Unacked messages, ascending seq, contiguous. */
  unacked: StoredUplink[];
  /** The highest downlink command seq finished (CONNECT LAST_COMMAND_SEQ, 2.1). */
  lastCommandSeq: number;
  /** Recent final results, so a redelivered command answers the recorded result (4.2). */
  commands: CommandRecord[];
  /** A token issued in CONNACK (registration or renewal, 2.3). */
  token: string | undefined;
}

/**
 * Where the client keeps its outbox. Calls are synchronous so a seq is durable before `publish*`
 * returns; a store that cannot write throws.
 */
export interface OutboxStore {
  /** Called once by the client's constructor. */
  load(): OutboxSnapshot;
  append(msg: StoredUplink): void;
  /** Every seq ≤ `upToSeq` is consumed by the gateway: forget those messages. */
  consume(upToSeq: number): void;
  /**
   * Every held message with seq ≥ `from` moves up by `by` (> 0), in one durable step: messages never
   * sent, whose seqs the gateway had consumed for other messages (a lost outbox). Optional for
   * custom stores: without it the client re-appends the moved messages one by one.
   */
  renumber?(from: number, by: number): void;
  recordCommand(rec: CommandRecord): void;
  /**
   * A command handler is about to run (durably, before it runs). A store that loads a started
   * command without a result reports it FAILED (interrupted): after a crash mid-command the
   * redelivered seq is answered, not run again (4.2: at most once). Optional for custom stores.
   */
  markStarted?(seq: number): void;
  /** The COMMAND_ACK of `seq` was written (losing this mark only causes a harmless re-send). */
  markReported(seq: number): void;
  saveToken(token: string | undefined): void;
  close(): void;
}

/** How many command results are remembered for redelivery (the gateway keeps at most 8 in flight, 4.1). */
export const MAX_COMMAND_RECORDS = 1024;

/** The message of the FAILED result a command gets when the process ended while it ran. */
export const INTERRUPTED_MESSAGE = 'interrupted: the vehicle software restarted while it ran';

/** The state both stores keep in memory; FileOutbox also logs every change. */
class OutboxState {
  consumedUpTo = 0;
  lastSeq = 0;
  /** Insertion order is ascending seq. */
  readonly unacked = new Map<number, StoredUplink>();
  readonly commands = new Map<number, CommandRecord>();
  /** Commands whose handler started and has no result yet. */
  readonly started = new Set<number>();
  lastCommandSeq = 0;
  token: string | undefined;

  append(msg: StoredUplink): void {
    if (msg.seq <= this.consumedUpTo) return;
    this.unacked.set(msg.seq, msg);
    if (msg.seq > this.lastSeq) this.lastSeq = msg.seq;
  }

  renumber(from: number, by: number): void {
    if (by <= 0) return;
    const moved = [...this.unacked.values()].filter((m) => m.seq >= from);
    for (const m of moved) this.unacked.delete(m.seq);
    // Moved up past everything left: insertion order stays ascending.
    for (const m of moved) this.unacked.set(m.seq + by, { ...m, seq: m.seq + by });
    if (moved.length > 0) this.lastSeq = Math.max(this.lastSeq, moved[moved.length - 1]!.seq + by);
  }

  consume(upToSeq: number): void {
    if (upToSeq <= this.consumedUpTo) return;
    this.consumedUpTo = upToSeq;
    for (const seq of this.unacked.keys()) {
      if (seq > upToSeq) break;
      this.unacked.delete(seq);
    }
  }

  recordCommand(rec: CommandRecord): void {
    this.started.delete(rec.seq);
    this.commands.delete(rec.seq);
    this.commands.set(rec.seq, { ...rec });
    if (rec.seq > this.lastCommandSeq) this.lastCommandSeq = rec.seq;
    if (this.commands.size > MAX_COMMAND_RECORDS) {
      let min = Infinity;
      for (const seq of this.commands.keys()) if (seq < min) min = seq;
      this.commands.delete(min);
    }
  }

  markReported(seq: number): void {
    const rec = this.commands.get(seq);
    if (rec !== undefined) rec.reported = true;
  }

  /** On load: a command that started in an earlier process and never finished failed. */
  interruptStarted(): void {
    for (const seq of [...this.started])
      this.recordCommand({
        seq,
        result: CommandResult.FAILED,
        message: INTERRUPTED_MESSAGE,
        reported: false,
      });
  }

  snapshot(): OutboxSnapshot {
    return {
      nextSeq: Math.max(this.lastSeq, this.consumedUpTo) + 1,
      unacked: [...this.unacked.values()].map((m) => ({ ...m })),
      lastCommandSeq: this.lastCommandSeq,
      commands: [...this.commands.values()].sort((a, b) => a.seq - b.seq).map((c) => ({ ...c })),
      token: this.token,
    };
  }
}

/**
 * Keeps the outbox in memory: it survives a reconnect and a new client built on the same instance,
 * not a process restart.
 */
export class MemoryOutbox implements OutboxStore {
  private readonly state = new OutboxState();

  load(): OutboxSnapshot {
    this.state.interruptStarted();
    return this.state.snapshot();
  }
  append(msg: StoredUplink): void {
    this.state.append({ ...msg });
  }
  markStarted(seq: number): void {
    this.state.started.add(seq);
  }
  consume(upToSeq: number): void {
    this.state.consume(upToSeq);
  }
  renumber(from: number, by: number): void {
    this.state.renumber(from, by);
  }
  recordCommand(rec: CommandRecord): void {
    this.state.recordCommand(rec);
  }
  markReported(seq: number): void {
    this.state.markReported(seq);
  }
  saveToken(token: string | undefined): void {
    this.state.token = token;
  }
  close(): void {}
}

export interface FileOutboxOptions {
  /**
   * fsync after each appended message and command result (default true). Without it a power loss
   * may lose recent messages the gateway has not acked.
   */
  fsync?: boolean;
  /** Rewrite the file once it holds this many lines and more than twice the live ones (default 10,000). */
  compactAfterLines?: number;
}

/** One line of the outbox file (JSON lines, append-only between compactions). */
type LogLine =
  | { h: 'vmcp-outbox'; v: 1 }
  | { u: number; k: 't'; s: TelemetrySample }
  | { u: number; k: 'e'; s: EventSample }
  | { c: number }
  | { rn: number; by: number }
  | { r: number; x: CommandResultCode; p?: string; g?: string; d: boolean }
  | { rep: number }
  | { st: number }
  | { t: string | null };

/**
 * A file store that survives a process restart: an append-only JSON-lines log (one line per
 * message, ack watermark, command result and token) rewritten as a snapshot on load and whenever
 * dead lines dominate. A torn last line (a crash mid-write) is ignored on load; the snapshot is
 * written to a temporary file, fsynced and renamed over the log, so a crash never loses both.
 */
export class FileOutbox implements OutboxStore {
  private readonly state = new OutboxState();
  private fd: number | undefined;
  private lines = 0;
  private readonly fsync: boolean;
  private readonly compactAfterLines: number;

  constructor(
    readonly path: string,
    options: FileOutboxOptions = {},
  ) {
    this.fsync = options.fsync ?? true;
    this.compactAfterLines = options.compactAfterLines ?? 10_000;
  }

  load(): OutboxSnapshot {
    if (existsSync(this.path)) {
      const text = readFileSync(this.path, 'utf8');
      for (const raw of text.split('\n')) {
        if (raw === '') continue;
        let line: unknown;
        try {
          line = JSON.parse(raw);
        } catch {
          continue; // a torn write: the rest of that line never reached the disk
        }
        this.apply(line);
      }
    }
    this.state.interruptStarted();
    this.compact();
    return this.state.snapshot();
  }

  append(msg: StoredUplink): void {
    this.state.append({ ...msg });
    this.write(
      msg.kind === 'telemetry'
        ? { u: msg.seq, k: 't', s: msg.sample }
        : { u: msg.seq, k: 'e', s: msg.sample },
      this.fsync,
    );
  }

  consume(upToSeq: number): void {
    if (upToSeq <= this.state.consumedUpTo) return;
    this.state.consume(upToSeq);
    // Not fsynced: losing a watermark only makes the client resend, answered DUPLICATE (3.2).
    this.write({ c: upToSeq }, false);
  }

  renumber(from: number, by: number): void {
    this.state.renumber(from, by);
    this.write({ rn: from, by }, this.fsync);
  }

  recordCommand(rec: CommandRecord): void {
    this.state.recordCommand(rec);
    this.write(commandLine(rec), this.fsync);
  }

  markReported(seq: number): void {
    this.state.markReported(seq);
    this.write({ rep: seq }, false);
  }

  markStarted(seq: number): void {
    this.state.started.add(seq);
    this.write({ st: seq }, this.fsync);
  }

  saveToken(token: string | undefined): void {
    this.state.token = token;
    this.write({ t: token ?? null }, this.fsync);
  }

  close(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  private apply(line: unknown): void {
    if (typeof line !== 'object' || line === null) return;
    const l = line as Record<string, unknown>;
    if (typeof l.u === 'number' && typeof l.s === 'object' && l.s !== null) {
      if (l.k === 't')
        this.state.append({ seq: l.u, kind: 'telemetry', sample: l.s as TelemetrySample });
      else if (l.k === 'e')
        this.state.append({ seq: l.u, kind: 'event', sample: l.s as EventSample });
    } else if (typeof l.c === 'number') {
      this.state.consume(l.c);
    } else if (typeof l.rn === 'number' && typeof l.by === 'number') {
      this.state.renumber(l.rn, l.by);
    } else if (typeof l.r === 'number' && typeof l.x === 'number') {
      this.state.recordCommand({
        seq: l.r,
        result: l.x as CommandResultCode,
        payload: typeof l.p === 'string' ? l.p : undefined,
        message: typeof l.g === 'string' ? l.g : undefined,
        reported: l.d === true,
      });
    } else if (typeof l.rep === 'number') {
      this.state.markReported(l.rep);
    } else if (typeof l.st === 'number') {
      this.state.started.add(l.st);
    } else if ('t' in l) {
      this.state.token = typeof l.t === 'string' ? l.t : undefined;
    }
  }

  private write(line: LogLine, durable: boolean): void {
    try {
      if (this.fd === undefined) this.fd = openSync(this.path, 'a');
      writeSync(this.fd, JSON.stringify(line) + '\n');
      if (durable) fsyncSync(this.fd);
    } catch (err) {
      throw new OutboxStoreError(`outbox ${this.path}: write failed`, { cause: err });
    }
    this.lines++;
    const live = this.state.unacked.size + this.state.commands.size + 3;
    if (this.lines >= this.compactAfterLines && this.lines > 2 * live) this.compact();
  }

  /** Rewrites the log as a snapshot of the live state: temporary file, fsync, rename, fsync the directory. */
  private compact(): void {
    const s = this.state;
    // The watermark keeps the seq counter when every message is acked (an ack covers the highest seq).
    const out: LogLine[] = [{ h: 'vmcp-outbox', v: 1 }, { c: s.consumedUpTo }];
    for (const m of s.unacked.values())
      out.push(
        m.kind === 'telemetry'
          ? { u: m.seq, k: 't', s: m.sample }
          : { u: m.seq, k: 'e', s: m.sample },
      );
    for (const rec of s.commands.values()) out.push(commandLine(rec));
    for (const seq of s.started) out.push({ st: seq });
    if (s.token !== undefined) out.push({ t: s.token });
    const tmp = `${this.path}.tmp`;
    try {
      this.close();
      const fd = openSync(tmp, 'w');
      try {
        writeSync(fd, out.map((l) => JSON.stringify(l)).join('\n') + '\n');
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.path);
      syncDir(dirname(this.path));
      this.fd = openSync(this.path, 'a');
    } catch (err) {
      throw new OutboxStoreError(`outbox ${this.path}: compaction failed`, { cause: err });
    }
    this.lines = out.length;
  }
}

function commandLine(rec: CommandRecord): LogLine {
  const line: { r: number; x: CommandResultCode; p?: string; g?: string; d: boolean } = {
    r: rec.seq,
    x: rec.result,
    d: rec.reported,
  };
  if (rec.payload !== undefined) line.p = rec.payload;
  if (rec.message !== undefined) line.g = rec.message;
  return line;
}

/** Makes a rename durable (Linux); silently skipped where directories cannot be opened. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Windows and some filesystems refuse: the rename is still atomic, only its durability is weaker.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
