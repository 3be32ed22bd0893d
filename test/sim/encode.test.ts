// The simulator's hot-path encoders write exactly the codec's bytes, and its folded latency histograms
// hold exactly what recording every value into each histogram would.
import { describe, expect, it } from 'vitest';
import {
  ByteWriter,
  Cmd,
  UplinkTag,
  decodeTelemetry,
  encodeMessage,
  writeTelemetrySample,
  type TelemetrySample,
} from '../../src/protocol/index.js';
import { TELEMETRY_TLVS_MAX, writeTelemetryTlvs, writeUplinkFrame } from '../../src/sim/encode.js';
import { LatencyHistogram, SimStats, VehicleMotion, prng } from '../../src/sim/index.js';

function codecTlvs(s: TelemetrySample): Uint8Array {
  const w = new ByteWriter(80);
  writeTelemetrySample(w, s);
  return w.finish();
}

function fastTlvs(s: TelemetrySample, at = 0): Uint8Array {
  const out = new Uint8Array(at + TELEMETRY_TLVS_MAX + 16).fill(0xee);
  const end = writeTelemetryTlvs(out, at, s);
  expect(end - at).toBeLessThanOrEqual(TELEMETRY_TLVS_MAX);
  expect(out[end]).toBe(0xee); // nothing written past the end
  return out.subarray(at, end);
}

describe('simulator encoders', () => {
  it("write a motion model's telemetry TLVs as writeTelemetrySample does", () => {
    const t0 = 1_764_000_000_000;
    const sizes = new Set<number>();
    for (let seed = 1; seed <= 40; seed++) {
      const m = new VehicleMotion(seed, t0);
      for (let s = 1; s <= 1800; s += 13) {
        m.advance(t0 + s * 1000);
        const sample = m.telemetry(t0 + s * 1000);
        expect(fastTlvs(sample, seed % 5)).toEqual(codecTlvs(sample));
        sizes.add(codecTlvs(sample).length);
        m.takeEvent(t0 + s * 1000);
      }
    }
    // Electric (no ENGINE_RPM) and combustion vehicles.
    expect([...sizes].sort()).toEqual([83, 90]);
  });

  it('write edge values, negative and out-of-range fields and absent fields like the codec', () => {
    const r = prng(7);
    const pick = (xs: number[]): number => xs[Math.floor(r() * xs.length)]!;
    for (let i = 0; i < 2000; i++) {
      const s: TelemetrySample = {
        timestamp: pick([0, 1, 0xffff_ffff, 0x1_0000_0000, 2 ** 53 - 1, 1_764_000_000_123]),
        latitude: pick([0, -1, -900_000_000, 900_000_000, 2 ** 31 - 1, -(2 ** 31)]),
        longitude: pick([0, -1, 1_800_000_000, -1_800_000_000]),
        speed: pick([0, 1, 0xffff, 0x1_0000, 1234]),
        heading: pick([0, 3599, 65_535]),
        altitude: pick([0, -1, -32_768, 32_767, 70_000]),
        odometer: pick([0, 0xffff_ffff, 1_234_567]),
        fuelOrSoc: pick([0, 100, 255, 256]),
        statusFlags: pick([0, 1, 0xf, 0xffff_ffff]),
        engineRpm: pick([0, 750, 0xffff]),
        batteryMv: pick([0, 12_600, 14_100]),
      };
      for (const k of Object.keys(s) as (keyof TelemetrySample)[])
        if (k !== 'timestamp' && r() < 0.2) delete s[k];
      expect(fastTlvs(s)).toEqual(codecTlvs(s));
    }
  });

  it('write an uplink frame as encodeMessage does', () => {
    const m = new VehicleMotion(3, 1_764_000_000_000);
    const sample = m.telemetry(1_764_000_000_000);
    const tlvs = codecTlvs(sample);
    const body = new Uint8Array(128).fill(0xaa);
    body.set(tlvs);
    for (const seq of [0, 1, 0x7fff_ffff, 0xffff_ffff]) {
      for (const code of [Cmd.TELEMETRY, Cmd.EVENT]) {
        const data = new Uint8Array(4 + tlvs.length);
        new DataView(data.buffer).setUint32(0, seq);
        data.set(tlvs, 4);
        const want = encodeMessage(code, data);
        const out = new Uint8Array(300).fill(0xee);
        const end = writeUplinkFrame(out, 9, code, seq, body, tlvs.length);
        expect(end - 9).toBe(want.length);
        expect(out.subarray(9, end)).toEqual(want);
        expect(out[end]).toBe(0xee);
      }
    }
    const frame = new Uint8Array(200);
    const end = writeUplinkFrame(frame, 0, Cmd.TELEMETRY, 42, body, tlvs.length);
    const decoded = decodeTelemetry(frame.subarray(3, end - 2));
    expect(decoded.seq).toBe(42);
    expect(decoded.latitude).toBe(sample.latitude);
    expect(() => writeUplinkFrame(new Uint8Array(400), 0, Cmd.EVENT, 1, body, 252)).toThrow(
      RangeError,
    );
    expect(tlvs[0]).toBe(UplinkTag.TIMESTAMP);
  });
});

describe('simulator latency histograms', () => {
  it('fold per interval into exactly the histograms of every recorded value', () => {
    const st = new SimStats();
    const wantLatency = new LatencyHistogram();
    const wantService = new LatencyHistogram();
    const r = prng(11);
    for (let interval = 0; interval < 5; interval++) {
      const wantInterval = new LatencyHistogram();
      const n = interval === 2 ? 0 : 500 + Math.floor(r() * 500);
      for (let i = 0; i < n; i++) {
        const ms = r() * (interval === 4 ? 5_000 : 80);
        const resent = r() < 0.1;
        const serviceMs = resent ? ms * r() : ms;
        st.recordAck(ms, serviceMs);
        wantLatency.recordMs(ms);
        wantInterval.recordMs(ms);
        wantService.recordMs(serviceMs);
      }
      const got = st.takeInterval();
      expect(got.summary()).toEqual(wantInterval.summary());
      expect(got.encode()).toBe(wantInterval.encode());
    }
    expect(st.latency.summary()).toEqual(wantLatency.summary());
    expect(st.latency.encode()).toBe(wantLatency.encode());
    expect(st.service.summary()).toEqual(wantService.summary());
    expect(st.service.encode()).toBe(wantService.encode());
  });
});
