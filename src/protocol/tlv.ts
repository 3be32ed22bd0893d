// TLV records `TAG u8 | LENGTH u32 | VALUE` (PROTOCOL.md 1.3): a zero-allocation reader and a writer.
import { VmcpError } from '../errors.js';
import { encodeUtf8, readU32, writeU16, writeU32, writeU64 } from './bytes.js';

export const TLV_HEADER = 5;

/**
 * A cursor over the TLV records of `buf[start, end)`. `next()` moves to the next record and sets
 * `tag`, `valueStart` and `valueLength`; it throws a VmcpError when a record runs past the end or a
 * tag repeats (1.3). One reader is reused for every message, so decoding allocates nothing here.
 */
export class TlvReader {
  buf: Uint8Array = new Uint8Array(0);
  tag = 0;
  valueStart = 0;
  valueLength = 0;
  private pos = 0;
  private end = 0;
  private readonly seen = new Uint32Array(8);

  reset(buf: Uint8Array, start: number, end: number = buf.length): this {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    this.seen.fill(0);
    return this;
  }

  next(): boolean {
    const pos = this.pos;
    if (pos >= this.end) return false;
    if (this.end - pos < TLV_HEADER) throw new VmcpError('VMCP_ERR_TLV_TRUNCATED');
    const buf = this.buf;
    const tag = buf[pos]!;
    const length = readU32(buf, pos + 1);
    if (length > this.end - pos - TLV_HEADER)
      throw new VmcpError('VMCP_ERR_TLV_TRUNCATED', undefined, { field: tag });
    const word = tag >>> 5;
    const bit = 1 << (tag & 31);
    if ((this.seen[word]! & bit) !== 0)
      throw new VmcpError('VMCP_ERR_TLV_REPEATED', undefined, { field: tag });
    this.seen[word]! |= bit;
    this.tag = tag;
    this.valueStart = pos + TLV_HEADER;
    this.valueLength = length;
    this.pos = pos + TLV_HEADER + length;
    return true;
  }

  /** The current value as a view. */
  value(): Uint8Array {
    return this.buf.subarray(this.valueStart, this.valueStart + this.valueLength);
  }
}

export type TlvRecord = readonly [tag: number, value: Uint8Array];

/** All records of `buf` (copies of the values); throws VmcpError on invalid layout or a repeated tag. */
export function decodeTlvs(buf: Uint8Array, start = 0, end = buf.length): TlvRecord[] {
  const r = new TlvReader().reset(buf, start, end);
  const out: TlvRecord[] = [];
  while (r.next()) out.push([r.tag, r.value().slice()]);
  return out;
}

/** Builds a message's DATA: a fixed prefix then TLV records. Grows as needed. */
export class ByteWriter {
  private buf: Uint8Array;
  private len = 0;

  constructor(initial = 64) {
    this.buf = new Uint8Array(initial);
  }

  get length(): number {
    return this.len;
  }

  private room(n: number): number {
    const at = this.len;
    if (at + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, at + n));
      next.set(this.buf.subarray(0, at));
      this.buf = next;
    }
    this.len = at + n;
    return at;
  }

  // Each writer reserves room first and only then reads `this.buf`: room() may replace the buffer,
  // and `this.buf[this.room(1)]` would evaluate `this.buf` (the old, outgrown one) before growing it.
  u8(v: number): this {
    const at = this.room(1);
    this.buf[at] = v;
    return this;
  }
  u16(v: number): this {
    const at = this.room(2);
    writeU16(this.buf, at, v);
    return this;
  }
  u32(v: number): this {
    const at = this.room(4);
    writeU32(this.buf, at, v);
    return this;
  }
  u64(v: number): this {
    const at = this.room(8);
    writeU64(this.buf, at, v);
    return this;
  }
  bytes(b: Uint8Array): this {
    const at = this.room(b.length);
    this.buf.set(b, at);
    return this;
  }

  tlv(tag: number, value: Uint8Array): this {
    const at = this.room(TLV_HEADER);
    this.buf[at] = tag;
    writeU32(this.buf, at + 1, value.length);
    return this.bytes(value);
  }
  tlvU8(tag: number, v: number): this {
    return this.header(tag, 1).u8(v);
  }
  tlvU16(tag: number, v: number): this {
    return this.header(tag, 2).u16(v & 0xffff);
  }
  tlvI16(tag: number, v: number): this {
    return this.header(tag, 2).u16(v & 0xffff);
  }
  tlvU32(tag: number, v: number): this {
    return this.header(tag, 4).u32(v >>> 0);
  }
  tlvI32(tag: number, v: number): this {
    return this.header(tag, 4).u32(v >>> 0);
  }
  tlvU64(tag: number, v: number): this {
    return this.header(tag, 8).u64(v);
  }
  tlvString(tag: number, s: string): this {
    return this.tlv(tag, encodeUtf8(s));
  }

  private header(tag: number, length: number): this {
    const at = this.room(TLV_HEADER);
    this.buf[at] = tag;
    writeU32(this.buf, at + 1, length);
    return this;
  }

  /** The bytes written (a view of the internal buffer; the writer must not be reused after). */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}
