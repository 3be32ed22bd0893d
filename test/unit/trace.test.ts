// Uplink trace ids: one W3C traceparent per record, the session's random prefix and span, the seq in
// the last 8 hex digits of the trace id.
import { describe, expect, it } from 'vitest';
import { UplinkTracer, parseTraceparent } from '../../src/observability/trace.js';

describe('UplinkTracer', () => {
  it('formats the seq as the last 8 hex digits of a valid trace id', () => {
    const t = new UplinkTracer();
    for (const seq of [0, 1, 0xab, 0x1234, 0xabcdef, 0x7fffffff, 0x80000000, 0xffffffff]) {
      const tp = t.traceparent(seq);
      expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      const ctx = parseTraceparent(tp)!;
      expect(ctx.traceId.slice(24)).toBe(seq.toString(16).padStart(8, '0'));
      expect(parseInt(ctx.traceId.slice(24), 16)).toBe(seq);
    }
  });

  it('keeps one prefix and span per session, and draws new ones per session', () => {
    const a = new UplinkTracer();
    const b = new UplinkTracer();
    const head = (tp: string): string => tp.slice(0, 3 + 24);
    const span = (tp: string): string => tp.slice(36);
    expect(head(a.traceparent(1))).toBe(head(a.traceparent(999)));
    expect(span(a.traceparent(1))).toBe(span(a.traceparent(999)));
    expect(head(a.traceparent(1))).not.toBe(head(b.traceparent(1)));
    expect(span(a.traceparent(1))).not.toBe(span(b.traceparent(1)));
  });
});

describe('parseTraceparent (W3C Trace Context level 1)', () => {
  const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
  const span = '00f067aa0ba902b7';
  it('continues a valid version 00 header, with surrounding whitespace trimmed', () => {
    expect(parseTraceparent(` 00-${trace}-${span}-01 `)).toEqual({
      traceId: trace,
      spanId: span,
      flags: '01',
    });
  });

  it.each([
    ['uppercase trace id', `00-${trace.toUpperCase()}-${span}-01`],
    ['uppercase parent id', `00-${trace}-${span.toUpperCase()}-01`],
    ['uppercase flags', `00-${trace}-${span}-0A`],
    ['version ff', `ff-${trace}-${span}-01`],
    ['version 00 with a field after the flags', `00-${trace}-${span}-01-extra`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${span}-01`],
    ['all-zero parent id', `00-${trace}-${'0'.repeat(16)}-01`],
    ['a short trace id', `00-${trace.slice(1)}-${span}-01`],
    ['a higher version without a dash after the flags', `cc-${trace}-${span}-01x`],
  ])('ignores %s', (_name, header) => {
    expect(parseTraceparent(header)).toBeUndefined();
  });

  it('reads a higher version by its first four fields, so its trace continues', () => {
    expect(parseTraceparent(`cc-${trace}-${span}-01-what-the-future-will-be-like`)).toEqual({
      traceId: trace,
      spanId: span,
      flags: '01',
    });
    expect(parseTraceparent(`01-${trace}-${span}-00`)).toMatchObject({ traceId: trace });
  });
});
