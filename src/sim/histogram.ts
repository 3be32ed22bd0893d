// Latency histograms for the simulator and the bench: HdrHistogram (3 significant digits, µs values),
// with a compact encoding so several simulator processes can be merged.
import {
  build,
  decodeFromCompressedBase64,
  encodeIntoCompressedBase64,
  type Histogram,
} from 'hdr-histogram-js';

/** Highest trackable value: one hour in microseconds. */
const HIGHEST_US = 3_600_000_000;

export interface LatencySummary {
  count: number;
  /** Milliseconds. */
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export class LatencyHistogram {
  private readonly h: Histogram;

  constructor() {
    this.h = build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: HIGHEST_US,
      numberOfSignificantValueDigits: 3,
      bitBucketSize: 32,
      useWebAssembly: false,
    });
  }

  get count(): number {
    return this.h.totalCount;
  }

  /** Records a latency in milliseconds (fractions kept to the microsecond). */
  recordMs(ms: number): void {
    const us = Math.round(ms * 1000);
    this.h.recordValue(us < 1 ? 1 : us > HIGHEST_US ? HIGHEST_US : us);
  }

  /** Milliseconds at a percentile (0–100); 0 when empty. */
  percentileMs(p: number): number {
    if (this.h.totalCount === 0) return 0;
    return this.h.getValueAtPercentile(p) / 1000;
  }

  summary(): LatencySummary {
    const h = this.h;
    if (h.totalCount === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    const ms = (us: number): number => Math.round(us) / 1000;
    return {
      count: h.totalCount,
      mean: ms(h.mean),
      p50: ms(h.getValueAtPercentile(50)),
      p90: ms(h.getValueAtPercentile(90)),
      p99: ms(h.getValueAtPercentile(99)),
      p999: ms(h.getValueAtPercentile(99.9)),
      max: ms(h.maxValue),
    };
  }

  /** Percentile curve for charts: [percentile, ms] pairs on a log scale of 1/(1-p). */
  curve(): [number, number][] {
    const out: [number, number][] = [];
    if (this.h.totalCount === 0) return out;
    for (const p of [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100]) {
      out.push([p, this.h.getValueAtPercentile(p) / 1000]);
    }
    return out;
  }

  reset(): void {
    this.h.reset();
  }

  add(other: LatencyHistogram): void {
    this.h.add(other.h);
  }

  encode(): string {
    return encodeIntoCompressedBase64(this.h);
  }

  /** Adds an encoded histogram (from another process) into this one. */
  addEncoded(base64: string): void {
    if (base64 === '') return;
    this.h.add(decodeFromCompressedBase64(base64, 32, false));
  }

  static decode(base64: string): LatencyHistogram {
    const h = new LatencyHistogram();
    h.addEncoded(base64);
    return h;
  }
}
