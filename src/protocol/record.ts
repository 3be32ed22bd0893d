// The JSON form of uplink records shared by the API, the live stream and the bus (PROTOCOL.md 8).
import type { EventSample, TelemetrySample } from './messages/uplink.js';

export interface RecordData {
  latitude?: number;
  longitude?: number;
  speedKmh?: number;
  headingDeg?: number;
  altitudeM?: number;
  odometerKm?: number;
  fuelOrSocPct?: number;
  statusFlags?: number;
  engineRpm?: number;
  batteryMv?: number;
  eventCode?: number;
  severity?: number;
  detail?: string;
  vendor?: Record<string, string>;
}

export interface UplinkRecord {
  vehicleId: string;
  seq: number;
  kind: 'telemetry' | 'event';
  timestamp: number;
  receivedAt: number;
  traceparent?: string;
  data: RecordData;
}

// Division of two exactly representable integers is correctly rounded in IEEE 754, so raw / 10^k is
// the double nearest the exact decimal (312304000 / 1e7 → 31.2304), unlike raw * 1e-7.
export function telemetryData(s: TelemetrySample): RecordData {
  const d: RecordData = {};
  if (s.latitude !== undefined) d.latitude = s.latitude / 1e7;
  if (s.longitude !== undefined) d.longitude = s.longitude / 1e7;
  if (s.speed !== undefined) d.speedKmh = s.speed / 10;
  if (s.heading !== undefined) d.headingDeg = s.heading / 10;
  if (s.altitude !== undefined) d.altitudeM = s.altitude;
  if (s.odometer !== undefined) d.odometerKm = s.odometer / 10;
  if (s.fuelOrSoc !== undefined) d.fuelOrSocPct = s.fuelOrSoc;
  if (s.statusFlags !== undefined) d.statusFlags = s.statusFlags;
  if (s.engineRpm !== undefined) d.engineRpm = s.engineRpm;
  if (s.batteryMv !== undefined) d.batteryMv = s.batteryMv;
  if (s.vendor !== undefined) d.vendor = s.vendor;
  return d;
}

export function eventData(e: EventSample): RecordData {
  const d: RecordData = {};
  if (e.latitude !== undefined) d.latitude = e.latitude / 1e7;
  if (e.longitude !== undefined) d.longitude = e.longitude / 1e7;
  if (e.eventCode !== undefined) d.eventCode = e.eventCode;
  if (e.severity !== undefined) d.severity = e.severity;
  if (e.detail !== undefined) d.detail = e.detail;
  if (e.vendor !== undefined) d.vendor = e.vendor;
  return d;
}
