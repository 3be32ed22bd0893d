// Model-based test of the SDK's FileOutbox (fast-check): random sequences of the calls a client
// makes on its outbox store — appends at the next seq (one or many at once), consumes below, inside
// and past the held messages, renumbers of the newest messages past NEXT_UPLINK_SEQ (with or
// without the consume that follows), command starts, results 0–4 with and without payload and
// message, reported marks, tokens set and cleared — and process events: clean reopens, crashes (a
// new store on the file, the old one left open and unused, sometimes beside a half-written
// compaction file), torn tails (the last write cut anywhere: the state before that call; cut only
// before its newline: the line is whole, the state after it) and a partial line after the last.
// Every reopen and crash, a final reopen, and a store opened on a copy of the file at random points
// must load exactly the model: nextSeq, the unacked messages in seq order, lastCommandSeq, the
// command results (a start without one reported FAILED with INTERRUPTED_MESSAGE) and the token;
// after each call the file stays within its compaction bound. Small compactAfterLines values make
// most cases compact mid-run; a second mode records over MAX_COMMAND_RECORDS results at once.
// 150 + 15 cases per run of the suite; a longer hunt: VMCP_PROP_RUNS=3000 (the second mode runs a
// tenth of it) VMCP_PROP_TIMEOUT=600000.
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CommandResult,
  FileOutbox,
  INTERRUPTED_MESSAGE,
  MAX_COMMAND_RECORDS,
  type CommandRecord,
  type CommandResultCode,
  type EventSample,
  type FileOutboxOptions,
  type OutboxSnapshot,
  type StoredUplink,
  type TelemetrySample,
} from '../../src/client/index.js';

const T0 = 1_790_000_000_000;
/** The gateway keeps at most 8 commands in flight (4.1). */
const MAX_RUNNING = 8;

type Body = { kind: 'telemetry'; sample: TelemetrySample } | { kind: 'event'; sample: EventSample };
type Outcome = { result: CommandResultCode; payload?: string; message?: string };

/** One call on the store, its seqs resolved against the model. */
type Call =
  | { f: 'append'; msg: StoredUplink }
  | { f: 'consume'; upTo: number }
  | { f: 'renumber'; from: number; by: number }
  | { f: 'markStarted'; seq: number }
  | { f: 'recordCommand'; rec: CommandRecord }
  | { f: 'markReported'; seq: number }
  | { f: 'saveToken'; token: string | undefined };

/** What the client does: one or more calls, picked from the model's state when it runs. */
type Action =
  | { t: 'publish'; bodies: Body[] }
  // upTo: the watermark + delta (≤ it: no-op), a held seq, or the last seq + delta (past it).
  | { t: 'consume'; base: 'consumed' | 'held' | 'last'; delta: number; pick: number }
  // CONNACK's NEXT_UPLINK_SEQ past unsent messages: renumber(first, by), then consume(next - 1).
  | { t: 'renumber'; pick: number; by: number; consume: boolean }
  | { t: 'start' }
  | { t: 'finish'; running: boolean; pick: number; outcome: Outcome }
  | { t: 'burst'; count: number; outcome: Outcome }
  | { t: 'report'; pick: number }
  | { t: 'token'; token: string | undefined };

type Op =
  | Action
  | { t: 'peek' }
  | { t: 'reopen' }
  | { t: 'crash'; staleTmp: number | null }
  // The process dies writing the last line of `action`: `newline` keeps all but its newline.
  | { t: 'tear'; action: Action; cut: 'newline' | number }
  | { t: 'partial'; cut: number };

// ---------------------------------------------------------------------------------------------
// Arbitraries

const opt = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.option(a, { nil: undefined });

/** Drops the keys left undefined (a JSON round trip drops them too). */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

const text = fc.oneof(
  fc.string({
    unit: fc.constantFrom('a', 'Z', '7', ' ', 'é', '🚗', '"', '\\', '\n', '\u2028', '{', '}'),
    maxLength: 12,
  }),
  fc.string({ unit: 'binary', maxLength: 8 }),
);

const vendor = fc.dictionary(
  fc.integer({ min: 0x80, max: 0xfe }).map((t) => `0x${t.toString(16)}`),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), maxLength: 8 }),
  { maxKeys: 2 },
);

const timestamp = fc.integer({ min: 0, max: 1e9 }).map((d) => T0 + d);

const telemetry: fc.Arbitrary<TelemetrySample> = fc
  .record({
    timestamp,
    latitude: opt(fc.integer({ min: -900_000_000, max: 900_000_000 })),
    longitude: opt(fc.integer({ min: -1_800_000_000, max: 1_800_000_000 })),
    speed: opt(fc.integer({ min: 0, max: 0xffff })),
    heading: opt(fc.integer({ min: 0, max: 3599 })),
    fuelOrSoc: opt(fc.integer({ min: 0, max: 100 })),
    vendor: opt(vendor),
  })
  .map(defined);

const event: fc.Arbitrary<EventSample> = fc
  .record({
    timestamp,
    latitude: opt(fc.integer({ min: -900_000_000, max: 900_000_000 })),
    eventCode: opt(fc.integer({ min: 0, max: 0xffff })),
    severity: opt(fc.integer({ min: 0, max: 3 })),
    detail: opt(text),
    vendor: opt(vendor),
  })
  .map(defined);

const body: fc.Arbitrary<Body> = fc.oneof(
  { weight: 3, arbitrary: telemetry.map((sample) => ({ kind: 'telemetry' as const, sample })) },
  { weight: 1, arbitrary: event.map((sample) => ({ kind: 'event' as const, sample })) },
);

const outcome: fc.Arbitrary<Outcome> = fc
  .record({
    result: fc.constantFrom<CommandResultCode>(0, 1, 2, 3, 4),
    payload: opt(fc.json({ maxDepth: 2 })),
    message: opt(text),
  })
  .map(defined);

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 20,
    arbitrary: fc.record({
      t: fc.constant('publish' as const),
      bodies: fc.array(body, { minLength: 1, maxLength: 3 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('publish' as const),
      bodies: fc.array(body, { minLength: 4, maxLength: 30 }),
    }),
  },
  {
    weight: 12,
    arbitrary: fc.record({
      t: fc.constant('consume' as const),
      base: fc.constantFrom('consumed' as const, 'held' as const, 'last' as const),
      delta: fc.integer({ min: -3, max: 5 }),
      pick: fc.nat(),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('renumber' as const),
      pick: fc.nat(),
      by: fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 6, max: 100_000 })),
      consume: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, fc.constant(false)),
    }),
  },
  { weight: 6, arbitrary: fc.record({ t: fc.constant('start' as const) }) },
  {
    weight: 8,
    arbitrary: fc.record({
      t: fc.constant('finish' as const),
      running: fc.boolean(),
      pick: fc.nat(),
      outcome,
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({ t: fc.constant('report' as const), pick: fc.nat() }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('token' as const), token: opt(text) }),
  },
);

/** A thousand results or so at once: past MAX_COMMAND_RECORDS with those recorded before. */
const burst: fc.Arbitrary<Action> = fc.record({
  t: fc.constant('burst' as const),
  count: fc.integer({ min: MAX_COMMAND_RECORDS - 20, max: MAX_COMMAND_RECORDS + 40 }),
  outcome,
});

/** The process dies in the last write of `a`, cut at `cut` (mod the line's length) or before its newline. */
const tear = (a: fc.Arbitrary<Action>): fc.Arbitrary<Op> =>
  fc.record({
    t: fc.constant('tear' as const),
    action: a,
    cut: fc.oneof(
      { weight: 1, arbitrary: fc.constant('newline' as const) },
      { weight: 3, arbitrary: fc.nat() },
    ),
  });

/** Process events are one op in six: most of the time goes into them (every load fsyncs). */
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 30, arbitrary: action },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('peek' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('reopen' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('crash' as const), staleTmp: fc.option(fc.nat()) }),
  },
  { weight: 2, arbitrary: tear(action) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('partial' as const), cut: fc.nat() }) },
);

const ops = (maxLength: number): fc.Arbitrary<Op[]> =>
  fc.array(op, { minLength: 1, maxLength, size: 'max' });

// ---------------------------------------------------------------------------------------------
// The model: what the store must hold, straight from the OutboxStore contract.

class Model {
  nextSeq = 1;
  consumed = 0;
  /** Ascending seq. */
  unacked: StoredUplink[] = [];
  readonly commands = new Map<number, CommandRecord>();
  /** Started, no result yet. */
  started: number[] = [];
  lastCommandSeq = 0;
  token: string | undefined = undefined;
  /** The gateway's next downlink command seq. */
  nextCommand = 1;

  clone(): Model {
    const m = new Model();
    m.nextSeq = this.nextSeq;
    m.consumed = this.consumed;
    m.unacked = structuredClone(this.unacked);
    for (const [seq, rec] of this.commands) m.commands.set(seq, { ...rec });
    m.started = [...this.started];
    m.lastCommandSeq = this.lastCommandSeq;
    m.token = this.token;
    m.nextCommand = this.nextCommand;
    return m;
  }

  apply(c: Call): void {
    switch (c.f) {
      case 'append':
        this.unacked.push(structuredClone(c.msg));
        this.nextSeq = c.msg.seq + 1;
        break;
      case 'consume':
        if (c.upTo <= this.consumed) break;
        this.consumed = c.upTo;
        this.unacked = this.unacked.filter((m) => m.seq > c.upTo);
        this.nextSeq = Math.max(this.nextSeq, c.upTo + 1);
        break;
      case 'renumber':
        // The moved messages are the newest: the order stays ascending.
        this.unacked = this.unacked.map((m) => (m.seq >= c.from ? { ...m, seq: m.seq + c.by } : m));
        this.nextSeq += c.by;
        break;
      case 'markStarted':
        this.started.push(c.seq);
        this.nextCommand = Math.max(this.nextCommand, c.seq + 1);
        break;
      case 'recordCommand':
        this.record(c.rec);
        this.nextCommand = Math.max(this.nextCommand, c.rec.seq + 1);
        break;
      case 'markReported': {
        const rec = this.commands.get(c.seq);
        if (rec !== undefined) rec.reported = true;
        break;
      }
      case 'saveToken':
        this.token = c.token;
        break;
    }
  }

  /** The results of the highest MAX_COMMAND_RECORDS seqs are kept. */
  record(rec: CommandRecord): void {
    this.started = this.started.filter((s) => s !== rec.seq);
    this.commands.set(rec.seq, { ...rec });
    this.lastCommandSeq = Math.max(this.lastCommandSeq, rec.seq);
    if (this.commands.size > MAX_COMMAND_RECORDS) {
      this.commands.delete(Math.min(...this.commands.keys()));
      seen.evictions++;
    }
  }

  /** A new process: a start without a result failed. */
  restart(): void {
    for (const seq of [...this.started].sort((a, b) => a - b)) {
      seen.interrupted++;
      this.record({
        seq,
        result: CommandResult.FAILED,
        message: INTERRUPTED_MESSAGE,
        reported: false,
      });
    }
  }

  /** What a store loading the file now must return. */
  expected(): OutboxSnapshot {
    const m = this.clone();
    m.restart();
    return {
      nextSeq: m.nextSeq,
      unacked: m.unacked,
      lastCommandSeq: m.lastCommandSeq,
      commands: [...m.commands.values()].sort((a, b) => a.seq - b.seq),
      token: m.token,
    };
  }

  /** The newest held messages, contiguous up to the last seq used: those a renumber may move. */
  trailing(): number[] {
    const seqs: number[] = [];
    for (let i = this.unacked.length - 1; i >= 0; i--) {
      const seq = this.unacked[i]!.seq;
      if (seq !== this.nextSeq - 1 - seqs.length) break;
      seqs.unshift(seq);
    }
    return seqs;
  }

  /** The calls `a` makes in this state, as the client would make them. */
  calls(a: Action): Call[] {
    switch (a.t) {
      case 'publish':
        return a.bodies.map((b, i) => ({ f: 'append', msg: { seq: this.nextSeq + i, ...b } }));
      case 'consume': {
        let upTo: number;
        if (a.base === 'consumed') upTo = this.consumed + a.delta;
        else if (a.base === 'last') upTo = this.nextSeq - 1 + Math.abs(a.delta);
        else if (this.unacked.length === 0) upTo = this.nextSeq - 1;
        else upTo = this.unacked[a.pick % this.unacked.length]!.seq;
        return [{ f: 'consume', upTo: Math.max(0, upTo) }];
      }
      case 'renumber': {
        const seqs = this.trailing();
        if (seqs.length === 0) return [];
        const from = seqs[a.pick % seqs.length]!;
        const out: Call[] = [{ f: 'renumber', from, by: a.by }];
        if (a.consume) out.push({ f: 'consume', upTo: from + a.by - 1 });
        return out;
      }
      case 'start':
        if (this.started.length >= MAX_RUNNING) return [];
        return [{ f: 'markStarted', seq: this.nextCommand }];
      case 'finish': {
        const running = [...this.started].sort((x, y) => x - y);
        const seq =
          a.running && running.length > 0 ? running[a.pick % running.length]! : this.nextCommand;
        return [{ f: 'recordCommand', rec: { seq, ...a.outcome, reported: false } }];
      }
      case 'burst':
        return Array.from({ length: a.count }, (_, i) => ({
          f: 'recordCommand' as const,
          rec: { seq: this.nextCommand + i, ...a.outcome, reported: false },
        }));
      case 'report': {
        const open = [...this.commands.values()]
          .filter((r) => !r.reported)
          .sort((x, y) => x.seq - y.seq);
        if (open.length === 0) return [];
        return [{ f: 'markReported', seq: open[a.pick % open.length]!.seq }];
      }
      case 'token':
        return [{ f: 'saveToken', token: a.token }];
    }
  }
}

/** How often the interesting paths ran (checked after runs of 100 cases or more). */
const seen = {
  compactions: 0,
  evictions: 0,
  interrupted: 0,
  renumbers: 0,
  reopens: 0,
  crashes: 0,
  staleTmps: 0,
  peeks: 0,
  tornBefore: 0,
  tornAfter: 0,
  untearable: 0,
  partials: 0,
};

// ---------------------------------------------------------------------------------------------
// One case: the store under test, the model, and the file.

class Case {
  model = new Model();
  store!: FileOutbox;
  /** Stores of processes that crashed: never used again, closed at the end. */
  readonly dead: FileOutbox[] = [];
  readonly path: string;
  readonly peekPath: string;

  constructor(
    readonly dir: string,
    readonly options: Required<FileOutboxOptions>,
  ) {
    this.path = join(dir, 'outbox.jsonl');
    mkdirSync(join(dir, 'peek'));
    this.peekPath = join(dir, 'peek', 'outbox.jsonl');
  }

  /** A new process on the file: what it loads is the model, with interrupted commands failed. */
  open(at: string): void {
    this.store = new FileOutbox(this.path, this.options);
    const snap = this.store.load();
    expect(snap, at).toEqual(this.model.expected());
    this.model.restart();
    expect(existsSync(`${this.path}.tmp`), at).toBe(false);
  }

  call(c: Call): void {
    const s = this.store;
    switch (c.f) {
      case 'append':
        s.append(c.msg);
        break;
      case 'consume':
        s.consume(c.upTo);
        break;
      case 'renumber':
        seen.renumbers++;
        s.renumber(c.from, c.by);
        break;
      case 'markStarted':
        s.markStarted(c.seq);
        break;
      case 'recordCommand':
        s.recordCommand(c.rec);
        break;
      case 'markReported':
        s.markReported(c.seq);
        break;
      case 'saveToken':
        s.saveToken(c.token);
        break;
    }
    this.model.apply(c);
  }

  /** The log grows by one line per call and is rewritten once it is long and mostly dead. */
  checkBound(at: string): void {
    const text = readFileSync(this.path, 'utf8');
    let lines = 0;
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines++;
    const m = this.model;
    // Generous: started commands and the token counted as live lines too.
    const live = m.unacked.length + m.commands.size + m.started.length + 4;
    expect(lines, at).toBeLessThanOrEqual(Math.max(this.options.compactAfterLines - 1, 2 * live));
  }

  run(o: Op, at: string): void {
    switch (o.t) {
      case 'peek': {
        // What a crash now would leave: a store on a copy of the file; this one goes on.
        seen.peeks++;
        copyFileSync(this.path, this.peekPath);
        const peek = new FileOutbox(this.peekPath, this.options);
        try {
          expect(peek.load(), at).toEqual(this.model.expected());
        } finally {
          peek.close();
        }
        return;
      }
      case 'reopen':
        seen.reopens++;
        this.store.close();
        this.open(at);
        return;
      case 'crash':
        seen.crashes++;
        if (o.staleTmp !== null) {
          // It died compacting: part of a snapshot in the temporary file, the log untouched.
          seen.staleTmps++;
          const log = readFileSync(this.path);
          writeFileSync(`${this.path}.tmp`, log.subarray(0, o.staleTmp % (log.length + 1)));
        }
        this.dead.push(this.store);
        this.open(at);
        return;
      case 'tear': {
        const calls = this.model.calls(o.action);
        const last = calls.pop();
        for (const c of calls) this.call(c);
        if (last !== undefined) {
          const before = readFileSync(this.path);
          const prior = this.model.clone();
          this.call(last);
          const after = readFileSync(this.path);
          const line = after.subarray(before.length);
          if (
            line.length > 0 &&
            after.subarray(0, before.length).equals(before) &&
            line.indexOf(0x0a) === line.length - 1
          ) {
            // One line appended (no compaction): the process died writing it. Any prefix of a JSON
            // object is invalid JSON, so the store must load the state before that call; with only
            // the newline missing, the line is whole and the call's change must be there.
            const keep = o.cut === 'newline' ? line.length - 1 : o.cut % (line.length - 1);
            truncateSync(this.path, before.length + keep);
            if (keep < line.length - 1) {
              seen.tornBefore++;
              this.model = prior;
            } else seen.tornAfter++;
          } else seen.untearable++; // rewritten (compacted) or nothing written: a plain crash
        }
        this.dead.push(this.store);
        this.open(at);
        return;
      }
      case 'partial': {
        // It died writing the next line: a prefix of a line like the last one, nothing changed.
        const log = readFileSync(this.path);
        const end = log.lastIndexOf(0x0a, log.length - 2) + 1;
        const last = log.subarray(end, log.length - 1);
        if (last.length > 1) {
          seen.partials++;
          appendFileSync(this.path, last.subarray(0, 1 + (o.cut % (last.length - 1))));
        }
        this.dead.push(this.store);
        this.open(at);
        return;
      }
      default: {
        const ino = statSync(this.path).ino;
        for (const c of this.model.calls(o)) this.call(c);
        if (statSync(this.path).ino !== ino) seen.compactions++;
        this.checkBound(at);
      }
    }
  }

  close(): void {
    for (const s of this.dead) s.close();
    this.store.close();
  }
}

// ---------------------------------------------------------------------------------------------

const RUNS = Number(process.env.VMCP_PROP_RUNS ?? 150);

describe.each([
  {
    mode: 'mixed',
    runs: RUNS,
    // fsync changes nothing a process crash can see, only the cost: mostly off.
    cases: fc.oneof(
      { weight: 5, arbitrary: fc.tuple(fc.constant(false), ops(40)) },
      { weight: 1, arbitrary: fc.tuple(fc.constant(true), ops(40)) },
    ),
    covers: Object.keys(seen).filter((k) => k !== 'evictions'),
  },
  {
    mode: 'past MAX_COMMAND_RECORDS results',
    runs: Math.ceil(RUNS / 10),
    cases: fc
      .tuple(ops(8), fc.oneof(burst, tear(burst)), ops(8))
      .map(([before, b, after]) => [false, [...before, b, ...after]] as const),
    covers: ['evictions'],
  },
])('FileOutbox against a model ($mode)', ({ runs, cases, covers }) => {
  let dirs: string[] = [];
  beforeEach(() => {
    for (const k of Object.keys(seen)) seen[k as keyof typeof seen] = 0;
  });
  afterEach(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    dirs = [];
  });

  it(
    'loads exactly what the client stored, through compactions, reopens, crashes and torn tails',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(3, 5, 10, 20, 40, 10_000),
          cases,
          async (compactAfterLines, [fsync, list]) => {
            // The calls are synchronous: let the worker answer vitest between cases of a long hunt.
            await new Promise((resolve) => setImmediate(resolve));
            const dir = mkdtempSync(join(tmpdir(), 'vmcp-outbox-prop-'));
            dirs.push(dir);
            const c = new Case(dir, { compactAfterLines, fsync });
            try {
              c.open('first load');
              list.forEach((o, i) => c.run(o, `op ${i} (${o.t})`));
              // Whatever the sequence, a clean reopen at the end loads the model.
              c.run({ t: 'reopen' }, 'final reopen');
            } finally {
              c.close();
            }
          },
        ),
        { numRuns: runs },
      );
      // The paths this test is about did run (a short run may miss some).
      if (RUNS >= 100)
        for (const k of covers) expect(seen[k as keyof typeof seen], k).toBeGreaterThan(0);
    },
    Number(process.env.VMCP_PROP_TIMEOUT ?? 120_000),
  );
});
