// crc16 is table-driven and processes 8 bytes per step (slicing-by-8): it must equal the bitwise
// definition of CRC-16/CCITT-FALSE (PROTOCOL.md 1) for every length, offset and starting value.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc16 } from '../../src/protocol/index.js';

/** Bit-at-a-time reference: poly 0x1021, not reflected, xorout 0. */
function crcBitwise(buf: Uint8Array, start: number, end: number, crc: number): number {
  for (let i = start; i < end; i++) {
    crc ^= buf[i]! << 8;
    for (let b = 0; b < 8; b++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

describe('crc16 (slicing-by-8)', () => {
  it('has the check value 0x29B1 for "123456789"', () => {
    expect(crc16(new TextEncoder().encode('123456789'))).toBe(0x29b1);
  });

  it('matches the bitwise definition for every length 0–64 (each tail after the 8-byte blocks)', () => {
    const buf = Uint8Array.from({ length: 64 }, (_, i) => (i * 151 + 7) & 0xff);
    for (let len = 0; len <= 64; len++) {
      expect(crc16(buf, 0, len)).toBe(crcBitwise(buf, 0, len, 0xffff));
      expect(crc16(buf, 64 - len, 64, 0x1d0f)).toBe(crcBitwise(buf, 64 - len, 64, 0x1d0f));
    }
  });

  it('matches the bitwise definition on random ranges and starting values', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff }),
        (buf, a, b, init) => {
          const start = buf.length === 0 ? 0 : a % (buf.length + 1);
          const end = start + (buf.length === 0 ? 0 : b % (buf.length - start + 1));
          expect(crc16(buf, start, end, init)).toBe(crcBitwise(buf, start, end, init));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('continues a CRC across any split of the input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.nat(), (buf, at) => {
        const mid = at % (buf.length + 1);
        expect(crc16(buf, mid, buf.length, crc16(buf, 0, mid))).toBe(crc16(buf));
      }),
    );
  });
});
