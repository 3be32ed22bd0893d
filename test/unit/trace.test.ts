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
