// Framing: `0x55 | CMD | LEN | DATA | CRC16` encode, and the incremental, resynchronising frame decoder (PROTOCOL.md 1, 1.1).
import { crc16 } from './crc16.js';
import { FRAME_OVERHEAD, MAX_FRAME_BYTES, MAX_FRAME_DATA, MORE_FLAG, SOF } from './constants.js';

/**
 * Writes one frame for `cmdByte` (code plus MORE flag) carrying `data[start, end)` into `out` at `o`.
 * Returns the offset after the frame. `end - start` must be ≤ 255.
 */
export function writeFrame(
  out: Uint8Array,
  o: number,
  cmdByte: number,
  data: Uint8Array,
  start = 0,
  end = data.length,
): number {
  const len = end - start;
  out[o] = SOF;
  out[o + 1] = cmdByte;
  out[o + 2] = len;
  if (len > 0) {
    // The whole of `data` (the usual case) needs no subarray view: one allocation less per frame.
    if (start === 0 && end === data.length) out.set(data, o + 3);
    else out.set(data.subarray(start, end), o + 3);
  }
  const crc = crc16(out, o + 1, o + 3 + len);
  out[o + 3 + len] = crc >>> 8;
  out[o + 4 + len] = crc & 0xff;
  return o + FRAME_OVERHEAD + len;
}

/** Bytes on the wire for a message of `dataLength` bytes, fragmented as 1.2 requires. */
export function encodedLength(dataLength: number): number {
  const frames = dataLength === 0 ? 1 : Math.ceil(dataLength / MAX_FRAME_DATA);
  return dataLength + frames * FRAME_OVERHEAD;
}

/**
 * Encodes one message: a single frame, or a run of frames of the same code with MORE set on
 * all but the last when DATA exceeds 255 bytes (PROTOCOL.md 1.2).
 */
export function encodeMessage(code: number, data: Uint8Array = EMPTY): Uint8Array {
  const out = new Uint8Array(encodedLength(data.length));
  writeMessage(out, 0, code, data);
  return out;
}

/** Like encodeMessage, into `out` at `o`; returns the offset after the last frame. */
export function writeMessage(out: Uint8Array, o: number, code: number, data: Uint8Array): number {
  if (data.length <= MAX_FRAME_DATA) return writeFrame(out, o, code, data);
  let start = 0;
  while (start < data.length) {
    const end = Math.min(start + MAX_FRAME_DATA, data.length);
    o = writeFrame(out, o, end < data.length ? code | MORE_FLAG : code, data, start, end);
    start = end;
  }
  return o;
}

/** Encodes a single frame with an explicit CMD byte (MORE flag included). */
export function encodeFrame(cmdByte: number, data: Uint8Array = EMPTY): Uint8Array {
  if (data.length > MAX_FRAME_DATA)
    throw new RangeError(`frame DATA is at most 255 bytes, got ${data.length}`);
  const out = new Uint8Array(FRAME_OVERHEAD + data.length);
  writeFrame(out, 0, cmdByte, data);
  return out;
}

const EMPTY = new Uint8Array(0);
const EMPTY_PEND = new Uint8Array(0);

/** What the frame decoder reports. `data` is a view valid only during the call: copy what you keep. */
export interface FrameSink {
  /** A frame with a good CRC. `cmdByte` includes the MORE flag. */
  onFrame(cmdByte: number, data: Uint8Array): void;
  /** A frame dropped for a bad CRC (PROTOCOL.md 1.1). */
  onBadFrame(): void;
  /** `count` bytes skipped while looking for a SOF. Reported once per run of garbage. */
  onGarbage(count: number): void;
}

/**
 * Incremental frame decoder: accepts any split of the byte stream, skips garbage, drops frames
 * with a bad CRC and resynchronises at the byte after their SOF (PROTOCOL.md 1.1).
 *
 * A frame wholly inside one pushed chunk is delivered as a view of that chunk (no copy); only a
 * frame that spans chunks is copied, into a fixed 260-byte buffer — so the decoder never holds
 * more than one frame whatever a peer sends.
 */
export class FrameDecoder {
  /** The incomplete frame carried over from earlier chunks, starting at its SOF. */
  // Allocated on the first frame that spans chunks: most connections never need it, and an idle
  // gateway holding tens of thousands of sessions should not hold a carry buffer for each.
  private pend: Uint8Array = EMPTY_PEND;
  private pendLen = 0;
  /** Stream offset of pend[0]. */
  private pendAt = 0;
  /** Stream offset of the next byte to be pushed. */
  private received = 0;
  /** Bytes before this stream offset lie inside a dropped frame's extent: skipping them is not garbage. */
  private quietUntil = 0;
  private halted = false;

  constructor(private readonly sink: FrameSink) {}

  /** True while an incomplete frame is buffered (the frame timeout of 1.1 applies). */
  get hasPartialFrame(): boolean {
    return this.pendLen > 0;
  }

  /** Bytes currently buffered (at most one frame). */
  get bufferedBytes(): number {
    return this.pendLen;
  }

  /** Stops decoding: later pushes are ignored (the session is closing). */
  halt(): void {
    this.halted = true;
  }

  push(chunk: Uint8Array): void {
    const base = this.received;
    this.received += chunk.length;
    this.decode(chunk, base);
  }

  /**
   * The frame timeout of 1.1: the incomplete frame is discarded, its SOF counts as one garbage
   * byte, and decoding resumes at the next 0x55 after it among the bytes already received.
   * The caller (the session's timer) decides when 2 s have passed without a byte.
   */
  expirePartialFrame(): void {
    if (this.pendLen === 0 || this.halted) return;
    const len = this.pendLen;
    const at = this.pendAt;
    this.pendLen = 0;
    if (at >= this.quietUntil) this.sink.onGarbage(1);
    let j = 1;
    while (j < len && this.pend[j] !== SOF) j++;
    // Bytes between the SOF and the next 0x55 belong to the discarded frame, not to garbage.
    if (at + j > this.quietUntil) this.quietUntil = at + j;
    if (j < len) this.decode(this.pend.slice(j, len), at + j);
  }

  /** Decodes `chunk`, whose first byte is at stream offset `base`. */
  private decode(chunk: Uint8Array, base: number): void {
    const len = chunk.length;
    let i = 0;
    const sink = this.sink;

    // 1. Complete a frame carried over from earlier chunks.
    while (this.pendLen > 0) {
      if (this.halted || i >= len) return;
      const pend = this.pend;
      if (this.pendLen === 1) {
        const b = chunk[i]!;
        if (b === SOF) {
          // 0x55 0x55: the first is garbage, the second is the SOF (CMD is never 0x55).
          if (this.pendAt >= this.quietUntil) sink.onGarbage(1);
          this.pendAt = base + i;
        } else {
          pend[1] = b;
          this.pendLen = 2;
        }
        i++;
        continue;
      }
      if (this.pendLen === 2) {
        pend[2] = chunk[i++]!;
        this.pendLen = 3;
        continue;
      }
      const total = pend[2]! + FRAME_OVERHEAD;
      const fromEarlier = base - this.pendAt; // bytes of pend that came before this chunk
      const take = Math.min(total - this.pendLen, len - i);
      pend.set(chunk.subarray(i, i + take), this.pendLen);
      this.pendLen += take;
      i += take;
      if (this.pendLen < total) return;
      this.pendLen = 0;
      const dataEnd = total - 2;
      if (crc16(pend, 1, dataEnd) === ((pend[dataEnd]! << 8) | pend[dataEnd + 1]!)) {
        sink.onFrame(pend[1]!, pend.subarray(3, dataEnd));
        continue;
      }
      sink.onBadFrame();
      const extentEnd = this.pendAt + total;
      if (extentEnd > this.quietUntil) this.quietUntil = extentEnd;
      // Resume at the byte after this frame's SOF. When that SOF came in this chunk, simply continue
      // there. Otherwise the bytes from earlier chunks after the SOF are decoded again first (they may
      // hold whole frames, or the start of one), then this chunk from its start.
      if (fromEarlier <= 0) {
        i = this.pendAt - base + 1;
        continue;
      }
      let j = 1;
      while (j < fromEarlier && pend[j] !== SOF) j++;
      i = 0;
      if (j < fromEarlier) this.decode(pend.slice(j, fromEarlier), this.pendAt + j);
    }

    // 2. Frames inside this chunk, delivered as views.
    while (i < len && !this.halted) {
      let s = i;
      if (chunk[s] !== SOF) {
        s = chunk.indexOf(SOF, i);
        const garbageEnd = s < 0 ? len : s;
        const from = Math.max(i, this.quietUntil - base);
        if (garbageEnd > from) sink.onGarbage(garbageEnd - from);
        if (s < 0 || this.halted) return;
      }
      if (s + 1 >= len) {
        this.carry(chunk, s, len, base);
        return;
      }
      const cmd = chunk[s + 1]!;
      if (cmd === SOF) {
        if (base + s >= this.quietUntil) sink.onGarbage(1);
        i = s + 1;
        continue;
      }
      if (s + 2 >= len) {
        this.carry(chunk, s, len, base);
        return;
      }
      const total = chunk[s + 2]! + FRAME_OVERHEAD;
      if (s + total > len) {
        this.carry(chunk, s, len, base);
        return;
      }
      const dataEnd = s + total - 2;
      if (crc16(chunk, s + 1, dataEnd) === ((chunk[dataEnd]! << 8) | chunk[dataEnd + 1]!)) {
        i = s + total;
        sink.onFrame(cmd, chunk.subarray(s + 3, dataEnd));
      } else {
        sink.onBadFrame();
        const extentEnd = base + s + total;
        if (extentEnd > this.quietUntil) this.quietUntil = extentEnd;
        i = s + 1;
      }
    }
  }

  private carry(chunk: Uint8Array, s: number, end: number, base: number): void {
    if (this.pend === EMPTY_PEND) this.pend = new Uint8Array(MAX_FRAME_BYTES);
    this.pend.set(chunk.subarray(s, end), 0);
    this.pendLen = end - s;
    this.pendAt = base + s;
  }
}
