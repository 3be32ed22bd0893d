// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320: the one of zlib, gzip and PNG) of a string's
// UTF-8. Node 20 has no zlib.crc32; check value: crc32('123456789') === 0xcbf43926.

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

const encoder = new TextEncoder();

/** CRC-32 of raw bytes, as an unsigned 32-bit integer. */
export function crc32Bytes(bytes: Uint8Array, seed = 0): number {
  let c = (seed ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** CRC-32 of the UTF-8 encoding of `s`, as an unsigned 32-bit integer. */
export function crc32(s: string): number {
  return crc32Bytes(encoder.encode(s));
}
