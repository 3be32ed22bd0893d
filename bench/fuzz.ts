// Fuzzing the VMCP codec (PROTOCOL.md 1–6): random and mutated byte streams through FrameDecoder and
// MessageAssembler, and random or mutated DATA through every message decoder.
//
//   npm run fuzz -- [--seconds 60] [--seed N] [--max-iterations N] [--no-oracle]
//
// Checks: push() and expirePartialFrame() never throw; the decoder never buffers more than one frame
// (260 bytes); every delivered frame is a real frame of the stream; no reassembled message passes
// its limit; message decoders only return or throw VmcpError, and what they return re-encodes to
// the same value; with the oracle (default), the incremental decoder agrees with a whole-stream
// reference decoder written from PROTOCOL.md 1.1 on frames, garbage, bad frames and buffered bytes.
//
// One JSON summary line goes to stdout; failures (with their input as hex) go to stderr. Exits 1 on
// any failure. test/fuzz/decoder.fuzz.test.ts runs the same engine with a small, bounded budget.
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { VmcpError } from '../src/errors.js';
import {
  ByteWriter,
  Cmd,
  DEFAULT_MAX_MESSAGE_BYTES,
  FrameDecoder,
  MAX_FRAME_BYTES,
  MESSAGE_CODECS,
  MessageAssembler,
  SOF,
  crc16,
  decodeTlvs,
  encodeFrame,
  encodeMessage,
  splitTelemetryBatch,
  toHex,
  type FrameSink,
  type TelemetrySample,
} from '../src/protocol/index.js';

type AnyCodec = { code: number; decode(data: Uint8Array): unknown; encode(msg: never): Uint8Array };
const CODECS = Object.values(MESSAGE_CODECS) as unknown as AnyCodec[];
const CODEC_BY_CODE = new Map(CODECS.map((c) => [c.code, c]));

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: small, fast, and reproducible from a 32-bit seed. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** 0 … n−1. */
  int(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }
  /** lo … hi inclusive. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
  /** A length biased towards small values, up to `max`. */
  len(max: number): number {
    return this.chance(0.7) ? this.int(Math.min(max, 16) + 1) : this.int(max + 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Valid messages with random values

const ALPHABET = ['a', 'Z', '0', '.', '-', '_', ':', ' ', '"', '{', 'é', '✓', '😀', '\u0000'];

function randomString(rng: Rng, max: number): string {
  let s = '';
  const n = rng.len(max);
  for (let i = 0; i < n; i++) s += rng.pick(ALPHABET);
  return s;
}

function maybe<T>(rng: Rng, make: () => T): T | undefined {
  return rng.chance(0.5) ? make() : undefined;
}

function randomU64(rng: Rng): number {
  return rng.pick([
    0,
    1,
    1_764_000_000_000,
    Number.MAX_SAFE_INTEGER,
    rng.u32() * 0x1000 + rng.int(4096),
  ]);
}

function randomVendor(rng: Rng): Record<string, string> | undefined {
  if (!rng.chance(0.3)) return undefined;
  const out: Record<string, string> = {};
  for (let i = rng.range(1, 3); i > 0; i--)
    out[`0x${rng.range(0x80, 0xfe).toString(16)}`] = toHex(rng.bytes(rng.len(8)));
  return out;
}

function randomSample(rng: Rng): TelemetrySample {
  return {
    timestamp: randomU64(rng),
    latitude: maybe(rng, () => rng.range(-900_000_000, 900_000_000)),
    longitude: maybe(rng, () => rng.range(-1_800_000_000, 1_800_000_000)),
    speed: maybe(rng, () => rng.int(0x10000)),
    heading: maybe(rng, () => rng.int(3600)),
    altitude: maybe(rng, () => rng.range(-32768, 32767)),
    odometer: maybe(rng, () => rng.u32()),
    fuelOrSoc: maybe(rng, () => rng.int(101)),
    statusFlags: maybe(rng, () => rng.u32()),
    engineRpm: maybe(rng, () => rng.int(0x10000)),
    batteryMv: maybe(rng, () => rng.int(0x10000)),
    vendor: randomVendor(rng),
  };
}

const VALID: Record<number, (rng: Rng) => unknown> = {
  [Cmd.PING]: (rng) => ({ data: rng.bytes(rng.int(9)) }),
  [Cmd.PONG]: (rng) => ({ data: rng.bytes(rng.int(9)) }),
  [Cmd.SENSOR_READ]: (rng) => ({ channel: rng.int(256), tag: rng.int(256) }),
  [Cmd.SENSOR_DATA]: (rng) => ({
    channel: rng.int(256),
    tag: rng.int(256),
    status: rng.int(3),
    value: rng.bytes(rng.len(600)),
  }),
  [Cmd.QUERY]: (rng) => ({ query: rng.range(1, 3) }),
  [Cmd.QUERY_RESULT]: (rng) => ({
    query: rng.range(1, 3),
    status: rng.int(2),
    serverTime: maybe(rng, () => randomU64(rng)),
    pendingCommands: maybe(rng, () => rng.u32()),
    sessionId: maybe(rng, () => randomString(rng, 40)),
    keepalive: maybe(rng, () => rng.int(0x10000)),
  }),
  [Cmd.ERROR]: (rng) => ({
    code: rng.range(1, 9),
    refCmd: rng.int(128),
    message: maybe(rng, () => randomString(rng, 100)),
    refSeq: maybe(rng, () => rng.u32()),
  }),
  [Cmd.DISCONNECT]: (rng) => ({
    reason: rng.int(8),
    message: maybe(rng, () => randomString(rng, 60)),
    redirect: maybe(rng, () => 'gw.example:7700'),
    retryAfterMs: maybe(rng, () => rng.u32()),
  }),
  [Cmd.CONNECT]: (rng) => {
    const versionMin = rng.range(0, 3);
    const auth = rng.int(3);
    return {
      versionMin,
      versionMax: versionMin + rng.int(3),
      vehicleId: 'V'.repeat(rng.range(1, 64)),
      token: auth === 0 ? 'h.' + 'p'.repeat(rng.len(900)) + '.s' : undefined,
      credential: auth === 1 ? rng.bytes(rng.len(40)) : undefined,
      keepalive: maybe(rng, () => rng.int(0x10000)),
      lastCommandSeq: maybe(rng, () => rng.u32()),
      clientInfo: maybe(rng, () => randomString(rng, 32)),
    };
  },
  [Cmd.CONNACK]: (rng) => ({
    status: rng.int(6),
    version: rng.int(3),
    sessionId: maybe(rng, () => randomString(rng, 40)),
    keepalive: maybe(rng, () => rng.int(0x10000)),
    nextUplinkSeq: maybe(rng, () => rng.u32()),
    token: maybe(rng, () => 'x'.repeat(rng.len(400))),
    serverTime: maybe(rng, () => randomU64(rng)),
    reason: maybe(rng, () => randomString(rng, 40)),
    redirect: maybe(rng, () => 'h:1'),
    retryAfterMs: maybe(rng, () => rng.u32()),
  }),
  [Cmd.TELEMETRY]: (rng) => ({ seq: rng.u32(), ...randomSample(rng) }),
  [Cmd.EVENT]: (rng) => ({
    seq: rng.u32(),
    timestamp: randomU64(rng),
    latitude: maybe(rng, () => rng.range(-900_000_000, 900_000_000)),
    longitude: maybe(rng, () => rng.range(-1_800_000_000, 1_800_000_000)),
    eventCode: maybe(rng, () => rng.int(0x10000)),
    severity: maybe(rng, () => rng.int(4)),
    detail: maybe(rng, () => randomString(rng, 80)),
    vendor: randomVendor(rng),
  }),
  [Cmd.UPLINK_ACK]: (rng) => ({ seq: rng.u32(), status: rng.int(6) }),
  [Cmd.TELEMETRY_BATCH]: (rng) => {
    const samples = Array.from({ length: rng.range(1, 12) }, () => randomSample(rng));
    return { firstSeq: rng.u32(), count: samples.length, samples };
  },
  [Cmd.COMMAND]: (rng) => ({
    seq: rng.u32(),
    commandId: randomString(rng, 30),
    name: rng.pick(['door.lock', 'horn.honk', 'config.set']),
    params: maybe(rng, () => JSON.stringify({ v: randomString(rng, 300) })),
    expiresAt: randomU64(rng),
    traceparent: maybe(rng, () => '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'),
  }),
  [Cmd.COMMAND_ACK]: (rng) => ({
    seq: rng.u32(),
    result: rng.int(6),
    resultPayload: maybe(rng, () => rng.bytes(rng.len(300))),
    message: maybe(rng, () => randomString(rng, 40)),
  }),
};
const VALID_CODES = Object.keys(VALID).map(Number);

function validData(rng: Rng, code: number): Uint8Array {
  return CODEC_BY_CODE.get(code)!
    .encode(VALID[code]!(rng) as never)
    .slice();
}

// ---------------------------------------------------------------------------------------------
// Mutations

const INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, SOF, 0x04, 0x08];
const INTERESTING_U32 = [0, 1, 2, 4, 8, 0xff, 0x100, 0xffff, 0x7fffffff, 0xffffffff];

/** Mutates message DATA: bit flips, boundary values, TLV lengths, repeats, cuts, random TLVs. */
export function mutateData(rng: Rng, data: Uint8Array): Uint8Array {
  let d = data;
  for (let n = rng.range(1, 3); n > 0; n--) {
    const at = rng.int(d.length + 1);
    switch (rng.int(9)) {
      case 0: // flip a bit
        if (d.length > 0) {
          d = d.slice();
          d[at % d.length]! ^= 1 << rng.int(8);
        }
        break;
      case 1: // an interesting byte
        if (d.length > 0) {
          d = d.slice();
          d[at % d.length] = rng.pick(INTERESTING_BYTES);
        }
        break;
      case 2: // an interesting u32 (TLV LENGTH, SEQ, MAGIC)
        if (d.length >= 4) {
          d = d.slice();
          const o = rng.int(d.length - 3);
          new DataView(d.buffer, d.byteOffset, d.byteLength).setUint32(
            o,
            rng.pick(INTERESTING_U32),
          );
        }
        break;
      case 3: // cut the end
        d = d.subarray(0, at);
        break;
      case 4: // delete a range
        d = concat([d.subarray(0, at), d.subarray(Math.min(d.length, at + rng.len(12)))]);
        break;
      case 5: // duplicate a range (repeated tags)
        d = concat([d.subarray(0, at), d.subarray(at, at + rng.len(24)), d.subarray(at)]);
        break;
      case 6: // append a random TLV, sometimes of a known tag and a wrong size
        d = concat([
          d,
          new ByteWriter()
            .tlv(rng.chance(0.5) ? rng.int(0x14) : rng.int(256), rng.bytes(rng.len(10)))
            .finish(),
        ]);
        break;
      case 7: // insert random bytes
        d = concat([d.subarray(0, at), rng.bytes(rng.len(8)), d.subarray(at)]);
        break;
      default: // random DATA of the same length
        d = rng.bytes(d.length);
    }
  }
  return d;
}

/** Mutates the wire: bytes, SOFs, LEN bytes, nested frames, deletions, duplications. */
function mutateWire(rng: Rng, wire: Uint8Array): Uint8Array {
  let w = wire;
  for (let n = rng.range(1, 3); n > 0; n--) {
    const at = rng.int(w.length + 1);
    switch (rng.int(7)) {
      case 0:
        if (w.length > 0) {
          w = w.slice();
          w[at % w.length]! ^= 1 << rng.int(8);
        }
        break;
      case 1:
        if (w.length > 0) {
          w = w.slice();
          w[at % w.length] = rng.pick(INTERESTING_BYTES);
        }
        break;
      case 2: // a whole valid frame inside whatever is there (nested frames, PROTOCOL.md 1.1)
        w = concat([
          w.subarray(0, at),
          encodeFrame(Cmd.PING, rng.bytes(rng.int(9))),
          w.subarray(at),
        ]);
        break;
      case 3:
        w = concat([w.subarray(0, at), Uint8Array.of(SOF), w.subarray(at)]);
        break;
      case 4:
        w = concat([w.subarray(0, at), w.subarray(Math.min(w.length, at + rng.len(20)))]);
        break;
      case 5:
        w = concat([w.subarray(0, at), w.subarray(at, at + rng.len(40)), w.subarray(at)]);
        break;
      default:
        w = concat([w.subarray(0, at), rng.bytes(rng.len(12)), w.subarray(at)]);
    }
  }
  return w;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A stream of valid, invalid-DATA, random, broken and truncated frames with garbage around them. */
function randomStream(rng: Rng): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let n = rng.range(1, 8); n > 0; n--) {
    const code = rng.pick(VALID_CODES);
    switch (rng.int(8)) {
      case 0:
      case 1:
        parts.push(encodeMessage(code, validData(rng, code)));
        break;
      case 2:
      case 3: // valid frames carrying invalid DATA: what reaches the message decoders
        parts.push(encodeMessage(code, mutateData(rng, validData(rng, code))));
        break;
      case 4: {
        let c = rng.int(128);
        if (c === SOF) c = 0;
        parts.push(encodeMessage(c, rng.bytes(rng.len(700))));
        break;
      }
      case 5: // garbage, lone SOFs
        parts.push(
          rng.chance(0.5) ? rng.bytes(rng.len(30)) : new Uint8Array(rng.range(1, 3)).fill(SOF),
        );
        break;
      case 6: {
        // a frame with a bad CRC
        const f = encodeFrame(
          rng.int(256) === SOF ? 0 : code | (rng.chance(0.2) ? 0x80 : 0),
          rng.bytes(rng.len(255)),
        );
        f[f.length - 1]! ^= 1 + rng.int(255);
        parts.push(f);
        break;
      }
      default: {
        // a truncated frame (the next frame's bytes run into it)
        const f = encodeMessage(code, validData(rng, code));
        parts.push(f.subarray(0, rng.int(f.length)));
      }
    }
  }
  const stream = concat(parts);
  return rng.chance(0.4) ? mutateWire(rng, stream) : stream;
}

function splitRandomly(rng: Rng, b: Uint8Array): Uint8Array[] {
  const mode = rng.int(4);
  if (mode === 0) return [b];
  if (mode === 1 && b.length <= 600) return Array.from(b, (x) => Uint8Array.of(x));
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < b.length;) {
    const n = rng.chance(0.2) ? 0 : rng.range(1, mode === 2 ? 8 : 300);
    chunks.push(b.subarray(o, o + n));
    o += n;
  }
  return chunks;
}

// ---------------------------------------------------------------------------------------------
// The reference decoder: PROTOCOL.md 1.1 over the whole stream received so far, no cleverness.

export class ReferenceDecoder {
  readonly frames: [number, string][] = [];
  garbage = 0;
  badFrames = 0;
  private buf: number[] = [];
  /** Next undecided byte; when < buf.length it is the SOF of an incomplete frame. */
  private i = 0;
  /** Bytes before this offset are inside a dropped frame's extent (not garbage). */
  private quiet = 0;

  get bufferedBytes(): number {
    return this.buf.length - this.i;
  }

  push(chunk: Uint8Array): void {
    for (const b of chunk) this.buf.push(b);
    this.run();
  }

  expirePartialFrame(): void {
    if (this.i >= this.buf.length) return;
    const s = this.i;
    if (s >= this.quiet) this.garbage++;
    let j = s + 1;
    while (j < this.buf.length && this.buf[j] !== SOF) j++;
    this.quiet = Math.max(this.quiet, j);
    this.i = j;
    this.run();
  }

  private run(): void {
    const b = this.buf;
    const n = b.length;
    let i = this.i;
    while (i < n) {
      if (b[i] !== SOF) {
        if (i >= this.quiet) this.garbage++;
        i++;
        continue;
      }
      if (i + 1 >= n) break;
      if (b[i + 1] === SOF) {
        if (i >= this.quiet) this.garbage++;
        i++;
        continue;
      }
      if (i + 2 >= n) break;
      const total = b[i + 2]! + 5;
      if (i + total > n) break;
      const frame = Uint8Array.from(b.slice(i + 1, i + total));
      const crc = (frame[total - 3]! << 8) | frame[total - 2]!;
      if (crc16(frame, 0, total - 3) === crc) {
        this.frames.push([frame[0]!, toHex(frame.subarray(2, total - 3))]);
        i += total;
      } else {
        this.badFrames++;
        this.quiet = Math.max(this.quiet, i + total);
        i++;
      }
    }
    this.i = i;
  }
}

// ---------------------------------------------------------------------------------------------
// Checks

export interface FuzzFailure {
  kind: string;
  detail: string;
  /** The input: the stream's chunks (hex, '|' between chunks, '!' where the frame timeout fired) or DATA. */
  input: string;
}

export interface FuzzOptions {
  seed: number;
  /** Wall-clock budget; the run stops at whichever of the budgets comes first. */
  seconds: number;
  maxIterations?: number;
  /** Compare the frame decoder with ReferenceDecoder (default true). */
  oracle?: boolean;
  /** What each iteration runs: one stream and four DATA cases (default), or only one kind. */
  only?: 'streams' | 'data';
}

export interface FuzzSummary {
  seed: number;
  seconds: number;
  iterations: number;
  streams: number;
  bytesPushed: number;
  frames: number;
  messages: number;
  badFrames: number;
  garbage: number;
  brokenRuns: number;
  tooLarge: number;
  dataCases: number;
  decoded: number;
  rejected: Record<string, number>;
  oracle: boolean;
  failures: number;
  failureKinds: Record<string, number>;
}

const MAX_KEPT_FAILURES = 20;

/** Deep equality of decoded messages: undefined keys count as absent, bytes by value. */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Uint8Array || b instanceof Uint8Array)
    return a instanceof Uint8Array && b instanceof Uint8Array && toHex(a) === toHex(b);
  if (Array.isArray(a) || Array.isArray(b))
    return (
      Array.isArray(a) &&
      Array.isArray(b) &&
      a.length === b.length &&
      a.every((x, i) => sameValue(x, b[i]))
    );
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
  for (const k of keys) if (!sameValue(ra[k], rb[k])) return false;
  return true;
}

function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

export class Fuzzer {
  readonly summary: FuzzSummary;
  readonly kept: FuzzFailure[] = [];

  constructor(private readonly opts: FuzzOptions) {
    this.summary = {
      seed: opts.seed,
      seconds: 0,
      iterations: 0,
      streams: 0,
      bytesPushed: 0,
      frames: 0,
      messages: 0,
      badFrames: 0,
      garbage: 0,
      brokenRuns: 0,
      tooLarge: 0,
      dataCases: 0,
      decoded: 0,
      rejected: {},
      oracle: opts.oracle ?? true,
      failures: 0,
      failureKinds: {},
    };
  }

  private fail(kind: string, detail: string, input: string): void {
    this.summary.failures++;
    this.summary.failureKinds[kind] = (this.summary.failureKinds[kind] ?? 0) + 1;
    if (this.kept.length < MAX_KEPT_FAILURES)
      this.kept.push({
        kind,
        detail,
        input: input.length > 8192 ? input.slice(0, 8192) + '…' : input,
      });
  }

  /** Every decoder on one DATA: each returns or throws VmcpError; the own codec's result re-encodes. */
  checkData(code: number, data: Uint8Array, input: () => string): void {
    const s = this.summary;
    for (const codec of CODECS) {
      let value: unknown;
      try {
        value = codec.decode(data);
      } catch (err) {
        if (!(err instanceof VmcpError)) {
          this.fail(
            'decoder-threw',
            `0x${codec.code.toString(16)} decode: ${describeError(err)}`,
            input(),
          );
        } else if (codec.code === code) {
          s.rejected[err.code] = (s.rejected[err.code] ?? 0) + 1;
        }
        continue;
      }
      if (codec.code !== code) continue;
      s.decoded++;
      try {
        const again = codec.decode(codec.encode(value as never));
        if (!sameValue(again, value))
          this.fail(
            'reencode-mismatch',
            `0x${code.toString(16)}: decode(encode(v)) differs from v`,
            input(),
          );
      } catch (err) {
        this.fail('reencode-threw', `0x${code.toString(16)}: ${describeError(err)}`, input());
      }
    }
    for (const [name, fn] of [
      ['decodeTlvs', () => decodeTlvs(data)],
      ['splitTelemetryBatch', () => splitTelemetryBatch(data)],
    ] as const) {
      try {
        fn();
      } catch (err) {
        if (!(err instanceof VmcpError))
          this.fail('decoder-threw', `${name}: ${describeError(err)}`, input());
      }
    }
  }

  /** One stream, split and pushed, with frame timeouts at random points. */
  checkStream(rng: Rng): void {
    const s = this.summary;
    const stream = randomStream(rng);
    const chunks = splitRandomly(rng, stream);
    const expireAfter = chunks.map(() => rng.chance(0.08));
    const limit = rng.pick([64, 300, 1000, DEFAULT_MAX_MESSAGE_BYTES]);
    const input = (): string =>
      chunks.map((c, i) => toHex(c) + (expireAfter[i] ? '!' : '')).join('|') + ` (limit ${limit})`;
    const streamHex = toHex(stream);

    const got: [number, string][] = [];
    let garbage = 0;
    let badFrames = 0;
    const assembler = new MessageAssembler(
      {
        onMessage: (code, data) => {
          s.messages++;
          if (data.length > limit)
            this.fail('too-large-message', `${data.length} > ${limit}`, input());
          this.checkData(code, data, input);
        },
        onBrokenRun: () => s.brokenRuns++,
        onTooLarge: () => s.tooLarge++,
        onBadFrame: () => undefined,
        onGarbage: () => undefined,
      },
      limit,
    );
    const sink: FrameSink = {
      onFrame: (cmdByte, data) => {
        s.frames++;
        if (cmdByte === SOF || data.length > 255)
          this.fail('invalid-frame', `cmd ${cmdByte} len ${data.length}`, input());
        else if (!streamHex.includes(toHex(encodeFrame(cmdByte, data))))
          this.fail('invented-frame', `a frame not in the stream: ${cmdByte}`, input());
        got.push([cmdByte, toHex(data)]);
        assembler.onFrame(cmdByte, data);
      },
      onBadFrame: () => {
        s.badFrames++;
        badFrames++;
      },
      onGarbage: (n) => {
        if (!(n > 0)) this.fail('garbage-count', `onGarbage(${n})`, input());
        s.garbage += n;
        garbage += n;
      },
    };
    const decoder = new FrameDecoder(sink);
    const ref = this.summary.oracle ? new ReferenceDecoder() : undefined;
    s.streams++;
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i]!;
      s.bytesPushed += chunk.length;
      try {
        decoder.push(chunk);
        if (expireAfter[i]) decoder.expirePartialFrame();
      } catch (err) {
        this.fail('push-threw', describeError(err), input());
        return;
      }
      if (decoder.bufferedBytes > MAX_FRAME_BYTES)
        this.fail('buffer-bound', `bufferedBytes ${decoder.bufferedBytes}`, input());
      ref?.push(chunk);
      if (expireAfter[i]) ref?.expirePartialFrame();
    }
    if (ref !== undefined) {
      const want = JSON.stringify([ref.frames, ref.garbage, ref.badFrames, ref.bufferedBytes]);
      const have = JSON.stringify([got, garbage, badFrames, decoder.bufferedBytes]);
      if (want !== have)
        this.fail(
          'oracle-mismatch',
          `[frames, garbage, badFrames, bufferedBytes]: reference ${want.length > 600 ? want.slice(0, 600) + '…' : want}, decoder ${have.length > 600 ? have.slice(0, 600) + '…' : have}`,
          input(),
        );
    }
  }

  /** Random or mutated DATA straight into the decoders. */
  checkDataCase(rng: Rng): void {
    const code = rng.pick(VALID_CODES);
    const data = rng.chance(0.15) ? rng.bytes(rng.len(300)) : mutateData(rng, validData(rng, code));
    this.summary.dataCases++;
    this.checkData(code, data, () => `DATA of 0x${code.toString(16)}: ${toHex(data)}`);
  }

  run(): FuzzSummary {
    const start = performance.now();
    const deadline = start + this.opts.seconds * 1000;
    const max = this.opts.maxIterations ?? Infinity;
    const s = this.summary;
    while (s.iterations < max && performance.now() < deadline) {
      // Each iteration has its own generator, so a failure replays from (seed, iteration).
      const rng = new Rng((this.opts.seed ^ Math.imul(s.iterations + 1, 0x9e3779b1)) >>> 0);
      s.iterations++;
      if (this.opts.only !== 'data') this.checkStream(rng);
      if (this.opts.only !== 'streams') for (let k = 0; k < 4; k++) this.checkDataCase(rng);
    }
    s.seconds = Math.round(performance.now() - start) / 1000;
    return s;
  }
}

export function runFuzz(opts: FuzzOptions): { summary: FuzzSummary; failures: FuzzFailure[] } {
  const f = new Fuzzer(opts);
  const summary = f.run();
  return { summary, failures: f.kept };
}

// ---------------------------------------------------------------------------------------------

function main(): void {
  const { values: args } = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      seed: { type: 'string' },
      'max-iterations': { type: 'string' },
      'no-oracle': { type: 'boolean', default: false },
    },
  });
  const seconds = Number(args.seconds);
  const seed = args.seed === undefined ? (Math.random() * 0x1_0000_0000) >>> 0 : Number(args.seed);
  const maxIterations =
    args['max-iterations'] === undefined ? undefined : Number(args['max-iterations']);
  if (
    !(seconds >= 0) ||
    !Number.isInteger(seed) ||
    (maxIterations !== undefined && !(Number.isInteger(maxIterations) && maxIterations > 0))
  ) {
    console.error(
      'usage: bench/fuzz.ts [--seconds S>=0] [--seed N] [--max-iterations N>0] [--no-oracle]',
    );
    process.exit(2);
  }
  const { summary, failures } = runFuzz({
    seed,
    seconds,
    maxIterations,
    oracle: !args['no-oracle'],
  });
  for (const f of failures)
    console.error(`fuzz failure [${f.kind}] ${f.detail}\n  input: ${f.input}`);
  if (summary.failures > failures.length)
    console.error(`… and ${summary.failures - failures.length} more failures`);
  console.log(JSON.stringify(summary));
  process.exit(summary.failures === 0 ? 0 : 1);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href)
  main();
