// mergeTelemetry: a vehicle's latest state follows its telemetry exactly as Object.assign of each
// sample's fields would, for every field the codec can produce.
import { describe, expect, it } from 'vitest';
import {
  ByteWriter,
  decodeTelemetrySample,
  mergeTelemetry,
  telemetryData,
  type RecordData,
} from '../../src/protocol/index.js';

/** A sample's TLVs with the tags in `tags` (1 = timestamp always), values varied by `n`. */
function sampleTlvs(tags: readonly number[], n: number): Uint8Array {
  const w = new ByteWriter().tlvU64(0x01, 1_764_000_000_000 + n);
  for (const tag of tags) {
    if (tag === 0x02) w.tlvI32(0x02, -312304000 + n);
    if (tag === 0x03) w.tlvI32(0x03, 1214737000 - n);
    if (tag === 0x04) w.tlvU16(0x04, (n * 7) % 3000);
    if (tag === 0x05) w.tlvU16(0x05, (n * 13) % 3600);
    if (tag === 0x06) w.tlvI16(0x06, -12 + n);
    if (tag === 0x07) w.tlvU32(0x07, 102345 + n);
    if (tag === 0x08) w.tlvU8(0x08, n % 101);
    if (tag === 0x09) w.tlvU32(0x09, n);
    if (tag === 0x0a) w.tlvU16(0x0a, 800 + n);
    if (tag === 0x0b) w.tlvU16(0x0b, 12600 + n);
    if (tag === 0x80) w.tlv(0x80, new Uint8Array([n & 0xff, 0xab]));
    if (tag === 0x9f) w.tlv(0x9f, new Uint8Array([1, 2, 3]));
  }
  return w.finish().slice();
}

const ALL_TAGS = [0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x80, 0x9f];

function dataOf(tags: readonly number[], n: number): RecordData {
  const tlvs = sampleTlvs(tags, n);
  return telemetryData(decodeTelemetrySample(tlvs, 0, tlvs.length));
}

describe('mergeTelemetry', () => {
  it('copies every field a sample with every tag carries', () => {
    const d = dataOf(ALL_TAGS, 5);
    // The fixture really exercises every field telemetryData can set (vendor included).
    expect(Object.keys(d).sort()).toEqual(
      [
        'altitudeM',
        'batteryMv',
        'engineRpm',
        'fuelOrSocPct',
        'headingDeg',
        'latitude',
        'longitude',
        'odometerKm',
        'speedKmh',
        'statusFlags',
        'vendor',
      ].sort(),
    );
    const latest: RecordData = {};
    mergeTelemetry(latest, d);
    expect(latest).toStrictEqual(d);
  });

  it('follows Object.assign over a stream of partial samples, older fields kept', () => {
    let x = 12345;
    const rand = (): number => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
    const merged: RecordData = { detail: 'kept: not a telemetry field' };
    const assigned: RecordData = { detail: 'kept: not a telemetry field' };
    for (let n = 0; n < 500; n++) {
      const tags = ALL_TAGS.filter(() => rand() < 0.4);
      const d = dataOf(tags, n);
      mergeTelemetry(merged, d);
      Object.assign(assigned, d);
      expect(merged).toStrictEqual(assigned);
    }
  });
});
