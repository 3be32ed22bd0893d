// Typed message codecs (PROTOCOL.md 1.3, 2.1–2.4, 3, 4, 5, 6): value checks, error codes, round trips.
import { describe, expect, it } from 'vitest';
import { VmcpError, type VmcpErrorCode } from '../../src/errors.js';
import {
  ByteWriter,
  CONNECT_MAGIC,
  Cmd,
  FrameDecoder,
  MESSAGE_CODECS,
  MessageAssembler,
  TlvReader,
  UPLINK_ACK_FRAME_BYTES,
  decodeCommand,
  decodeCommandAck,
  decodeConnack,
  decodeConnect,
  decodeDisconnect,
  decodeError,
  decodeEvent,
  decodeQuery,
  decodeQueryResult,
  decodeSensorData,
  decodeSensorRead,
  decodeTelemetry,
  decodeTelemetryBatch,
  decodeTlvs,
  decodeUplinkAck,
  encodeMessage,
  encodeTelemetryBatch,
  fromHex,
  splitTelemetryBatch,
  toHex,
  writeUplinkAckFrame,
  type TelemetrySample,
} from '../../src/protocol/index.js';

type AnyCodec = { decode(data: Uint8Array): unknown; encode(msg: never): Uint8Array };
const CODECS = MESSAGE_CODECS as unknown as Record<number, AnyCodec>;

/** Runs `fn`, which must throw a VmcpError; returns it. */
function thrown(fn: () => unknown): VmcpError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a VmcpError to be thrown').toBeInstanceOf(VmcpError);
  return caught as VmcpError;
}

/** `fn` throws a VmcpError with `code` (and `seq`, when given: `null` means seq must be undefined). */
function expectError(fn: () => unknown, code: VmcpErrorCode, seq?: number | null): void {
  const err = thrown(fn);
  expect(err.code).toBe(code);
  if (seq === null) expect(err.seq).toBeUndefined();
  else if (seq !== undefined) expect(err.seq).toBe(seq);
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const INVALID_UTF8 = ['ff', 'c328', 'c0af', 'eda080', 'f4908080', 'e282', '41' + 'ff'.repeat(40)];

// ---------------------------------------------------------------------------------------------
// TLV layer (1.3)

describe('ByteWriter and TLV records', () => {
  it('grows from a tiny buffer without losing or misplacing any byte', () => {
    // Regression: u8/u16/u32/u64/bytes read `this.buf` before room() replaced it, so a write that
    // made the buffer grow went into the old buffer (lost) or threw "offset is out of bounds".
    const w = new ByteWriter(1)
      .u8(0x01)
      .u16(0x0203)
      .u32(0x04050607)
      .u64(0x08090a0b0c0d)
      .bytes(fromHex('0e0f10111213'))
      .tlvU8(0x14, 0x15)
      .tlv(0x16, fromHex('17'))
      .u8(0x18);
    expect(toHex(w.finish())).toBe(
      '01' +
        '0203' +
        '04050607' +
        '000008090a0b0c0d' +
        '0e0f10111213' +
        '140000000115' +
        '160000000117' +
        '18',
    );
    expect(w.length).toBe(34);
    for (let initial = 1; initial <= 40; initial++) {
      const big = new ByteWriter(initial).u8(1).bytes(new Uint8Array(50).fill(7)).u32(0xffffffff);
      expect(toHex(big.finish())).toBe('01' + '07'.repeat(50) + 'ffffffff');
    }
  });

  it("writes TAG u8 | LENGTH u32 | VALUE, signed values in two's complement", () => {
    const w = new ByteWriter()
      .tlvI16(0x06, -2)
      .tlvI32(0x02, -1)
      .tlvU64(0x01, 2 ** 53 - 1);
    expect(toHex(w.finish())).toBe(
      '0600000002fffe' + '0200000004ffffffff' + '0100000008001fffffffffffff',
    );
  });

  it('decodeTlvs returns copies of the values in order', () => {
    const buf = fromHex('0100000002aabb' + 'ff00000000' + '8000000001cc');
    const recs = decodeTlvs(buf);
    buf.fill(0);
    expect(recs.map(([t, v]) => [t, toHex(v)])).toEqual([
      [0x01, 'aabb'],
      [0xff, ''],
      [0x80, 'cc'],
    ]);
  });

  it('decodeTlvs rejects a short header, a value past the end and a repeated tag', () => {
    expectError(() => decodeTlvs(fromHex('01000000')), 'VMCP_ERR_TLV_TRUNCATED');
    expectError(() => decodeTlvs(fromHex('0100000003aabb')), 'VMCP_ERR_TLV_TRUNCATED');
    expectError(() => decodeTlvs(fromHex('01ffffffffaabb')), 'VMCP_ERR_TLV_TRUNCATED');
    expectError(() => decodeTlvs(fromHex('0100000000' + '0100000000')), 'VMCP_ERR_TLV_REPEATED');
    expectError(() => decodeTlvs(fromHex('ff00000000' + 'ff00000000')), 'VMCP_ERR_TLV_REPEATED');
  });

  it('decodeTlvs honours start and end', () => {
    const buf = fromHex('eeee' + '0500000001aa' + 'eeee');
    expect(decodeTlvs(buf, 2, 8).map(([t, v]) => [t, toHex(v)])).toEqual([[0x05, 'aa']]);
    expect(decodeTlvs(buf, 2, 2)).toEqual([]);
  });

  it('a reused TlvReader forgets the tags seen in the previous message', () => {
    const r = new TlvReader();
    const msg = fromHex('0100000000' + '0200000000');
    for (let round = 0; round < 3; round++) {
      r.reset(msg, 0);
      const tags: number[] = [];
      while (r.next()) tags.push(r.tag);
      expect(tags).toEqual([1, 2]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// CONNECT

function connect(
  tlvs: (w: ByteWriter) => void,
  prefix: { magic?: number; min?: number; max?: number } = {},
): Uint8Array {
  const w = new ByteWriter();
  w.u32(prefix.magic ?? CONNECT_MAGIC)
    .u16(prefix.min ?? 1)
    .u16(prefix.max ?? 2);
  tlvs(w);
  return w.finish().slice();
}

const withId =
  (id = 'LSVAU2180N2183294') =>
  (w: ByteWriter): ByteWriter =>
    w.tlvString(0x01, id);

describe('CONNECT (2.1)', () => {
  it('decodes a minimal CONNECT', () => {
    expect(decodeConnect(connect(withId()))).toEqual({
      versionMin: 1,
      versionMax: 2,
      vehicleId: 'LSVAU2180N2183294',
    });
  });

  it('decodes every field', () => {
    const msg = decodeConnect(
      connect((w) =>
        withId('veh-1')(w)
          .tlvString(0x02, 'a.b.c')
          .tlvU16(0x03, 30)
          .tlvU32(0x04, 0xfffffffe)
          .tlvString(0x05, 'sdk/1.2 ✓'),
      ),
    );
    expect(msg).toEqual({
      versionMin: 1,
      versionMax: 2,
      vehicleId: 'veh-1',
      token: 'a.b.c',
      keepalive: 30,
      lastCommandSeq: 0xfffffffe,
      clientInfo: 'sdk/1.2 ✓',
    });
    const reg = decodeConnect(connect((w) => withId()(w).tlv(0x06, Uint8Array.of(0xde, 0xad))));
    expect(toHex(reg.credential!)).toBe('dead');
    expect(reg.token).toBeUndefined();
  });

  it('DATA shorter than 8 bytes is VMCP_ERR_SHORT_DATA', () => {
    for (let n = 0; n < 8; n++)
      expectError(() => decodeConnect(connect(withId()).subarray(0, n)), 'VMCP_ERR_SHORT_DATA');
    // Exactly the fixed prefix is long enough; it then lacks a VEHICLE_ID.
    expectError(() => decodeConnect(connect(() => undefined)), 'VMCP_ERR_VEHICLE_ID');
  });

  it('a wrong MAGIC is VMCP_ERR_BAD_MAGIC', () => {
    for (const magic of [0, 0x564d4351, 0x504d4356, 0xffffffff])
      expectError(() => decodeConnect(connect(withId(), { magic })), 'VMCP_ERR_BAD_MAGIC');
  });

  it('VERSION_MIN > VERSION_MAX is VMCP_ERR_VERSION_RANGE; equal is fine', () => {
    expectError(
      () => decodeConnect(connect(withId(), { min: 3, max: 2 })),
      'VMCP_ERR_VERSION_RANGE',
    );
    expectError(
      () => decodeConnect(connect(withId(), { min: 0xffff, max: 0 })),
      'VMCP_ERR_VERSION_RANGE',
    );
    expect(decodeConnect(connect(withId(), { min: 2, max: 2 })).versionMin).toBe(2);
    // Versions outside the gateway's range are negotiation (UNSUPPORTED_VERSION), not INVALID.
    expect(decodeConnect(connect(withId(), { min: 7, max: 9 })).versionMax).toBe(9);
  });

  it('VEHICLE_ID is required', () => {
    expectError(
      () => decodeConnect(connect((w) => w.tlvString(0x02, 'tok'))),
      'VMCP_ERR_VEHICLE_ID',
    );
  });

  it('VEHICLE_ID of 1–64 bytes of [A-Za-z0-9._:-] is accepted', () => {
    for (const id of ['a', 'Z', '0', '.', '_', ':', '-', 'aZ09._:-', 'x'.repeat(64)])
      expect(decodeConnect(connect(withId(id))).vehicleId).toBe(id);
  });

  it('VEHICLE_ID of length 0 or 65, or with another character, is VMCP_ERR_VEHICLE_ID', () => {
    for (const id of ['', 'x'.repeat(65), 'a b', 'a/b', 'a@b', 'a+b', 'é', 'a\u0000', 'a,b', '~'])
      expectError(() => decodeConnect(connect(withId(id))), 'VMCP_ERR_VEHICLE_ID');
    for (const bad of [0x00, 0x20, 0x2f, 0x40, 0x5b, 0x60, 0x7b, 0x7f, 0x80, 0xff])
      expectError(
        () => decodeConnect(connect((w) => w.tlv(0x01, Uint8Array.of(0x41, bad)))),
        'VMCP_ERR_VEHICLE_ID',
      );
  });

  it('KEEPALIVE must be a u16', () => {
    expect(decodeConnect(connect((w) => withId()(w).tlvU16(0x03, 0))).keepalive).toBe(0);
    for (const len of [0, 1, 3, 4])
      expectError(
        () => decodeConnect(connect((w) => withId()(w).tlv(0x03, new Uint8Array(len)))),
        'VMCP_ERR_TLV_SIZE',
      );
  });

  it('LAST_COMMAND_SEQ must be a u32', () => {
    for (const len of [0, 2, 3, 5, 8])
      expectError(
        () => decodeConnect(connect((w) => withId()(w).tlv(0x04, new Uint8Array(len)))),
        'VMCP_ERR_TLV_SIZE',
      );
  });

  it('CLIENT_INFO is at most 128 bytes of UTF-8', () => {
    const max = 'é'.repeat(64); // 128 bytes
    expect(decodeConnect(connect((w) => withId()(w).tlvString(0x05, max))).clientInfo).toBe(max);
    expectError(
      () => decodeConnect(connect((w) => withId()(w).tlvString(0x05, 'x'.repeat(129)))),
      'VMCP_ERR_VALUE_RANGE',
    );
    expectError(
      () => decodeConnect(connect((w) => withId()(w).tlvString(0x05, max + 'x'))),
      'VMCP_ERR_VALUE_RANGE',
    );
    for (const hex of INVALID_UTF8)
      expectError(
        () => decodeConnect(connect((w) => withId()(w).tlv(0x05, fromHex(hex)))),
        'VMCP_ERR_UTF8',
      );
  });

  it('TOKEN must be UTF-8', () => {
    for (const hex of INVALID_UTF8)
      expectError(
        () => decodeConnect(connect((w) => withId()(w).tlv(0x02, fromHex(hex)))),
        'VMCP_ERR_UTF8',
      );
  });

  it('TOKEN and CREDENTIAL together are VMCP_ERR_TOKEN_AND_CREDENTIAL, in either order', () => {
    expectError(
      () => decodeConnect(connect((w) => withId()(w).tlvString(0x02, 't').tlv(0x06, utf8('s')))),
      'VMCP_ERR_TOKEN_AND_CREDENTIAL',
    );
    expectError(
      () =>
        decodeConnect(
          connect((w) => w.tlv(0x06, utf8('s')).tlvString(0x02, 't').tlvString(0x01, 'v')),
        ),
      'VMCP_ERR_TOKEN_AND_CREDENTIAL',
    );
  });

  it('a repeated tag is VMCP_ERR_TLV_REPEATED', () => {
    expectError(
      () => decodeConnect(connect((w) => withId('a')(w).tlvString(0x01, 'a'))),
      'VMCP_ERR_TLV_REPEATED',
    );
    expectError(
      () => decodeConnect(connect((w) => withId()(w).tlvU16(0x03, 1).tlvU16(0x03, 2))),
      'VMCP_ERR_TLV_REPEATED',
    );
    expectError(
      () => decodeConnect(connect((w) => withId()(w).tlv(0x42, utf8('x')).tlv(0x42, utf8('y')))),
      'VMCP_ERR_TLV_REPEATED',
    );
  });

  it('a record running past the end is VMCP_ERR_TLV_TRUNCATED', () => {
    const full = connect(withId('abc'));
    for (let cut = 9; cut < full.length; cut++)
      expectError(() => decodeConnect(full.subarray(0, cut)), 'VMCP_ERR_TLV_TRUNCATED');
  });

  it('unknown tags are skipped, whatever their size', () => {
    const msg = decodeConnect(
      connect((w) =>
        w
          .tlv(0x00, new Uint8Array(3))
          .tlv(0x07, new Uint8Array(300))
          .tlvString(0x01, 'veh')
          .tlv(0x7f, new Uint8Array(0))
          .tlv(0xff, fromHex('ff')),
      ),
    );
    expect(msg).toEqual({ versionMin: 1, versionMax: 2, vehicleId: 'veh' });
  });

  it('a long (fragmented) CONNECT with a big token decodes after reassembly', () => {
    const token = 'h.' + 'p'.repeat(900) + '.s';
    const data = connect((w) => withId()(w).tlvString(0x02, token));
    const got: Uint8Array[] = [];
    const d = new FrameDecoder(
      new MessageAssembler({
        onMessage: (code, m) => {
          expect(code).toBe(Cmd.CONNECT);
          got.push(m.slice());
        },
        onBrokenRun: () => expect.fail('broken run'),
        onTooLarge: () => expect.fail('too large'),
        onBadFrame: () => expect.fail('bad frame'),
        onGarbage: () => expect.fail('garbage'),
      }),
    );
    d.push(encodeMessage(Cmd.CONNECT, data));
    expect(got.length).toBe(1);
    expect(decodeConnect(got[0]!).token).toBe(token);
  });
});

// ---------------------------------------------------------------------------------------------
// TELEMETRY and EVENT

const SEQ = 0x01020304;
const TS = 1_764_000_000_000;

function uplink(seq: number, tlvs: (w: ByteWriter) => void): Uint8Array {
  const w = new ByteWriter().u32(seq);
  tlvs(w);
  return w.finish().slice();
}

const ts = (w: ByteWriter): ByteWriter => w.tlvU64(0x01, TS);

describe('TELEMETRY (3.1)', () => {
  it('decodes every known tag, signed ones included', () => {
    const msg = decodeTelemetry(
      uplink(SEQ, (w) =>
        ts(w)
          .tlvI32(0x02, -312304000)
          .tlvI32(0x03, -1214737000)
          .tlvU16(0x04, 653)
          .tlvU16(0x05, 900)
          .tlvI16(0x06, -12)
          .tlvU32(0x07, 102345)
          .tlvU8(0x08, 80)
          .tlvU32(0x09, 0xffffffff)
          .tlvU16(0x0a, 2100)
          .tlvU16(0x0b, 12600),
      ),
    );
    expect(msg).toEqual({
      seq: SEQ,
      timestamp: TS,
      latitude: -312304000,
      longitude: -1214737000,
      speed: 653,
      heading: 900,
      altitude: -12,
      odometer: 102345,
      fuelOrSoc: 80,
      statusFlags: 0xffffffff,
      engineRpm: 2100,
      batteryMv: 12600,
    });
  });

  it('reads SEQ as an unsigned u32', () => {
    expect(decodeTelemetry(uplink(0xffffffff, ts)).seq).toBe(0xffffffff);
  });

  it('DATA shorter than 4 bytes is VMCP_ERR_SHORT_DATA with no seq', () => {
    for (let n = 0; n < 4; n++)
      expectError(() => decodeTelemetry(new Uint8Array(n)), 'VMCP_ERR_SHORT_DATA', null);
  });

  it('a missing TIMESTAMP is VMCP_ERR_MISSING_TAG carrying the seq', () => {
    expectError(() => decodeTelemetry(uplink(SEQ, () => undefined)), 'VMCP_ERR_MISSING_TAG', SEQ);
    expectError(
      () => decodeTelemetry(uplink(SEQ, (w) => w.tlvU16(0x04, 1))),
      'VMCP_ERR_MISSING_TAG',
      SEQ,
    );
  });

  it('TIMESTAMP 0 is a timestamp, not a missing one', () => {
    expect(decodeTelemetry(uplink(1, (w) => w.tlvU64(0x01, 0))).timestamp).toBe(0);
  });

  it('a TIMESTAMP past 2^53 − 1 is VMCP_ERR_VALUE_RANGE', () => {
    expectError(
      () => decodeTelemetry(uplink(SEQ, (w) => w.tlv(0x01, fromHex('ffffffffffffffff')))),
      'VMCP_ERR_VALUE_RANGE',
      SEQ,
    );
  });

  it('latitude is within ±90°', () => {
    for (const ok of [900_000_000, -900_000_000, 0])
      expect(decodeTelemetry(uplink(SEQ, (w) => ts(w).tlvI32(0x02, ok))).latitude).toBe(ok);
    for (const bad of [900_000_001, -900_000_001, 0x7fffffff, -0x80000000])
      expectError(
        () => decodeTelemetry(uplink(SEQ, (w) => ts(w).tlvI32(0x02, bad))),
        'VMCP_ERR_VALUE_RANGE',
        SEQ,
      );
  });

  it('longitude is within ±180°', () => {
    for (const ok of [1_800_000_000, -1_800_000_000])
      expect(decodeTelemetry(uplink(SEQ, (w) => ts(w).tlvI32(0x03, ok))).longitude).toBe(ok);
    for (const bad of [1_800_000_001, -1_800_000_001, 0x7fffffff, -0x80000000])
      expectError(
        () => decodeTelemetry(uplink(SEQ, (w) => ts(w).tlvI32(0x03, bad))),
        'VMCP_ERR_VALUE_RANGE',
        SEQ,
      );
  });

  it('heading is 0–3599', () => {
    expect(decodeTelemetry(uplink(SEQ, (w) => ts(w).tlvU16(0x05, 3599))).heading).toBe(3599);
    for (const bad of [3600, 0xffff])
      expectError(
        () => decodeTelemetry(uplink(SEQ, (w) => ts(w).tlvU16(0x05, bad))),
        'VMCP_ERR_VALUE_RANGE',
        SEQ,
      );
  });

  it('fuel/SoC is 0–100', () => {
    expect(decodeTelemetry(uplink(SEQ, (w) => ts(w).tlvU8(0x08, 100))).fuelOrSoc).toBe(100);
    for (const bad of [101, 255])
      expectError(
        () => decodeTelemetry(uplink(SEQ, (w) => ts(w).tlvU8(0x08, bad))),
        'VMCP_ERR_VALUE_RANGE',
        SEQ,
      );
  });

  it('a known tag of the wrong size is VMCP_ERR_TLV_SIZE carrying the seq', () => {
    const sizes: [number, number][] = [
      [0x01, 8],
      [0x02, 4],
      [0x03, 4],
      [0x04, 2],
      [0x05, 2],
      [0x06, 2],
      [0x07, 4],
      [0x08, 1],
      [0x09, 4],
      [0x0a, 2],
      [0x0b, 2],
    ];
    for (const [tag, size] of sizes) {
      for (const wrong of [0, size - 1, size + 1, 2 * size]) {
        if (wrong === size) continue;
        const data = uplink(SEQ, (w) => {
          if (tag !== 0x01) ts(w);
          w.tlv(tag, new Uint8Array(wrong));
        });
        expectError(() => decodeTelemetry(data), 'VMCP_ERR_TLV_SIZE', SEQ);
      }
    }
  });

  it('a repeated tag is VMCP_ERR_TLV_REPEATED carrying the seq', () => {
    expectError(() => decodeTelemetry(uplink(SEQ, (w) => ts(ts(w)))), 'VMCP_ERR_TLV_REPEATED', SEQ);
    expectError(
      () => decodeTelemetry(uplink(SEQ, (w) => ts(w).tlvU16(0x04, 1).tlvU16(0x04, 1))),
      'VMCP_ERR_TLV_REPEATED',
      SEQ,
    );
    expectError(
      () =>
        decodeTelemetry(
          uplink(SEQ, (w) => ts(w).tlv(0x80, fromHex('01')).tlv(0x80, fromHex('02'))),
        ),
      'VMCP_ERR_TLV_REPEATED',
      SEQ,
    );
  });

  it('a truncated record is VMCP_ERR_TLV_TRUNCATED carrying the seq', () => {
    const full = uplink(SEQ, (w) => ts(w).tlvU16(0x04, 1));
    const boundary = 4 + 5 + 8; // after the TIMESTAMP record the DATA is complete and valid
    expect(decodeTelemetry(full.subarray(0, boundary)).speed).toBeUndefined();
    for (let cut = 5; cut < full.length; cut++)
      if (cut !== boundary)
        expectError(() => decodeTelemetry(full.subarray(0, cut)), 'VMCP_ERR_TLV_TRUNCATED', SEQ);
  });

  it('tags 0x0C–0x7F and 0xFF are skipped, whatever their size', () => {
    const msg = decodeTelemetry(
      uplink(SEQ, (w) => {
        w.tlv(0xff, new Uint8Array(3));
        ts(w);
        for (let tag = 0x0c; tag <= 0x7f; tag++) w.tlv(tag, new Uint8Array(tag % 5));
      }),
    );
    expect(msg).toEqual({ seq: SEQ, timestamp: TS });
    expect(msg.vendor).toBeUndefined();
  });

  it('vendor tags 0x80–0xFE are kept as lower-case hex keyed "0x80" … "0xfe"', () => {
    const msg = decodeTelemetry(
      uplink(SEQ, (w) => {
        ts(w);
        for (let tag = 0x80; tag <= 0xfe; tag++) w.tlv(tag, Uint8Array.of(tag, 0xab));
      }),
    );
    const vendor = msg.vendor!;
    expect(Object.keys(vendor).length).toBe(0xfe - 0x80 + 1);
    expect(vendor['0x80']).toBe('80ab');
    expect(vendor['0xab']).toBe('abab');
    expect(vendor['0xfe']).toBe('feab');
    expect(vendor['0xff']).toBeUndefined();
    for (const [k, v] of Object.entries(vendor)) {
      expect(k).toMatch(/^0x[89a-f][0-9a-f]$/);
      expect(v).toMatch(/^[0-9a-f]*$/);
    }
  });

  it('an empty vendor value is kept as ""', () => {
    const msg = decodeTelemetry(uplink(SEQ, (w) => ts(w).tlv(0xc0, new Uint8Array(0))));
    expect(msg.vendor).toEqual({ '0xc0': '' });
  });
});

describe('EVENT (3.1)', () => {
  it('decodes every event tag', () => {
    const msg = decodeEvent(
      uplink(SEQ, (w) =>
        ts(w)
          .tlvI32(0x02, 312304000)
          .tlvI32(0x03, 1214737000)
          .tlvU16(0x10, 0x0001)
          .tlvU8(0x11, 3)
          .tlvString(0x12, 'front impact ⚠')
          .tlv(0x9a, fromHex('DEAD')),
      ),
    );
    expect(msg).toEqual({
      seq: SEQ,
      timestamp: TS,
      latitude: 312304000,
      longitude: 1214737000,
      eventCode: 1,
      severity: 3,
      detail: 'front impact ⚠',
      vendor: { '0x9a': 'dead' },
    });
  });

  it('DATA shorter than 4 bytes is VMCP_ERR_SHORT_DATA with no seq', () => {
    for (let n = 0; n < 4; n++)
      expectError(() => decodeEvent(new Uint8Array(n)), 'VMCP_ERR_SHORT_DATA', null);
  });

  it('a missing TIMESTAMP is VMCP_ERR_MISSING_TAG carrying the seq', () => {
    expectError(
      () => decodeEvent(uplink(SEQ, (w) => w.tlvU16(0x10, 2))),
      'VMCP_ERR_MISSING_TAG',
      SEQ,
    );
  });

  it('severity is 0–3', () => {
    for (const ok of [0, 3])
      expect(decodeEvent(uplink(SEQ, (w) => ts(w).tlvU8(0x11, ok))).severity).toBe(ok);
    for (const bad of [4, 255])
      expectError(
        () => decodeEvent(uplink(SEQ, (w) => ts(w).tlvU8(0x11, bad))),
        'VMCP_ERR_VALUE_RANGE',
        SEQ,
      );
  });

  it('DETAIL that is not UTF-8 is VMCP_ERR_UTF8 carrying the seq', () => {
    for (const hex of INVALID_UTF8)
      expectError(
        () => decodeEvent(uplink(SEQ, (w) => ts(w).tlv(0x12, fromHex(hex)))),
        'VMCP_ERR_UTF8',
        SEQ,
      );
  });

  it('EVENT_CODE and SEVERITY of the wrong size are VMCP_ERR_TLV_SIZE', () => {
    expectError(
      () => decodeEvent(uplink(SEQ, (w) => ts(w).tlv(0x10, new Uint8Array(1)))),
      'VMCP_ERR_TLV_SIZE',
      SEQ,
    );
    expectError(
      () => decodeEvent(uplink(SEQ, (w) => ts(w).tlv(0x11, new Uint8Array(2)))),
      'VMCP_ERR_TLV_SIZE',
      SEQ,
    );
  });

  it('position out of range is VMCP_ERR_VALUE_RANGE', () => {
    expectError(
      () => decodeEvent(uplink(SEQ, (w) => ts(w).tlvI32(0x02, -900_000_001))),
      'VMCP_ERR_VALUE_RANGE',
      SEQ,
    );
    expectError(
      () => decodeEvent(uplink(SEQ, (w) => ts(w).tlvI32(0x03, 1_800_000_001))),
      'VMCP_ERR_VALUE_RANGE',
      SEQ,
    );
  });

  it('telemetry-only tags (even invalid ones) and unlisted tags are skipped', () => {
    const msg = decodeEvent(
      uplink(SEQ, (w) =>
        ts(w)
          .tlvU16(0x04, 1)
          .tlvU16(0x05, 3600) // an out-of-range heading: not an event tag
          .tlv(0x06, new Uint8Array(7))
          .tlvU8(0x08, 200)
          .tlv(0x0b, new Uint8Array(0))
          .tlv(0x13, new Uint8Array(1))
          .tlv(0x7f, new Uint8Array(2))
          .tlv(0xff, new Uint8Array(9)),
      ),
    );
    expect(msg).toEqual({ seq: SEQ, timestamp: TS });
  });
});

// ---------------------------------------------------------------------------------------------
// TELEMETRY_BATCH

function sampleBytes(tlvs: (w: ByteWriter) => void): Uint8Array {
  const w = new ByteWriter();
  tlvs(w);
  return w.finish().slice();
}

function batch(firstSeq: number, count: number, samples: Uint8Array[], trailing = ''): Uint8Array {
  const w = new ByteWriter().u32(firstSeq).u8(count);
  for (const s of samples) w.u16(s.length).bytes(s);
  w.bytes(fromHex(trailing));
  return w.finish().slice();
}

describe('TELEMETRY_BATCH (5)', () => {
  const s1 = sampleBytes((w) => ts(w).tlvU16(0x04, 10));
  const s2 = sampleBytes((w) => w.tlvU64(0x01, TS + 1000).tlv(0x81, fromHex('01')));

  it('decodes the samples in order', () => {
    expect(decodeTelemetryBatch(batch(100, 2, [s1, s2]))).toEqual({
      firstSeq: 100,
      count: 2,
      samples: [
        { timestamp: TS, speed: 10 },
        { timestamp: TS + 1000, vendor: { '0x81': '01' } },
      ],
    });
  });

  it('splitTelemetryBatch gives each sample’s TLV range', () => {
    const data = batch(7, 3, [s1, new Uint8Array(0), s2]);
    const a = 5 + 2;
    const b = a + s1.length + 2;
    const c = b + 2;
    expect(splitTelemetryBatch(data)).toEqual({
      firstSeq: 7,
      count: 3,
      ranges: [a, a + s1.length, b, b, c, c + s2.length],
    });
  });

  it('DATA shorter than FIRST_SEQ and COUNT is VMCP_ERR_SHORT_DATA, with FIRST_SEQ once readable', () => {
    for (let n = 0; n < 4; n++)
      expectError(() => splitTelemetryBatch(new Uint8Array(n)), 'VMCP_ERR_SHORT_DATA', null);
    expectError(() => splitTelemetryBatch(Uint8Array.of(0, 0, 0, 9)), 'VMCP_ERR_SHORT_DATA', 9);
  });

  it('COUNT 0 is an error carrying FIRST_SEQ', () => {
    expectError(() => splitTelemetryBatch(batch(55, 0, [])), 'VMCP_ERR_VALUE_RANGE', 55);
    expectError(() => decodeTelemetryBatch(batch(55, 0, [])), 'VMCP_ERR_VALUE_RANGE', 55);
  });

  it('a sample running past the end is VMCP_ERR_TLV_TRUNCATED carrying FIRST_SEQ', () => {
    // COUNT says 2, one sample present.
    expectError(() => splitTelemetryBatch(batch(9, 2, [s1])), 'VMCP_ERR_TLV_TRUNCATED', 9);
    // The sample's LEN is cut short, or its TLVs are.
    const full = batch(9, 1, [s1]);
    for (let cut = 6; cut < full.length; cut++)
      expectError(() => splitTelemetryBatch(full.subarray(0, cut)), 'VMCP_ERR_TLV_TRUNCATED', 9);
  });

  it('bytes after the last sample are VMCP_ERR_TRAILING_BYTES carrying FIRST_SEQ', () => {
    expectError(() => splitTelemetryBatch(batch(12, 1, [s1], '00')), 'VMCP_ERR_TRAILING_BYTES', 12);
    expectError(
      () => decodeTelemetryBatch(batch(12, 2, [s1, s2], '0000')),
      'VMCP_ERR_TRAILING_BYTES',
      12,
    );
  });

  it('an invalid sample carries its own seq (FIRST_SEQ + index)', () => {
    const bad = sampleBytes((w) => ts(w).tlvU8(0x08, 101));
    expectError(
      () => decodeTelemetryBatch(batch(20, 3, [s1, s2, bad])),
      'VMCP_ERR_VALUE_RANGE',
      22,
    );
    expectError(
      () => decodeTelemetryBatch(batch(20, 2, [new Uint8Array(0), s1])),
      'VMCP_ERR_MISSING_TAG',
      20,
    );
  });

  it('encodeTelemetryBatch holds 1–255 samples', () => {
    const sample: TelemetrySample = { timestamp: TS };
    expect(() => encodeTelemetryBatch({ firstSeq: 1, samples: [] })).toThrow(RangeError);
    expect(() =>
      encodeTelemetryBatch({ firstSeq: 1, samples: new Array<TelemetrySample>(256).fill(sample) }),
    ).toThrow(RangeError);
    const data = encodeTelemetryBatch({
      firstSeq: 1,
      samples: new Array<TelemetrySample>(255).fill(sample),
    });
    expect(decodeTelemetryBatch(data).count).toBe(255);
  });
});

// ---------------------------------------------------------------------------------------------
// Downlink and control

describe('COMMAND (4.1)', () => {
  const base = (w: ByteWriter): ByteWriter =>
    w.tlvString(0x01, 'cmd-1').tlvString(0x02, 'door.lock').tlvU64(0x04, TS);

  it('requires COMMAND_ID, NAME and EXPIRES_AT', () => {
    expect(decodeCommand(uplink(3, base))).toEqual({
      seq: 3,
      commandId: 'cmd-1',
      name: 'door.lock',
      expiresAt: TS,
    });
    expectError(
      () => decodeCommand(uplink(3, (w) => w.tlvString(0x02, 'n').tlvU64(0x04, TS))),
      'VMCP_ERR_MISSING_TAG',
      3,
    );
    expectError(
      () => decodeCommand(uplink(3, (w) => w.tlvString(0x01, 'i').tlvU64(0x04, TS))),
      'VMCP_ERR_MISSING_TAG',
      3,
    );
    expectError(
      () => decodeCommand(uplink(3, (w) => w.tlvString(0x01, 'i').tlvString(0x02, 'n'))),
      'VMCP_ERR_MISSING_TAG',
      3,
    );
  });

  it('short DATA, bad strings and a wrong-size EXPIRES_AT are errors', () => {
    expectError(() => decodeCommand(new Uint8Array(3)), 'VMCP_ERR_SHORT_DATA');
    expectError(
      () => decodeCommand(uplink(3, (w) => base(w).tlv(0x03, fromHex('ff')))),
      'VMCP_ERR_UTF8',
    );
    expectError(
      () =>
        decodeCommand(
          uplink(3, (w) => w.tlvString(0x01, 'i').tlvString(0x02, 'n').tlvU32(0x04, 1)),
        ),
      'VMCP_ERR_TLV_SIZE',
    );
  });
});

describe('COMMAND_ACK (4.2)', () => {
  it('DATA shorter than 5 bytes is VMCP_ERR_SHORT_DATA, with the SEQ once it is readable (6: REF_SEQ)', () => {
    for (let n = 0; n < 4; n++)
      expectError(() => decodeCommandAck(new Uint8Array(n)), 'VMCP_ERR_SHORT_DATA', null);
    expectError(() => decodeCommandAck(Uint8Array.of(0, 0, 1, 2)), 'VMCP_ERR_SHORT_DATA', 258);
  });

  it('RESULT is 0–5', () => {
    for (let r = 0; r <= 5; r++) expect(decodeCommandAck(uplink(4, (w) => w.u8(r))).result).toBe(r);
    for (const bad of [6, 0xff])
      expectError(() => decodeCommandAck(uplink(4, (w) => w.u8(bad))), 'VMCP_ERR_VALUE_RANGE', 4);
  });

  it('keeps a RESULT_PAYLOAD that is not UTF-8 as raw bytes', () => {
    const msg = decodeCommandAck(uplink(4, (w) => w.u8(1).tlv(0x01, fromHex('ff00c3'))));
    expect(msg.resultPayload).toBeInstanceOf(Uint8Array);
    expect(toHex(msg.resultPayload!)).toBe('ff00c3');
  });

  it('a MESSAGE that is not UTF-8, or a repeated tag, is an error carrying the seq', () => {
    expectError(
      () => decodeCommandAck(uplink(4, (w) => w.u8(1).tlv(0x02, fromHex('c0af')))),
      'VMCP_ERR_UTF8',
      4,
    );
    expectError(
      () => decodeCommandAck(uplink(4, (w) => w.u8(0).tlv(0x01, utf8('1')).tlv(0x01, utf8('2')))),
      'VMCP_ERR_TLV_REPEATED',
      4,
    );
    expectError(
      () => decodeCommandAck(fromHex('00000004' + '00' + '01000000')),
      'VMCP_ERR_TLV_TRUNCATED',
      4,
    );
  });
});

describe('QUERY, PING and fixed-size messages (2.4, 4.3, 5, 6)', () => {
  it('QUERY DATA is exactly one byte', () => {
    expect(decodeQuery(Uint8Array.of(2))).toEqual({ query: 2 });
    for (const n of [0, 2, 8])
      expectError(() => decodeQuery(new Uint8Array(n)), 'VMCP_ERR_BAD_LENGTH');
  });

  it('PING and PONG carry 0–8 bytes', () => {
    for (const code of [Cmd.PING, Cmd.PONG]) {
      const codec = CODECS[code]!;
      for (let n = 0; n <= 8; n++) {
        const data = Uint8Array.from({ length: n }, (_, i) => i + 1);
        expect(codec.decode(data)).toEqual({ data });
      }
      expectError(() => codec.decode(new Uint8Array(9)), 'VMCP_ERR_BAD_LENGTH');
      expectError(() => codec.decode(new Uint8Array(255)), 'VMCP_ERR_BAD_LENGTH');
    }
  });

  it('PING decode copies DATA (the frame view is only valid during the call)', () => {
    const data = Uint8Array.of(1, 2);
    const msg = CODECS[Cmd.PING]!.decode(data) as { data: Uint8Array };
    data.fill(0);
    expect(toHex(msg.data)).toBe('0102');
  });

  it('fixed prefixes: DATA too short is VMCP_ERR_SHORT_DATA', () => {
    const minimum: [(d: Uint8Array) => unknown, number][] = [
      [decodeSensorRead, 2],
      [decodeSensorData, 3],
      [decodeUplinkAck, 5],
      [decodeConnack, 3],
      [decodeError, 2],
      [decodeDisconnect, 1],
      [decodeQueryResult, 2],
    ];
    for (const [decode, min] of minimum) {
      for (let n = 0; n < min; n++)
        expectError(() => decode(new Uint8Array(n)), 'VMCP_ERR_SHORT_DATA');
      expect(() => decode(new Uint8Array(min).fill(1))).not.toThrow();
    }
  });

  it('SENSOR_DATA keeps VALUE as a copy', () => {
    const data = fromHex('0102000a0b');
    const msg = decodeSensorData(data);
    data.fill(0);
    expect(msg).toEqual({ channel: 1, tag: 2, status: 0, value: fromHex('0a0b') });
  });

  it('writeUplinkAckFrame writes the same 10 bytes as encodeMessage(UPLINK_ACK)', () => {
    const out = new Uint8Array(14);
    expect(writeUplinkAckFrame(out, 2, 0xdeadbeef, 3)).toBe(2 + UPLINK_ACK_FRAME_BYTES);
    const expected = encodeMessage(Cmd.UPLINK_ACK, fromHex('deadbeef03'));
    expect(toHex(out.subarray(2, 12))).toBe(toHex(expected));
    expect(decodeUplinkAck(out.subarray(5, 10))).toEqual({ seq: 0xdeadbeef, status: 3 });
  });
});

// ---------------------------------------------------------------------------------------------
// Round trips of every message type

const ROUND_TRIP: Record<number, unknown[]> = {
  [Cmd.PING]: [{ data: new Uint8Array(0) }, { data: fromHex('0000019a3b2c1d0e') }],
  [Cmd.PONG]: [{ data: fromHex('01') }],
  [Cmd.SENSOR_READ]: [{ channel: 255, tag: 0 }],
  [Cmd.SENSOR_DATA]: [
    { channel: 1, tag: 7, status: 0, value: fromHex('00ff55') },
    { channel: 2, tag: 8, status: 2, value: new Uint8Array(400).fill(0x55) },
  ],
  [Cmd.QUERY]: [{ query: 1 }, { query: 0xff }],
  [Cmd.QUERY_RESULT]: [
    { query: 1, status: 0, serverTime: TS },
    { query: 2, status: 0, pendingCommands: 17 },
    { query: 3, status: 0, sessionId: 's-1', keepalive: 60 },
    { query: 9, status: 1 },
  ],
  [Cmd.ERROR]: [
    { code: 1, refCmd: 0 },
    { code: 2, refCmd: 0x20, message: 'bad latitude', refSeq: 42 },
  ],
  [Cmd.DISCONNECT]: [
    { reason: 0 },
    { reason: 1, message: 'draining', redirect: 'gw2.example:7700', retryAfterMs: 5000 },
  ],
  [Cmd.CONNECT]: [
    { versionMin: 1, versionMax: 2, vehicleId: 'LSVAU2180N2183294', token: 'x'.repeat(600) },
    {
      versionMin: 1,
      versionMax: 1,
      vehicleId: 'a:b.c_d-e',
      credential: utf8('s3cret'),
      keepalive: 0,
      lastCommandSeq: 0xffffffff,
      clientInfo: 'fw 1.0 ✓',
    },
  ],
  [Cmd.CONNACK]: [
    {
      status: 0,
      version: 2,
      sessionId: 'sess',
      keepalive: 60,
      nextUplinkSeq: 1,
      token: 'jwt',
      serverTime: TS,
    },
    { status: 4, version: 0, reason: 'busy', redirect: 'h:1', retryAfterMs: 0xffffffff },
  ],
  [Cmd.TELEMETRY]: [
    { seq: 1, timestamp: TS },
    {
      seq: 0xffffffff,
      timestamp: 2 ** 53 - 1,
      latitude: -900_000_000,
      longitude: 1_800_000_000,
      speed: 0xffff,
      heading: 3599,
      altitude: -32768,
      odometer: 0xffffffff,
      fuelOrSoc: 100,
      statusFlags: 15,
      engineRpm: 0,
      batteryMv: 12600,
      vendor: { '0x80': 'dead', '0xfe': '' },
    },
  ],
  [Cmd.EVENT]: [
    {
      seq: 9,
      timestamp: TS,
      latitude: 1,
      longitude: -1,
      eventCode: 0xffff,
      severity: 0,
      detail: 'ok ✓',
      vendor: { '0x90': '0102' },
    },
  ],
  [Cmd.UPLINK_ACK]: [{ seq: 0xffffffff, status: 5 }],
  [Cmd.TELEMETRY_BATCH]: [
    {
      firstSeq: 10,
      count: 3,
      samples: [
        { timestamp: TS },
        { timestamp: TS + 1, altitude: 32767, vendor: { '0xa0': 'ff' } },
        { timestamp: TS + 2, latitude: 1, longitude: 2 },
      ],
    },
  ],
  [Cmd.COMMAND]: [
    { seq: 1, commandId: 'c1', name: 'horn.honk', expiresAt: TS },
    {
      seq: 2,
      commandId: 'c2',
      name: 'config.set',
      params: JSON.stringify({ k: 'v'.repeat(500) }),
      expiresAt: TS,
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    },
  ],
  [Cmd.COMMAND_ACK]: [
    { seq: 1, result: 0, resultPayload: utf8('{"ok":true}'), message: 'done' },
    { seq: 2, result: 5 },
  ],
};

describe('round trips', () => {
  it('there is a round-trip sample for every message codec', () => {
    expect(Object.keys(ROUND_TRIP).sort()).toEqual(Object.keys(MESSAGE_CODECS).sort());
  });

  for (const [code, samples] of Object.entries(ROUND_TRIP)) {
    const codec = CODECS[Number(code)]!;
    it(`0x${Number(code).toString(16).padStart(2, '0')}: decode(encode(m)) equals m, also over the wire`, () => {
      for (const msg of samples) {
        const data = codec.encode(msg as never);
        expect(codec.decode(data)).toEqual(msg);
        const got: [number, Uint8Array][] = [];
        const d = new FrameDecoder(
          new MessageAssembler({
            onMessage: (c, m) => got.push([c, m.slice()]),
            onBrokenRun: () => expect.fail('broken run'),
            onTooLarge: () => expect.fail('too large'),
            onBadFrame: () => expect.fail('bad frame'),
            onGarbage: () => expect.fail('garbage'),
          }),
        );
        for (const b of encodeMessage(Number(code), data)) d.push(Uint8Array.of(b));
        expect(got.length).toBe(1);
        expect(got[0]![0]).toBe(Number(code));
        expect(codec.decode(got[0]![1])).toEqual(msg);
      }
    });
  }

  it('encodes fields in the documented layout (TELEMETRY: SEQ then ascending tags)', () => {
    const data = CODECS[Cmd.TELEMETRY]!.encode({
      seq: 2,
      timestamp: 1,
      speed: 3,
      vendor: { '0x81': 'aa' },
    } as never);
    expect(toHex(data)).toBe(
      '00000002' + '01' + '00000008' + '0000000000000001' + '04000000020003' + '8100000001aa',
    );
  });
});
