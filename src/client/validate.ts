// Checks a sample before it gets a seq, so the gateway never has to answer REJECTED (PROTOCOL.md 3.1, 3.2).
import {
  ByteWriter,
  decodeEventSample,
  decodeTelemetrySample,
  encodeEvent,
  writeTelemetrySample,
  type EventSample,
  type TelemetrySample,
} from '../protocol/index.js';
import { InvalidSampleError } from './errors.js';

/** [min, max] of each numeric field in its wire unit (3.1); the codec would silently wrap larger values. */
const TELEMETRY_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  timestamp: [0, Number.MAX_SAFE_INTEGER],
  latitude: [-900_000_000, 900_000_000],
  longitude: [-1_800_000_000, 1_800_000_000],
  speed: [0, 0xffff],
  heading: [0, 3599],
  altitude: [-0x8000, 0x7fff],
  odometer: [0, 0xffff_ffff],
  fuelOrSoc: [0, 100],
  statusFlags: [0, 0xffff_ffff],
  engineRpm: [0, 0xffff],
  batteryMv: [0, 0xffff],
};

const EVENT_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  timestamp: [0, Number.MAX_SAFE_INTEGER],
  latitude: [-900_000_000, 900_000_000],
  longitude: [-1_800_000_000, 1_800_000_000],
  eventCode: [0, 0xffff],
  severity: [0, 3],
};

const VENDOR_KEY = /^0x([89a-f][0-9a-f])$/;

function checkFields(
  sample: object,
  ranges: Readonly<Record<string, readonly [number, number]>>,
): void {
  const fields = sample as Record<string, unknown>;
  if (typeof fields.timestamp !== 'number') throw new Error('timestamp is required');
  for (const [key, [min, max]] of Object.entries(ranges)) {
    const v = fields[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      throw new Error(`${key} must be an integer in ${min}..${max} (wire units), got ${String(v)}`);
  }
  const vendor = fields.vendor;
  if (vendor === undefined) return;
  if (typeof vendor !== 'object' || vendor === null) throw new Error('vendor must be an object');
  for (const [key, value] of Object.entries(vendor as Record<string, unknown>)) {
    const m = VENDOR_KEY.exec(key);
    if (m === null || key === '0xff') throw new Error(`vendor key ${key} is not 0x80…0xfe`);
    if (typeof value !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(value))
      throw new Error(`vendor ${key} must be a hex string`);
  }
}

/** The sample's TLV bytes, after checking it is valid and fits `maxMessageBytes` with its SEQ. */
export function telemetryTlvs(sample: TelemetrySample, maxMessageBytes: number): Uint8Array {
  try {
    checkFields(sample, TELEMETRY_RANGES);
    const w = new ByteWriter(72);
    writeTelemetrySample(w, sample);
    const tlv = w.finish().slice();
    if (4 + tlv.length > maxMessageBytes) throw new Error('sample larger than a message may be');
    decodeTelemetrySample(tlv, 0, tlv.length); // the gateway's own checks
    return tlv;
  } catch (err) {
    throw new InvalidSampleError(err);
  }
}

export function eventTlvs(event: EventSample, maxMessageBytes: number): Uint8Array {
  try {
    checkFields(event, EVENT_RANGES);
    if (event.detail !== undefined && typeof event.detail !== 'string')
      throw new Error('detail must be a string');
    const tlv = encodeEvent({ ...event, seq: 0 }).slice(4);
    if (4 + tlv.length > maxMessageBytes) throw new Error('event larger than a message may be');
    decodeEventSample(tlv, 0, tlv.length);
    return tlv;
  } catch (err) {
    throw new InvalidSampleError(err);
  }
}

/** A copy the caller cannot change behind the outbox's back. */
export function copySample<T extends TelemetrySample | EventSample>(sample: T): T {
  const out = { ...sample };
  for (const key of Object.keys(out) as (keyof T)[]) if (out[key] === undefined) delete out[key];
  if (sample.vendor !== undefined) out.vendor = { ...sample.vendor };
  return out;
}
