// The bench's compare scenario (bench/scenarios/compare.ts): the gateway ÷ peer CPU ratio per
// interleaved pair, and their median.
import { describe, expect, it } from 'vitest';
import { pairRatios } from '../../bench/scenarios/compare.js';

describe('pairRatios', () => {
  it('divides pair by pair, in the order run, and takes the median of the ratios', () => {
    const r = pairRatios([25.74, 27.61, 27.91, 28.2], [24.06, 25.05, 25.58, 25.28]);
    expect(r.ratios).toEqual([1.07, 1.102, 1.091, 1.116]);
    expect(r.median).toBe(1.097); // the mean of the middle two, 1.091 and 1.102
    expect(r.min).toBe(1.07);
    expect(r.max).toBe(1.116);
  });

  it('is the middle ratio for an odd count, not the ratio of the medians', () => {
    // Medians of the lists: 20 and 10 (2.0); the pairs say 1.0, 3.0 and 1.5.
    const r = pairRatios([10, 30, 20], [10, 10, 40 / 3]);
    expect(r.ratios).toEqual([1, 3, 1.5]);
    expect(r.median).toBe(1.5);
  });

  it('refuses lists it cannot pair', () => {
    expect(() => pairRatios([], [])).toThrow();
    expect(() => pairRatios([1, 2], [1])).toThrow();
  });
});
