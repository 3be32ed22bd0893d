// W3C trace context (traceparent) parsing and cheap id generation for uplink records and commands.
import { randomBytes } from 'node:crypto';
import { HEX_BYTE } from '../protocol/bytes.js';

// Lowercase hex only (W3C Trace Context: a parent-id with uppercase hex is invalid, not folded).
// Version 00 is exactly these 55 characters; a later version may append fields, each after a '-'.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/s;

export interface TraceContext {
  traceId: string;
  spanId: string;
  flags: string;
}

/**
 * Parses a traceparent header (W3C Trace Context level 1); undefined when absent or invalid:
 * version ff, uppercase hex, all-zero ids, or version 00 with anything after its flags. A higher
 * version is read by its first four fields, so its trace is continued.
 */
export function parseTraceparent(value: string | undefined): TraceContext | undefined {
  if (value === undefined) return undefined;
  const m = TRACEPARENT.exec(value.trim());
  if (!m || m[1] === 'ff') return undefined;
  if (m[1] === '00' && m[5] !== undefined) return undefined;
  if (/^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined;
  return { traceId: m[2]!, spanId: m[3]!, flags: m[4]! };
}

export function formatTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.flags}`;
}

// Random ids come from a pooled buffer: one getrandom call serves many ids.
let pool = Buffer.alloc(0);
let poolAt = 0;

function randomBytesFromPool(bytes: number): Uint8Array {
  if (poolAt + bytes > pool.length) {
    pool = randomBytes(4096);
    poolAt = 0;
  }
  const out = pool.subarray(poolAt, poolAt + bytes);
  poolAt += bytes;
  return out;
}

export function randomHex(bytes: number): string {
  return hexOf(randomBytesFromPool(bytes), 0, bytes);
}

/** Hex of b[start, end) as one flat string (Node's encoder). */
function hexOf(b: Uint8Array, start: number, end: number): string {
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('hex');
}

/** A child span of `parent` (same trace), or a new sampled trace when there is no parent. */
export function childTraceparent(parent: TraceContext | undefined): string {
  return parent === undefined
    ? `00-${randomHex(16)}-${randomHex(8)}-01`
    : `00-${parent.traceId}-${randomHex(8)}-${parent.flags}`;
}

/** Bytes of UplinkTracer.ids: trace-id head (12), span id (8), flags (1). */
export const TRACE_IDS_BYTES = 21;

/**
 * Per-session trace ids for uplink records: each record gets its own trace id made of a random
 * session prefix and its seq, so no random bytes are drawn per message on the hot path. The seq's
 * hex comes from a table (a radix toString and padStart cost ~0.1 µs more per message).
 */
export class UplinkTracer {
  /**
   * What every traceparent of this tracer holds besides its seq, as bytes: the trace id's first 12
   * bytes, the span id and the flags (TRACE_IDS_BYTES). A store keeps these 21 bytes and the row's
   * seq instead of the 55 characters (the SQLite store does: packTraceparent, traceparentOf), so
   * nothing parses the text on the write path.
   */
  readonly ids: Uint8Array;
  private readonly head: string;
  private readonly tail: string;

  constructor() {
    const ids = (this.ids = new Uint8Array(TRACE_IDS_BYTES));
    ids.set(randomBytesFromPool(20), 0);
    ids[20] = 0x01; // sampled
    this.head = `00-${hexOf(ids, 0, 12)}`;
    this.tail = `-${hexOf(ids, 12, 20)}-01`;
  }

  traceparent(seq: number): string {
    const s = seq >>> 0;
    return (
      this.head +
      HEX_BYTE[s >>> 24]! +
      HEX_BYTE[(s >>> 16) & 0xff]! +
      HEX_BYTE[(s >>> 8) & 0xff]! +
      HEX_BYTE[s & 0xff]! +
      this.tail
    );
  }
}
