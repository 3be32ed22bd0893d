// The simulator's hot-path encoders: a TELEMETRY sample's TLVs and a whole single-frame uplink message
// written straight into a caller's buffer, with no ByteWriter and no allocation. The bytes are exactly
// what the codec writes (writeTelemetrySample, writeMessage); test/sim/encode.test.ts checks that.
import {
  FRAME_OVERHEAD,
  MAX_FRAME_DATA,
  SOF,
  TLV_HEADER,
  UplinkTag,
  crc16,
  type TelemetrySample,
} from '../protocol/index.js';

/** Most bytes writeTelemetryTlvs writes: every field present (11 TLVs, 90 bytes). */
export const TELEMETRY_TLVS_MAX = 11 * TLV_HEADER + 8 + 4 + 4 + 2 + 2 + 2 + 4 + 1 + 4 + 2 + 2;

function header(out: Uint8Array, o: number, tag: number, length: number): void {
  out[o] = tag;
  out[o + 1] = 0;
  out[o + 2] = 0;
  out[o + 3] = 0;
  out[o + 4] = length;
}

function u16(out: Uint8Array, o: number, tag: number, v: number): number {
  header(out, o, tag, 2);
  v &= 0xffff;
  out[o + 5] = v >>> 8;
  out[o + 6] = v;
  return o + 7;
}

function u32(out: Uint8Array, o: number, tag: number, v: number): number {
  header(out, o, tag, 4);
  v >>>= 0;
  out[o + 5] = v >>> 24;
  out[o + 6] = v >>> 16;
  out[o + 7] = v >>> 8;
  out[o + 8] = v;
  return o + 9;
}

/**
 * Writes the TLVs of a telemetry sample (without SEQ) into `out` at `o`, as writeTelemetrySample does
 * (same tags, order, widths; absent fields skipped); returns the offset after them. Vendor TLVs are not
 * written: the simulator's samples have none. `out` needs TELEMETRY_TLVS_MAX bytes of room.
 */
export function writeTelemetryTlvs(
  out: Uint8Array,
  o: number,
  s: Omit<TelemetrySample, 'vendor'>,
): number {
  header(out, o, UplinkTag.TIMESTAMP, 8);
  const ts = s.timestamp;
  const hi = Math.floor(ts / 0x1_0000_0000);
  const lo = ts >>> 0;
  out[o + 5] = hi >>> 24;
  out[o + 6] = hi >>> 16;
  out[o + 7] = hi >>> 8;
  out[o + 8] = hi;
  out[o + 9] = lo >>> 24;
  out[o + 10] = lo >>> 16;
  out[o + 11] = lo >>> 8;
  out[o + 12] = lo;
  o += 13;
  if (s.latitude !== undefined) o = u32(out, o, UplinkTag.LATITUDE, s.latitude);
  if (s.longitude !== undefined) o = u32(out, o, UplinkTag.LONGITUDE, s.longitude);
  if (s.speed !== undefined) o = u16(out, o, UplinkTag.SPEED, s.speed);
  if (s.heading !== undefined) o = u16(out, o, UplinkTag.HEADING, s.heading);
  if (s.altitude !== undefined) o = u16(out, o, UplinkTag.ALTITUDE, s.altitude);
  if (s.odometer !== undefined) o = u32(out, o, UplinkTag.ODOMETER, s.odometer);
  if (s.fuelOrSoc !== undefined) {
    header(out, o, UplinkTag.FUEL_OR_SOC, 1);
    out[o + 5] = s.fuelOrSoc;
    o += 6;
  }
  if (s.statusFlags !== undefined) o = u32(out, o, UplinkTag.STATUS_FLAGS, s.statusFlags);
  if (s.engineRpm !== undefined) o = u16(out, o, UplinkTag.ENGINE_RPM, s.engineRpm);
  if (s.batteryMv !== undefined) o = u16(out, o, UplinkTag.BATTERY_MV, s.batteryMv);
  return o;
}

/**
 * Writes the one frame of an uplink message `SEQ u32 | body[0, length)` (TELEMETRY or EVENT) into
 * `out` at `o`, as writeMessage does; returns the offset after it. The DATA (4 + length) must fit one
 * frame (≤ 255 bytes) and `out` needs 4 + length + FRAME_OVERHEAD bytes of room.
 */
export function writeUplinkFrame(
  out: Uint8Array,
  o: number,
  code: number,
  seq: number,
  body: Uint8Array,
  length: number,
): number {
  const len = 4 + length;
  if (len > MAX_FRAME_DATA) throw new RangeError(`uplink DATA of ${len} bytes needs fragmenting`);
  out[o] = SOF;
  out[o + 1] = code;
  out[o + 2] = len;
  out[o + 3] = seq >>> 24;
  out[o + 4] = seq >>> 16;
  out[o + 5] = seq >>> 8;
  out[o + 6] = seq;
  copyBytes(out, o + 7, body, length);
  const end = o + 3 + len;
  const crc = crc16(out, o + 1, end);
  out[end] = crc >>> 8;
  out[end + 1] = crc & 0xff;
  return o + FRAME_OVERHEAD + len;
}

/** Copies `src[0, length)` into `out` at `o` (for the short bodies here a loop beats a subarray and set). */
export function copyBytes(out: Uint8Array, o: number, src: Uint8Array, length: number): void {
  for (let i = 0; i < length; i++) out[o + i] = src[i]!;
}
