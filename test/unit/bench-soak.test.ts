// The bench's soak scenario (bench/scenarios/soak.ts): the heap trend per gateway lifetime, read
// through the saw-tooth of garbage collection, and the verdict it exits with.
import { describe, expect, it } from 'vitest';
import {
  HEAP_GROWTH_LIMIT_MB_PER_HOUR,
  memoryTrend,
  soakFailures,
  type MemorySample,
} from '../../bench/scenarios/soak.js';

const MIN = 60_000;

/** Samples every 10 s for `minutes`: a live heap of `live(t)` MB plus garbage that a GC clears every 90 s. */
function sawTooth(segment: string, minutes: number, live: (t: number) => number): MemorySample[] {
  const out: MemorySample[] = [];
  for (let t = 0; t < minutes * MIN; t += 10_000)
    out.push({
      sinceStartMs: t,
      segment,
      heapUsedMb: live(t) + ((t % 90_000) / 90_000) * 40, // up to 40 MB of garbage
      rssMb: 150 + live(t),
    });
  return out;
}

const windows = { warmupMs: 2 * MIN, windowMs: 5 * MIN };

describe('memoryTrend', () => {
  it('reads a flat live heap as flat however tall the saw-tooth', () => {
    const [t] = memoryTrend(
      sawTooth('g0.0', 32, () => 60),
      windows,
    );
    expect(t!.segment).toBe('g0.0');
    expect(t!.minutes).toBe(25); // windows 0…5 after the warm-up: first and last are 25 min apart
    expect(t!.firstHeapMb).toBe(60);
    expect(t!.lastHeapMb).toBe(60);
    expect(t!.heapGrowthMbPerHour).toBe(0);
  });

  it('measures a steady leak per hour from the first and last windows', () => {
    // 1 MB a minute: 60 MB/h.
    const [t] = memoryTrend(
      sawTooth('g0.0', 32, (ms) => 60 + ms / MIN),
      windows,
    );
    expect(t!.heapGrowthMbPerHour).toBeGreaterThan(55);
    expect(t!.heapGrowthMbPerHour).toBeLessThan(65);
    expect(t!.lastRssMb).toBeGreaterThan(t!.firstRssMb);
  });

  it('keeps each gateway lifetime apart and skips one too short for two windows', () => {
    const samples = [
      ...sawTooth('g0.0', 20, () => 60),
      ...sawTooth('g0.1', 6, () => 500), // 4 min after the warm-up: one window
      ...sawTooth('g0.2', 20, () => 70),
    ];
    const trends = memoryTrend(samples, windows);
    expect(trends.map((t) => t.segment)).toEqual(['g0.0', 'g0.2']);
    expect(trends[1]!.firstHeapMb).toBe(70);
    expect(trends.every((t) => t.heapGrowthMbPerHour === 0)).toBe(true);
  });

  it('ignores the warm-up, when the fleet connects and caches fill', () => {
    const ramp = (ms: number): number => (ms < 2 * MIN ? 10 + (ms / MIN) * 100 : 210);
    const [t] = memoryTrend(sawTooth('g0.0', 20, ramp), windows);
    expect(t!.heapGrowthMbPerHour).toBe(0);
  });
});

describe('soakFailures', () => {
  const ok = {
    lostAcked: 0,
    disorder: 0,
    storeChecked: true,
    storeUnchecked: 0,
    commandsNotSucceeded: 0,
    recovered: true,
    trends: memoryTrend(
      sawTooth('g0.0', 32, () => 60),
      windows,
    ),
  };

  it('passes a clean run', () => {
    expect(soakFailures(ok)).toEqual([]);
  });

  it('fails on each broken guarantee, naming it', () => {
    expect(soakFailures({ ...ok, lostAcked: 3 })).toEqual([
      '3 acked messages missing from the store',
    ]);
    expect(soakFailures({ ...ok, disorder: 1 })).toEqual(['1 records out of order']);
    expect(soakFailures({ ...ok, commandsNotSucceeded: 2 })).toEqual([
      '2 accepted commands without a succeeded result',
    ]);
    expect(soakFailures({ ...ok, storeChecked: false })).toEqual(['store not checked']);
    expect(soakFailures({ ...ok, storeUnchecked: 2935 })).toEqual([
      'store check incomplete: 2935 vehicles not checked',
    ]);
    expect(soakFailures({ ...ok, recovered: false })).toEqual([
      'the fleet did not come back after a restart',
    ]);
  });

  it('fails a heap growing past the limit over ten minutes or more, not over a short segment', () => {
    const leak = (ms: number): number =>
      60 + ((HEAP_GROWTH_LIMIT_MB_PER_HOUR * 2) / 60) * (ms / MIN);
    const long = memoryTrend(sawTooth('g0.0', 32, leak), windows);
    expect(long[0]!.heapGrowthMbPerHour).toBeGreaterThan(35);
    expect(long[0]!.heapGrowthMbPerHour).toBeLessThan(45);
    expect(soakFailures({ ...ok, trends: long })).toEqual([
      `heap grew ${long[0]!.heapGrowthMbPerHour} MB/h in segment g0.0 (limit 20)`,
    ]);
    const short = memoryTrend(sawTooth('g0.0', 8, leak), windows); // 5 min between its two windows
    expect(short[0]!.minutes).toBe(5);
    expect(soakFailures({ ...ok, trends: short })).toEqual([]);
  });
});
