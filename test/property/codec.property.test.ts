// Property tests of the codec (fast-check): round trips, arbitrary splits, random bytes, garbage.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ByteWriter,
  Cmd,
  FrameDecoder,
  MAX_FRAME_BYTES,
  MESSAGE_CODECS,
  MessageAssembler,
  SOF,
  decodeTlvs,
  encodeFrame,
  encodeMessage,
  toHex,
  type MessageSink,
  type TelemetrySample,
} from '../../src/protocol/index.js';

type AnyCodec = { decode(data: Uint8Array): unknown; encode(msg: never): Uint8Array };
const CODECS = MESSAGE_CODECS as unknown as Record<number, AnyCodec>;

// ---------------------------------------------------------------------------------------------
// Arbitraries for valid messages (PROTOCOL.md 2–6)

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.maxSafeNat();
const str = (maxLength = 40): fc.Arbitrary<string> => fc.string({ unit: 'binary', maxLength });
const bytes = (maxLength = 40, minLength = 0): fc.Arbitrary<Uint8Array> =>
  fc.uint8Array({ minLength, maxLength }).map((b) => Uint8Array.from(b));
const opt = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.option(a, { nil: undefined });

const vendor = fc
  .uniqueArray(fc.integer({ min: 0x80, max: 0xfe }), { maxLength: 4 })
  .chain((tags) =>
    fc
      .tuple(...tags.map(() => bytes(12)))
      .map((values) =>
        tags.length === 0
          ? undefined
          : Object.fromEntries(tags.map((t, i) => [`0x${t.toString(16)}`, toHex(values[i]!)])),
      ),
  );

const telemetrySample: fc.Arbitrary<TelemetrySample> = fc.record({
  timestamp: u64,
  latitude: opt(fc.integer({ min: -900_000_000, max: 900_000_000 })),
  longitude: opt(fc.integer({ min: -1_800_000_000, max: 1_800_000_000 })),
  speed: opt(u16),
  heading: opt(fc.integer({ min: 0, max: 3599 })),
  altitude: opt(fc.integer({ min: -32768, max: 32767 })),
  odometer: opt(u32),
  fuelOrSoc: opt(fc.integer({ min: 0, max: 100 })),
  statusFlags: opt(u32),
  engineRpm: opt(u16),
  batteryMv: opt(u16),
  vendor,
});

const vehicleId = fc.stringMatching(/^[A-Za-z0-9._:-]{1,64}$/);

/** One valid message of every type, as the codec's object (and the value decode must return). */
const typedMessages: Record<number, fc.Arbitrary<unknown>> = {
  [Cmd.PING]: fc.record({ data: bytes(8) }),
  [Cmd.PONG]: fc.record({ data: bytes(8) }),
  [Cmd.SENSOR_READ]: fc.record({ channel: u8, tag: u8 }),
  [Cmd.SENSOR_DATA]: fc.record({ channel: u8, tag: u8, status: u8, value: bytes(600) }),
  [Cmd.QUERY]: fc.record({ query: u8 }),
  [Cmd.QUERY_RESULT]: fc.record({
    query: u8,
    status: u8,
    serverTime: opt(u64),
    pendingCommands: opt(u32),
    sessionId: opt(str()),
    keepalive: opt(u16),
  }),
  [Cmd.ERROR]: fc.record({ code: u8, refCmd: u8, message: opt(str(300)), refSeq: opt(u32) }),
  [Cmd.DISCONNECT]: fc.record({
    reason: u8,
    message: opt(str()),
    redirect: opt(str()),
    retryAfterMs: opt(u32),
  }),
  [Cmd.CONNECT]: fc
    .record({
      versionMin: u16,
      span: u16,
      vehicleId,
      auth: fc.oneof(
        fc.record({ token: str(700) }),
        fc.record({ credential: bytes(80) }),
        fc.constant({}),
      ),
      keepalive: opt(u16),
      lastCommandSeq: opt(u32),
      clientInfo: opt(str(32)), // ≤ 32 code points: ≤ 128 bytes of UTF-8
    })
    .map(({ versionMin, span, auth, ...rest }) => ({
      versionMin,
      versionMax: Math.min(0xffff, versionMin + span),
      ...auth,
      ...rest,
    })),
  [Cmd.CONNACK]: fc.record({
    status: u8,
    version: u16,
    sessionId: opt(str()),
    keepalive: opt(u16),
    nextUplinkSeq: opt(u32),
    token: opt(str(400)),
    serverTime: opt(u64),
    reason: opt(str()),
    redirect: opt(str()),
    retryAfterMs: opt(u32),
  }),
  [Cmd.TELEMETRY]: fc.tuple(u32, telemetrySample).map(([seq, s]) => ({ seq, ...s })),
  [Cmd.EVENT]: fc.record({
    seq: u32,
    timestamp: u64,
    latitude: opt(fc.integer({ min: -900_000_000, max: 900_000_000 })),
    longitude: opt(fc.integer({ min: -1_800_000_000, max: 1_800_000_000 })),
    eventCode: opt(u16),
    severity: opt(fc.integer({ min: 0, max: 3 })),
    detail: opt(str(200)),
    vendor,
  }),
  [Cmd.UPLINK_ACK]: fc.record({ seq: u32, status: u8 }),
  [Cmd.TELEMETRY_BATCH]: fc
    .tuple(u32, fc.array(telemetrySample, { minLength: 1, maxLength: 12 }))
    .map(([firstSeq, samples]) => ({ firstSeq, count: samples.length, samples })),
  [Cmd.COMMAND]: fc.record({
    seq: u32,
    commandId: str(),
    name: str(),
    params: opt(str(500)),
    expiresAt: u64,
    traceparent: opt(str(55)),
  }),
  [Cmd.COMMAND_ACK]: fc.record({
    seq: u32,
    result: fc.integer({ min: 0, max: 5 }),
    resultPayload: opt(bytes(400)),
    message: opt(str()),
  }),
};

/** A typed message as [code, object, DATA]. */
const typedMessage: fc.Arbitrary<[number, unknown, Uint8Array]> = fc.oneof(
  ...Object.entries(typedMessages).map(([code, arb]) =>
    arb.map((msg): [number, unknown, Uint8Array] => [
      Number(code),
      msg,
      CODECS[Number(code)]!.encode(msg as never).slice(),
    ]),
  ),
);

/** A message with arbitrary DATA (up to several fragments) under any code but 0x55. */
const rawMessage: fc.Arbitrary<[number, Uint8Array]> = fc.tuple(
  fc.integer({ min: 0, max: 0x7f }).filter((c) => c !== SOF),
  bytes(1200),
);

const anyMessage: fc.Arbitrary<[number, Uint8Array]> = fc.oneof(
  typedMessage.map(([code, , data]): [number, Uint8Array] => [code, data]),
  rawMessage,
);

// ---------------------------------------------------------------------------------------------
// Helpers

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Splits `b` at the given cut points (any values; reduced modulo length+1, sorted). */
function split(b: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of points) {
    out.push(b.subarray(from, p));
    from = p;
  }
  out.push(b.subarray(from));
  return out;
}

interface Collected {
  messages: [number, string][];
  garbage: number;
  badFrames: number;
  broken: number[];
  tooLarge: number[];
  maxMessage: number;
}

function pipeline(maxMessageBytes?: number): {
  d: FrameDecoder;
  a: MessageAssembler;
  out: Collected;
} {
  const out: Collected = {
    messages: [],
    garbage: 0,
    badFrames: 0,
    broken: [],
    tooLarge: [],
    maxMessage: 0,
  };
  const sink: MessageSink = {
    onMessage: (code, data) => {
      out.messages.push([code, toHex(data)]);
      out.maxMessage = Math.max(out.maxMessage, data.length);
    },
    onBrokenRun: (code) => out.broken.push(code),
    onTooLarge: (code) => out.tooLarge.push(code),
    onBadFrame: () => out.badFrames++,
    onGarbage: (n) => (out.garbage += n),
  };
  const a = new MessageAssembler(sink, maxMessageBytes);
  return { d: new FrameDecoder(a), a, out };
}

function runBuffer(a: MessageAssembler): number {
  return (a as unknown as { buf: Uint8Array | undefined }).buf?.length ?? 0;
}

const cutsArb = fc.array(fc.nat(), { maxLength: 12 });

// ---------------------------------------------------------------------------------------------

describe('property: typed messages round-trip', () => {
  for (const [code, arb] of Object.entries(typedMessages)) {
    it(`0x${Number(code).toString(16).padStart(2, '0')}: decode(encode(m)) equals m`, () => {
      const codec = CODECS[Number(code)]!;
      fc.assert(
        fc.property(arb, (msg) => {
          expect(codec.decode(codec.encode(msg as never))).toEqual(msg);
        }),
        { numRuns: 150 },
      );
    });
  }

  it('covers every message codec', () => {
    expect(Object.keys(typedMessages).sort()).toEqual(Object.keys(MESSAGE_CODECS).sort());
  });
});

describe('property: streams of messages', () => {
  it('encodeMessage → concatenate → split anywhere → the same messages, no garbage, no bad frame', () => {
    fc.assert(
      fc.property(fc.array(anyMessage, { minLength: 1, maxLength: 8 }), cutsArb, (msgs, cuts) => {
        const wire = concat(msgs.map(([code, data]) => encodeMessage(code, data)));
        const { d, out } = pipeline();
        for (const chunk of split(wire, cuts)) {
          d.push(chunk);
          expect(d.bufferedBytes).toBeLessThanOrEqual(MAX_FRAME_BYTES);
        }
        expect(out.messages).toEqual(msgs.map(([code, data]) => [code, toHex(data)]));
        expect(out.garbage).toBe(0);
        expect(out.badFrames).toBe(0);
        expect(out.broken).toEqual([]);
        expect(out.tooLarge).toEqual([]);
        expect(d.bufferedBytes).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('the stream fragments: messages over 255 bytes are generated', () => {
    // Guards the previous property against a generator that never fragments.
    const samples = fc.sample(fc.array(anyMessage, { minLength: 1, maxLength: 8 }), {
      numRuns: 50,
      seed: 7,
    });
    expect(samples.some((msgs) => msgs.some(([, data]) => data.length > 255))).toBe(true);
  });

  it('typed messages decode from what the stream delivers', () => {
    fc.assert(
      fc.property(fc.array(typedMessage, { minLength: 1, maxLength: 5 }), cutsArb, (msgs, cuts) => {
        const wire = concat(msgs.map(([code, , data]) => encodeMessage(code, data)));
        const decoded: unknown[] = [];
        const d = new FrameDecoder(
          new MessageAssembler({
            onMessage: (code, data) => decoded.push(CODECS[code]!.decode(data)),
            onBrokenRun: () => expect.fail('broken run'),
            onTooLarge: () => expect.fail('too large'),
            onBadFrame: () => expect.fail('bad frame'),
            onGarbage: () => expect.fail('garbage'),
          }),
        );
        for (const chunk of split(wire, cuts)) d.push(chunk);
        expect(decoded).toEqual(msgs.map(([, msg]) => msg));
      }),
      { numRuns: 150 },
    );
  });

  it('garbage without 0x55 between frames is counted exactly and every frame still arrives', () => {
    const garbage = fc
      .uint8Array({ maxLength: 20 })
      .map((g) => Uint8Array.from(g, (b) => (b === SOF ? 0x54 : b)));
    fc.assert(
      fc.property(
        fc.array(anyMessage, { minLength: 1, maxLength: 6 }),
        fc.array(garbage, { minLength: 1, maxLength: 80 }),
        cutsArb,
        (msgs, garbageRuns, cuts) => {
          // Garbage goes before every frame (fragments included) and after the last one.
          const parts: Uint8Array[] = [];
          let g = 0;
          const nextGarbage = (): Uint8Array => garbageRuns[g++ % garbageRuns.length]!;
          for (const [code, data] of msgs) {
            const wire = encodeMessage(code, data);
            for (let o = 0; o < wire.length;) {
              const frameLen = wire[o + 2]! + 5;
              parts.push(nextGarbage(), wire.subarray(o, o + frameLen));
              o += frameLen;
            }
          }
          parts.push(nextGarbage());
          const garbageBytes = parts
            .filter((_, i) => i % 2 === 0 || i === parts.length - 1)
            .reduce((n, p) => n + p.length, 0);
          const { d, out } = pipeline();
          for (const chunk of split(concat(parts), cuts)) d.push(chunk);
          expect(out.messages).toEqual(msgs.map(([code, data]) => [code, toHex(data)]));
          expect(out.garbage).toBe(garbageBytes);
          expect(out.badFrames).toBe(0);
          expect(out.broken).toEqual([]);
        },
      ),
      { numRuns: 200 },
    );
  });
});

/** Bytes biased towards what confuses a frame decoder: SOF, MORE codes, small LENs. */
const hostileByte = fc.oneof(
  { weight: 4, arbitrary: u8 },
  { weight: 2, arbitrary: fc.constant(SOF) },
  { weight: 1, arbitrary: fc.constantFrom(0x00, 0x01, 0x02, 0x10, 0x90, 0xa0, 0xff) },
);
const hostileBytes = fc.array(hostileByte, { maxLength: 3000 }).map((b) => Uint8Array.from(b));

describe('property: random bytes', () => {
  it('push() never throws, never buffers more than 260 bytes, never reassembles past the limit', () => {
    const limit = 700;
    fc.assert(
      fc.property(
        fc.oneof(bytes(3000), hostileBytes),
        cutsArb,
        fc.array(fc.boolean(), { maxLength: 13 }),
        (stream, cuts, expiries) => {
          const { d, a, out } = pipeline(limit);
          split(stream, cuts).forEach((chunk, i) => {
            d.push(chunk);
            expect(d.bufferedBytes).toBeLessThanOrEqual(MAX_FRAME_BYTES);
            if (expiries[i] === true) {
              d.expirePartialFrame();
              expect(d.bufferedBytes).toBeLessThanOrEqual(MAX_FRAME_BYTES);
            }
            expect(runBuffer(a)).toBeLessThanOrEqual(limit);
          });
          expect(out.maxMessage).toBeLessThanOrEqual(limit);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('valid frames pushed after random bytes and an expiry still arrive', () => {
    fc.assert(
      fc.property(hostileBytes, cutsArb, (stream, cuts) => {
        const { d, out } = pipeline();
        for (const chunk of split(stream, cuts)) d.push(chunk);
        // Whatever is buffered, at most 260 bytes of expiry and re-scan; then a fresh start.
        for (let i = 0; i < 300 && d.hasPartialFrame; i++) d.expirePartialFrame();
        expect(d.hasPartialFrame).toBe(false);
        // A broken run may still be open in the assembler: a PING breaks it and is delivered.
        const before = out.messages.length;
        d.push(encodeFrame(Cmd.PING, Uint8Array.of(1, 2)));
        d.push(encodeFrame(Cmd.PONG, Uint8Array.of(3)));
        expect(out.messages.slice(before)).toEqual([
          [Cmd.PING, '0102'],
          [Cmd.PONG, '03'],
        ]);
      }),
      { numRuns: 300 },
    );
  });
});

describe('property: TLV records', () => {
  it('ByteWriter → decodeTlvs returns the records written, from any initial capacity', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(u8, bytes(600)), {
          selector: ([tag]) => tag,
          maxLength: 20,
        }),
        fc.integer({ min: 1, max: 64 }),
        bytes(10),
        (records, initial, prefix) => {
          const w = new ByteWriter(initial).bytes(prefix);
          for (const [tag, value] of records) w.tlv(tag, value);
          const data = w.finish();
          expect(data.length).toBe(
            prefix.length + records.reduce((n, [, v]) => n + 5 + v.length, 0),
          );
          expect(decodeTlvs(data, prefix.length).map(([t, v]) => [t, toHex(v)])).toEqual(
            records.map(([t, v]) => [t, toHex(v)]),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('typed TLV writers produce big-endian values of the right size', () => {
    fc.assert(
      fc.property(u8, u16, u32, u64, fc.integer({ min: -32768, max: 32767 }), (a, b, c, d, e) => {
        const data = new ByteWriter(1)
          .tlvU8(1, a)
          .tlvU16(2, b)
          .tlvU32(3, c)
          .tlvU64(4, d)
          .tlvI16(5, e)
          .tlvI32(6, -c | 0)
          .finish();
        const recs = new Map(decodeTlvs(data));
        const dv = (t: number): DataView => {
          const v = recs.get(t)!;
          return new DataView(v.buffer, v.byteOffset, v.byteLength);
        };
        expect(recs.get(1)!.length).toBe(1);
        expect(dv(1).getUint8(0)).toBe(a);
        expect(dv(2).getUint16(0)).toBe(b);
        expect(dv(3).getUint32(0)).toBe(c);
        expect(Number(dv(4).getBigUint64(0))).toBe(d);
        expect(dv(5).getInt16(0)).toBe(e);
        expect(dv(6).getInt32(0)).toBe(-c | 0);
      }),
      { numRuns: 300 },
    );
  });

  it('any truncation of a TLV sequence throws VMCP_ERR_TLV_TRUNCATED or yields a prefix of it', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(u8, bytes(30)), { selector: ([tag]) => tag, maxLength: 6 }),
        fc.nat(),
        (records, cutSeed) => {
          const w = new ByteWriter();
          for (const [tag, value] of records) w.tlv(tag, value);
          const data = w.finish();
          const cut = cutSeed % (data.length + 1);
          let got: [number, string][] | undefined;
          try {
            got = decodeTlvs(data.subarray(0, cut)).map(([t, v]) => [t, toHex(v)]);
          } catch (err) {
            expect((err as { code?: string }).code).toBe('VMCP_ERR_TLV_TRUNCATED');
            return;
          }
          expect(records.map(([t, v]) => [t, toHex(v)]).slice(0, got.length)).toEqual(got);
        },
      ),
      { numRuns: 300 },
    );
  });
});
