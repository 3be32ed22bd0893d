// Plausible vehicle motion for the fleet simulator: routes around a city, speed, heading, battery or
// fuel, odometer and occasional events, in the wire units of PROTOCOL.md 3.1. Deterministic per seed.
import type { EventSample, TelemetrySample } from '../protocol/index.js';

/** mulberry32: a small, fast, seedable PRNG (uniform in [0, 1)). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** FNV-1a of a string: a stable per-vehicle seed. */
export function hashSeed(text: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export interface City {
  /** Centre, degrees. */
  lat: number;
  lon: number;
  /** Streets form a grid of this spacing (m) within `radiusM` of the centre. */
  blockM: number;
  radiusM: number;
}

/** Shanghai, People's Square: the example of PROTOCOL.md 8. */
export const DEFAULT_CITY: Readonly<City> = Object.freeze({
  lat: 31.2304,
  lon: 121.4737,
  blockM: 400,
  radiusM: 8_000,
});

export const EventCode = {
  COLLISION: 1,
  HARSH_BRAKING: 2,
  LOW_BATTERY: 3,
  GEOFENCE: 4,
  TAMPER: 5,
} as const;

/** STATUS_FLAGS bits (3.1). */
export const Flag = { IGNITION: 1, MOVING: 2, LOCKED: 4, CHARGING: 8 } as const;

const M_PER_DEG_LAT = 111_320;
const ACCEL = 1.6; // m/s²
const BRAKE = 2.2; // m/s², ordinary
const HARSH_BRAKE = 6.5; // m/s²
const TURN_SPEED = 3; // m/s, slowing down for a corner
const MAX_STEP_S = 1; // integration step
const MAX_CATCH_UP_S = 600; // a vehicle offline longer than this is not replayed second by second

type Phase = 'driving' | 'stopped' | 'parked';

/**
 * One vehicle's motion: a closed route of grid intersections around the city, driven segment by
 * segment with acceleration, braking for corners, red lights, parking and recharging/refuelling.
 * `advance(nowMs)` integrates up to now; `telemetry(nowMs)` and `takeEvent()` read the state.
 */
export class VehicleMotion {
  readonly electric: boolean;
  private readonly rand: () => number;
  private readonly city: City;
  private readonly mPerDegLon: number;
  /** Route waypoints in metres from the centre (x east, y north), a closed loop. */
  private readonly route: Float64Array;
  private seg = 0;
  private along = 0; // metres along the current segment
  private segLen = 0;
  private dx = 0;
  private dy = 0;
  private x = 0;
  private y = 0;
  speed = 0; // m/s
  private cruise = 12;
  private phase: Phase = 'driving';
  private phaseUntil = 0; // ms
  private lastMs: number;
  /** km, float. */
  odometerKm: number;
  /** percent, float. */
  energyPct: number;
  private lowWarned = false;
  private pendingEvent: { code: number; severity: number; detail: string } | null = null;
  events = 0;

  constructor(seed: number, nowMs: number, city: City = DEFAULT_CITY) {
    this.rand = prng(seed);
    this.city = city;
    this.mPerDegLon = M_PER_DEG_LAT * Math.cos((city.lat * Math.PI) / 180);
    const r = this.rand;
    this.electric = r() < 0.6;
    const points = 4 + Math.floor(r() * 5);
    this.route = new Float64Array(points * 2);
    const cells = Math.floor(city.radiusM / city.blockM);
    for (let i = 0; i < points; i++) {
      this.route[2 * i] = (Math.floor(r() * (2 * cells + 1)) - cells) * city.blockM;
      this.route[2 * i + 1] = (Math.floor(r() * (2 * cells + 1)) - cells) * city.blockM;
      // Consecutive waypoints differ (no zero-length segment): step one block east if they match.
      if (i > 0 && this.route[2 * i] === this.route[2 * i - 2]) {
        if (this.route[2 * i + 1] === this.route[2 * i - 1]) this.route[2 * i]! += city.blockM;
      }
    }
    if (
      this.route[0] === this.route[2 * points - 2] &&
      this.route[1] === this.route[2 * points - 1]
    )
      this.route[1]! += city.blockM;
    this.odometerKm = 1_000 + r() * 120_000;
    this.energyPct = 25 + r() * 70;
    this.lastMs = nowMs;
    this.enterSegment(Math.floor(r() * points));
    this.along = r() * this.segLen;
    this.x = this.route[2 * this.seg]! + this.dx * this.along;
    this.y = this.route[2 * this.seg + 1]! + this.dy * this.along;
    this.speed = r() * this.cruise;
  }

  private enterSegment(i: number): void {
    const n = this.route.length / 2;
    this.seg = i % n;
    const j = (this.seg + 1) % n;
    const ax = this.route[2 * this.seg]!;
    const ay = this.route[2 * this.seg + 1]!;
    const bx = this.route[2 * j]!;
    const by = this.route[2 * j + 1]!;
    const len = Math.max(1, Math.hypot(bx - ax, by - ay));
    this.segLen = len;
    this.dx = (bx - ax) / len;
    this.dy = (by - ay) / len;
    this.along = 0;
    this.cruise = (30 + this.rand() * 40) / 3.6; // 30–70 km/h
  }

  /** Integrates the motion up to `nowMs` in steps of at most one second. */
  advance(nowMs: number): void {
    let dt = (nowMs - this.lastMs) / 1000;
    if (dt <= 0) return;
    if (dt > MAX_CATCH_UP_S) dt = MAX_CATCH_UP_S;
    let t = this.lastMs;
    this.lastMs = nowMs;
    while (dt > 0) {
      const h = dt > MAX_STEP_S ? MAX_STEP_S : dt;
      t += h * 1000;
      this.step(h, t);
      dt -= h;
    }
  }

  private step(h: number, t: number): void {
    const r = this.rand;
    if (this.phase === 'parked') {
      this.speed = 0;
      if (this.energyPct < 80) this.energyPct = Math.min(100, this.energyPct + h * 0.5);
      if (t >= this.phaseUntil && this.energyPct >= 80) {
        this.phase = 'driving';
        this.lowWarned = false;
      }
      return;
    }
    if (this.phase === 'stopped') {
      this.speed = 0;
      if (t >= this.phaseUntil) this.phase = 'driving';
      return;
    }
    // Driving: rare incidents first.
    const p = r();
    if (p < 0.0004 * h && this.speed > 8) {
      this.speed = Math.max(0, this.speed - HARSH_BRAKE * h);
      this.raise(EventCode.HARSH_BRAKING, 1, 'harsh braking');
    } else if (p < 0.0004 * h + 0.000002 * h) {
      this.raise(EventCode.COLLISION, 3, 'collision detected');
      this.stop(t, 30_000);
    }
    const remaining = this.segLen - this.along;
    const brakingDist = (this.speed * this.speed - TURN_SPEED * TURN_SPEED) / (2 * BRAKE);
    const target = remaining <= Math.max(0, brakingDist) ? TURN_SPEED : this.cruise;
    if (this.speed < target) this.speed = Math.min(target, this.speed + ACCEL * h);
    else this.speed = Math.max(target, this.speed - BRAKE * h);
    const d = this.speed * h;
    this.along += d;
    this.odometerKm += d / 1000;
    this.energyPct = Math.max(0, this.energyPct - (d / 1000) * (this.electric ? 0.25 : 0.14));
    if (this.energyPct < 15 && !this.lowWarned) {
      this.lowWarned = true;
      this.raise(EventCode.LOW_BATTERY, 2, this.electric ? 'low state of charge' : 'low fuel');
    }
    if (this.along >= this.segLen) {
      const over = this.along - this.segLen;
      const next = this.seg + 1;
      const lap = next === this.route.length / 2;
      this.enterSegment(next);
      this.along = Math.min(over, this.segLen);
      if (lap) {
        this.raise(EventCode.GEOFENCE, 0, 'depot geofence entered');
        if (this.energyPct < 30 || r() < 0.1) this.park(t, 60_000 + r() * 240_000);
      } else if (r() < 0.3) {
        this.stop(t, 5_000 + r() * 35_000); // a red light
      }
    }
    this.x = this.route[2 * this.seg]! + this.dx * this.along;
    this.y = this.route[2 * this.seg + 1]! + this.dy * this.along;
  }

  private stop(t: number, ms: number): void {
    this.phase = 'stopped';
    this.phaseUntil = t + ms;
    this.speed = 0;
  }

  private park(t: number, ms: number): void {
    this.phase = 'parked';
    this.phaseUntil = t + ms;
    this.speed = 0;
  }

  private raise(code: number, severity: number, detail: string): void {
    this.pendingEvent ??= { code, severity, detail };
  }

  /** The event raised since the last call, if any. */
  takeEvent(nowMs: number): EventSample | undefined {
    const e = this.pendingEvent;
    if (e === null) return undefined;
    this.pendingEvent = null;
    this.events++;
    return {
      timestamp: nowMs,
      latitude: this.latE7(),
      longitude: this.lonE7(),
      eventCode: e.code,
      severity: e.severity,
      detail: e.detail,
    };
  }

  private latE7(): number {
    return Math.round((this.city.lat + this.y / M_PER_DEG_LAT) * 1e7);
  }

  private lonE7(): number {
    return Math.round((this.city.lon + this.x / this.mPerDegLon) * 1e7);
  }

  /** Heading of travel, 0.1 degree (0–3599). */
  headingDeci(): number {
    const deg = (Math.atan2(this.dx, this.dy) * 180) / Math.PI;
    const h = Math.round(((deg + 360) % 360) * 10);
    return h >= 3600 ? 0 : h;
  }

  flags(): number {
    let f = 0;
    if (this.phase !== 'parked') f |= Flag.IGNITION;
    if (this.speed > 0.3) f |= Flag.MOVING;
    if (this.phase === 'parked') f |= Flag.LOCKED;
    if (this.phase === 'parked' && this.electric && this.energyPct < 100) f |= Flag.CHARGING;
    return f;
  }

  /**
   * A telemetry sample at `nowMs` (call `advance` first). Electric vehicles omit ENGINE_RPM, so a
   * sample is 83–90 bytes of TLVs after the 4-byte SEQ (87–94 bytes of DATA).
   */
  telemetry(nowMs: number): TelemetrySample {
    const ignition = this.phase !== 'parked';
    const kmh = this.speed * 3.6;
    return {
      timestamp: nowMs,
      latitude: this.latE7(),
      longitude: this.lonE7(),
      speed: Math.min(0xffff, Math.round(kmh * 10)),
      heading: this.headingDeci(),
      altitude: Math.round(12 + 8 * Math.sin(this.x / 1500) + 5 * Math.cos(this.y / 2000)),
      odometer: Math.round(this.odometerKm * 10),
      fuelOrSoc: Math.max(0, Math.min(100, Math.round(this.energyPct))),
      statusFlags: this.flags(),
      engineRpm: this.electric ? undefined : ignition ? Math.round(750 + kmh * 32) : 0,
      batteryMv: ignition ? (this.electric ? 13_400 : 14_100) : 12_600,
    };
  }
}
