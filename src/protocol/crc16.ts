// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0): the frame check of PROTOCOL.md 1.

const TABLE = /* @__PURE__ */ (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let b = 0; b < 8; b++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** CRC of `buf[start, end)`, continuing from `crc` (0xFFFF for a fresh CRC). */
export function crc16(buf: Uint8Array, start = 0, end = buf.length, crc = 0xffff): number {
  for (let i = start; i < end; i++) {
    crc = ((crc << 8) & 0xff00) ^ TABLE[((crc >>> 8) ^ buf[i]!) & 0xff]!;
  }
  return crc;
}
