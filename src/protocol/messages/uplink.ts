// Uplink messages: TELEMETRY 0x20, EVENT 0x21, UPLINK_ACK 0x22, TELEMETRY_BATCH 0x23 (PROTOCOL.md 3, 5).
import { fromHex, readI16, readI32, readU16, readU32, readU64, toHex, writeU32 } from '../bytes.js';
import { Cmd, UplinkTag, VENDOR_TAG_MAX, VENDOR_TAG_MIN } from '../constants.js';
import { writeFrame } from '../frame.js';
import { ByteWriter, TlvReader } from '../tlv.js';
import { fail, requireLength, requireSize, tlvString, tlvU16, tlvU8, withSeq } from './fields.js';

/** Raw telemetry values as on the wire (units of 3.1); section 8's JSON form converts them. */
export interface TelemetrySample {
  timestamp: number;
  latitude?: number | undefined;
  longitude?: number | undefined;
  speed?: number | undefined;
  heading?: number | undefined;
  altitude?: number | undefined;
  odometer?: number | undefined;
  fuelOrSoc?: number | undefined;
  statusFlags?: number | undefined;
  engineRpm?: number | undefined;
  batteryMv?: number | undefined;
  /** Vendor tags 0x80–0xFE, keyed "0x80" … "0xfe", lower-case hex values. */
  vendor?: Record<string, string> | undefined;
}

export interface TelemetryMessage extends TelemetrySample {
  seq: number;
}

export interface EventSample {
  timestamp: number;
  latitude?: number | undefined;
  longitude?: number | undefined;
  eventCode?: number | undefined;
  severity?: number | undefined;
  detail?: string | undefined;
  vendor?: Record<string, string> | undefined;
}

export interface EventMessage extends EventSample {
  seq: number;
}

const LAT_MAX = 900_000_000; // ±90° in 1e-7 degree
const LON_MAX = 1_800_000_000; // ±180°
const HEADING_MAX = 3599; // 0.1 degree
const PERCENT_MAX = 100;
const SEVERITY_MAX = 3; // 0 info … 3 critical

const reader = new TlvReader();

function timestampOf(r: TlvReader): number {
  requireSize(r, 8);
  const v = readU64(r.buf, r.valueStart);
  if (v === undefined) fail('VMCP_ERR_VALUE_RANGE', r.tag);
  return v;
}

function i32InRange(r: TlvReader, max: number): number {
  requireSize(r, 4);
  const v = readI32(r.buf, r.valueStart);
  if (v > max || v < -max) fail('VMCP_ERR_VALUE_RANGE', r.tag);
  return v;
}

function addVendor(
  r: TlvReader,
  vendor: Record<string, string> | undefined,
): Record<string, string> {
  const out = vendor ?? {};
  out[`0x${r.tag.toString(16)}`] = toHex(r.buf, r.valueStart, r.valueStart + r.valueLength);
  return out;
}

/**
 * Decodes one telemetry sample's TLVs in `data[start, end)` (a TELEMETRY after its SEQ, or one
 * TELEMETRY_BATCH sample). Throws VmcpError for invalid content (1.3, 3.1): the gateway answers REJECTED.
 */
export function decodeTelemetrySample(
  data: Uint8Array,
  start: number,
  end: number,
): TelemetrySample {
  // All keys present from the start: one object shape for every sample keeps V8's access monomorphic.
  const s: TelemetrySample = {
    timestamp: -1,
    latitude: undefined,
    longitude: undefined,
    speed: undefined,
    heading: undefined,
    altitude: undefined,
    odometer: undefined,
    fuelOrSoc: undefined,
    statusFlags: undefined,
    engineRpm: undefined,
    batteryMv: undefined,
    vendor: undefined,
  };
  return readTelemetrySample(s, data, start, end);
}

/** Fills `s` (all keys present, timestamp -1) from the TLVs in `data[start, end)`; returns it. */
function readTelemetrySample<T extends TelemetrySample>(
  s: T,
  data: Uint8Array,
  start: number,
  end: number,
): T {
  const r = reader.reset(data, start, end);
  while (r.next()) {
    const at = r.valueStart;
    switch (r.tag) {
      case UplinkTag.TIMESTAMP:
        s.timestamp = timestampOf(r);
        break;
      case UplinkTag.LATITUDE:
        s.latitude = i32InRange(r, LAT_MAX);
        break;
      case UplinkTag.LONGITUDE:
        s.longitude = i32InRange(r, LON_MAX);
        break;
      case UplinkTag.SPEED:
        s.speed = tlvU16(r);
        break;
      case UplinkTag.HEADING:
        s.heading = tlvU16(r);
        if (s.heading > HEADING_MAX) fail('VMCP_ERR_VALUE_RANGE', r.tag);
        break;
      case UplinkTag.ALTITUDE:
        requireSize(r, 2);
        s.altitude = readI16(r.buf, at);
        break;
      case UplinkTag.ODOMETER:
        requireSize(r, 4);
        s.odometer = readU32(r.buf, at);
        break;
      case UplinkTag.FUEL_OR_SOC:
        s.fuelOrSoc = tlvU8(r);
        if (s.fuelOrSoc > PERCENT_MAX) fail('VMCP_ERR_VALUE_RANGE', r.tag);
        break;
      case UplinkTag.STATUS_FLAGS:
        requireSize(r, 4);
        s.statusFlags = readU32(r.buf, at);
        break;
      case UplinkTag.ENGINE_RPM:
        s.engineRpm = tlvU16(r);
        break;
      case UplinkTag.BATTERY_MV:
        s.batteryMv = tlvU16(r);
        break;
      default:
        // 0x0C–0x7F and 0xFF are skipped: neither stored nor a reason to reject (3.1).
        if (r.tag >= VENDOR_TAG_MIN && r.tag <= VENDOR_TAG_MAX) s.vendor = addVendor(r, s.vendor);
    }
  }
  if (s.timestamp < 0) fail('VMCP_ERR_MISSING_TAG', UplinkTag.TIMESTAMP);
  return s;
}

/** Decodes TELEMETRY DATA. Short DATA → VMCP_ERR_SHORT_DATA (no seq); bad content → error carrying `seq`. */
export function decodeTelemetry(data: Uint8Array): TelemetryMessage {
  requireLength(data, 4);
  const seq = readU32(data, 0);
  // The sample's keys then `seq`, in one literal: one allocation and no shape change after it.
  const msg: TelemetryMessage = {
    timestamp: -1,
    latitude: undefined,
    longitude: undefined,
    speed: undefined,
    heading: undefined,
    altitude: undefined,
    odometer: undefined,
    fuelOrSoc: undefined,
    statusFlags: undefined,
    engineRpm: undefined,
    batteryMv: undefined,
    vendor: undefined,
    seq,
  };
  try {
    return readTelemetrySample(msg, data, 4, data.length);
  } catch (err) {
    throw withSeq(err, seq);
  }
}

export function decodeEventSample(data: Uint8Array, start: number, end: number): EventSample {
  const e: EventSample = {
    timestamp: -1,
    latitude: undefined,
    longitude: undefined,
    eventCode: undefined,
    severity: undefined,
    detail: undefined,
    vendor: undefined,
  };
  const r = reader.reset(data, start, end);
  while (r.next()) {
    switch (r.tag) {
      case UplinkTag.TIMESTAMP:
        e.timestamp = timestampOf(r);
        break;
      case UplinkTag.LATITUDE:
        e.latitude = i32InRange(r, LAT_MAX);
        break;
      case UplinkTag.LONGITUDE:
        e.longitude = i32InRange(r, LON_MAX);
        break;
      case UplinkTag.EVENT_CODE:
        e.eventCode = tlvU16(r);
        break;
      case UplinkTag.SEVERITY:
        e.severity = tlvU8(r);
        if (e.severity > SEVERITY_MAX) fail('VMCP_ERR_VALUE_RANGE', r.tag);
        break;
      case UplinkTag.DETAIL:
        e.detail = tlvString(r);
        break;
      default:
        if (r.tag >= VENDOR_TAG_MIN && r.tag <= VENDOR_TAG_MAX) e.vendor = addVendor(r, e.vendor);
    }
  }
  if (e.timestamp < 0) fail('VMCP_ERR_MISSING_TAG', UplinkTag.TIMESTAMP);
  return e;
}

export function decodeEvent(data: Uint8Array): EventMessage {
  requireLength(data, 4);
  const seq = readU32(data, 0);
  try {
    const event = decodeEventSample(data, 4, data.length) as EventMessage;
    event.seq = seq;
    return event;
  } catch (err) {
    throw withSeq(err, seq);
  }
}

function writeVendor(w: ByteWriter, vendor: Record<string, string> | undefined): void {
  if (vendor === undefined) return;
  const tags = Object.keys(vendor)
    .map((k) => [parseInt(k, 16), k] as const)
    .sort((a, b) => a[0] - b[0]);
  for (const [tag, key] of tags) w.tlv(tag, fromHex(vendor[key]!));
}

/** TLVs of a telemetry sample, ascending tag order. */
export function writeTelemetrySample(w: ByteWriter, s: TelemetrySample): void {
  w.tlvU64(UplinkTag.TIMESTAMP, s.timestamp);
  if (s.latitude !== undefined) w.tlvI32(UplinkTag.LATITUDE, s.latitude);
  if (s.longitude !== undefined) w.tlvI32(UplinkTag.LONGITUDE, s.longitude);
  if (s.speed !== undefined) w.tlvU16(UplinkTag.SPEED, s.speed);
  if (s.heading !== undefined) w.tlvU16(UplinkTag.HEADING, s.heading);
  if (s.altitude !== undefined) w.tlvI16(UplinkTag.ALTITUDE, s.altitude);
  if (s.odometer !== undefined) w.tlvU32(UplinkTag.ODOMETER, s.odometer);
  if (s.fuelOrSoc !== undefined) w.tlvU8(UplinkTag.FUEL_OR_SOC, s.fuelOrSoc);
  if (s.statusFlags !== undefined) w.tlvU32(UplinkTag.STATUS_FLAGS, s.statusFlags);
  if (s.engineRpm !== undefined) w.tlvU16(UplinkTag.ENGINE_RPM, s.engineRpm);
  if (s.batteryMv !== undefined) w.tlvU16(UplinkTag.BATTERY_MV, s.batteryMv);
  writeVendor(w, s.vendor);
}

export function encodeTelemetry(msg: TelemetryMessage): Uint8Array {
  const w = new ByteWriter(80);
  w.u32(msg.seq);
  writeTelemetrySample(w, msg);
  return w.finish();
}

export function encodeEvent(msg: EventMessage): Uint8Array {
  const w = new ByteWriter(80);
  w.u32(msg.seq).tlvU64(UplinkTag.TIMESTAMP, msg.timestamp);
  if (msg.latitude !== undefined) w.tlvI32(UplinkTag.LATITUDE, msg.latitude);
  if (msg.longitude !== undefined) w.tlvI32(UplinkTag.LONGITUDE, msg.longitude);
  if (msg.eventCode !== undefined) w.tlvU16(UplinkTag.EVENT_CODE, msg.eventCode);
  if (msg.severity !== undefined) w.tlvU8(UplinkTag.SEVERITY, msg.severity);
  if (msg.detail !== undefined) w.tlvString(UplinkTag.DETAIL, msg.detail);
  writeVendor(w, msg.vendor);
  return w.finish();
}

export interface UplinkAckMessage {
  seq: number;
  status: number;
}

export function decodeUplinkAck(data: Uint8Array): UplinkAckMessage {
  requireLength(data, 5);
  return { seq: readU32(data, 0), status: data[4]! };
}

export function encodeUplinkAck(msg: UplinkAckMessage): Uint8Array {
  return new ByteWriter(5).u32(msg.seq).u8(msg.status).finish();
}

/** UPLINK_ACK on the wire is always 10 bytes. */
export const UPLINK_ACK_FRAME_BYTES = 10;
const ackData = new Uint8Array(5);

/** Writes a whole UPLINK_ACK frame into `out` at `o` (the gateway's hot path: no allocation). */
export function writeUplinkAckFrame(
  out: Uint8Array,
  o: number,
  seq: number,
  status: number,
): number {
  writeU32(ackData, 0, seq);
  ackData[4] = status;
  return writeFrame(out, o, Cmd.UPLINK_ACK, ackData);
}

/** TELEMETRY_BATCH layout: FIRST_SEQ, COUNT and each sample's TLV range, checked but not decoded. */
export interface BatchLayout {
  firstSeq: number;
  count: number;
  /** [start0, end0, start1, end1, …] offsets into DATA of each sample's TLVs. */
  ranges: number[];
}

/**
 * Splits TELEMETRY_BATCH DATA into samples (5). COUNT 0, a sample running past the end or bytes
 * after the last sample throw VmcpError (ERROR INVALID_DATA, nothing consumed), with `seq` = FIRST_SEQ.
 */
export function splitTelemetryBatch(data: Uint8Array): BatchLayout {
  requireLength(data, 5, true);
  const firstSeq = readU32(data, 0);
  const count = data[4]!;
  if (count === 0) fail('VMCP_ERR_VALUE_RANGE', 'count', firstSeq);
  const ranges: number[] = [];
  let o = 5;
  for (let i = 0; i < count; i++) {
    if (o + 2 > data.length) fail('VMCP_ERR_TLV_TRUNCATED', 'sample', firstSeq);
    const len = readU16(data, o);
    o += 2;
    if (o + len > data.length) fail('VMCP_ERR_TLV_TRUNCATED', 'sample', firstSeq);
    ranges.push(o, o + len);
    o += len;
  }
  if (o !== data.length) fail('VMCP_ERR_TRAILING_BYTES', 'sample', firstSeq);
  return { firstSeq, count, ranges };
}

export interface TelemetryBatchMessage {
  firstSeq: number;
  count: number;
  samples: TelemetrySample[];
}

/** Decodes a whole batch; any invalid sample throws (the gateway instead judges samples one by one). */
export function decodeTelemetryBatch(data: Uint8Array): TelemetryBatchMessage {
  const { firstSeq, count, ranges } = splitTelemetryBatch(data);
  const samples: TelemetrySample[] = [];
  for (let i = 0; i < count; i++) {
    try {
      samples.push(decodeTelemetrySample(data, ranges[2 * i]!, ranges[2 * i + 1]!));
    } catch (err) {
      throw withSeq(err, firstSeq + i);
    }
  }
  return { firstSeq, count, samples };
}

export function encodeTelemetryBatch(msg: {
  firstSeq: number;
  samples: TelemetrySample[];
}): Uint8Array {
  if (msg.samples.length < 1 || msg.samples.length > 255)
    throw new RangeError('a batch holds 1–255 samples');
  const w = new ByteWriter(8 + msg.samples.length * 72);
  w.u32(msg.firstSeq).u8(msg.samples.length);
  for (const s of msg.samples) {
    const sw = new ByteWriter(72);
    writeTelemetrySample(sw, s);
    const bytes = sw.finish();
    if (bytes.length > 0xffff) throw new RangeError('a batch sample is at most 65,535 bytes');
    w.u16(bytes.length).bytes(bytes);
  }
  return w.finish();
}
