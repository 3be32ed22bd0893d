// Small pure helpers for big-endian integers, hex and strict UTF-8 on Uint8Array views.

export function readU16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

export function readU32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

export function readI32(b: Uint8Array, o: number): number {
  return (b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!;
}

export function readI16(b: Uint8Array, o: number): number {
  return (((b[o]! << 8) | b[o + 1]!) << 16) >> 16;
}

/** u64 as a number; undefined past 2^53 − 1 (no millisecond timestamp gets there). */
export function readU64(b: Uint8Array, o: number): number | undefined {
  const hi = readU32(b, o);
  if (hi > 0x1fffff) return undefined;
  return hi * 0x1_0000_0000 + readU32(b, o + 4);
}

export function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}

export function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

export function writeU64(b: Uint8Array, o: number, v: number): void {
  writeU32(b, o, Math.floor(v / 0x1_0000_0000));
  writeU32(b, o + 4, v >>> 0);
}

/** Two lower-case hex digits per byte value. */
export const HEX_BYTE: readonly string[] = Array.from({ length: 256 }, (_, i) =>
  i.toString(16).padStart(2, '0'),
);

export function toHex(b: Uint8Array, start = 0, end = b.length): string {
  let s = '';
  for (let i = start; i < end; i++) s += HEX_BYTE[b[i]!]!;
  return s;
}

export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new TypeError(`not hex: ${hex}`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

// ignoreBOM keeps a leading U+FEFF as data; fatal makes malformed sequences an error, not U+FFFD.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/** Strict UTF-8 decode; undefined when the bytes are not valid UTF-8. */
export function decodeUtf8(b: Uint8Array, start: number, end: number): string | undefined {
  if (end - start === 0) return '';
  // ASCII fast path: most ids and names are ASCII, and building them directly beats TextDecoder.
  if (end - start <= 32) {
    let s = '';
    for (let i = start; i < end; i++) {
      const c = b[i]!;
      if (c >= 0x80) return decodeUtf8Slow(b, start, end);
      s += String.fromCharCode(c);
    }
    return s;
  }
  return decodeUtf8Slow(b, start, end);
}

function decodeUtf8Slow(b: Uint8Array, start: number, end: number): string | undefined {
  try {
    return strictUtf8.decode(b.subarray(start, end));
  } catch {
    return undefined;
  }
}

export function encodeUtf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}
