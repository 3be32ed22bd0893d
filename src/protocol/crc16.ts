// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0): the frame check of PROTOCOL.md 1.
//
// Slicing-by-8: T0 is the classic byte table; Tk[b] is the CRC contribution of byte b followed by
// k zero bytes. The 16-bit register only mixes into the first two bytes of each 8-byte block, so
// one block is eight independent lookups XORed together instead of eight dependent steps.

function makeTables(): Uint16Array[] {
  const t0 = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let b = 0; b < 8; b++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t0[i] = c;
  }
  const tables = [t0];
  for (let k = 1; k < 8; k++) {
    const prev = tables[k - 1]!;
    const t = new Uint16Array(256);
    // Advance the previous table's value by one zero byte.
    for (let i = 0; i < 256; i++) t[i] = ((prev[i]! << 8) & 0xff00) ^ t0[prev[i]! >>> 8]!;
    tables.push(t);
  }
  return tables;
}

const [T0, T1, T2, T3, T4, T5, T6, T7] = /* @__PURE__ */ makeTables() as [
  Uint16Array,
  Uint16Array,
  Uint16Array,
  Uint16Array,
  Uint16Array,
  Uint16Array,
  Uint16Array,
  Uint16Array,
];

/** CRC of `buf[start, end)`, continuing from `crc` (0xFFFF for a fresh CRC). */
export function crc16(buf: Uint8Array, start = 0, end = buf.length, crc = 0xffff): number {
  let i = start;
  for (; i + 8 <= end; i += 8) {
    crc =
      T7[((crc >>> 8) ^ buf[i]!) & 0xff]! ^
      T6[(crc ^ buf[i + 1]!) & 0xff]! ^
      T5[buf[i + 2]!]! ^
      T4[buf[i + 3]!]! ^
      T3[buf[i + 4]!]! ^
      T2[buf[i + 5]!]! ^
      T1[buf[i + 6]!]! ^
      T0[buf[i + 7]!]!;
  }
  for (; i < end; i++) {
    crc = ((crc << 8) & 0xff00) ^ T0[((crc >>> 8) ^ buf[i]!) & 0xff]!;
  }
  return crc;
}
