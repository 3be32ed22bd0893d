// FrameDecoder (PROTOCOL.md 1, 1.1): garbage, 0x55 0x55, bad-CRC resync, frame timeout, halt, buffer bound.
import { describe, expect, it } from 'vitest';
import {
  FrameDecoder,
  MAX_FRAME_BYTES,
  crc16,
  encodeFrame,
  encodeMessage,
  encodedLength,
  fromHex,
  toHex,
} from '../../src/protocol/index.js';

const PING = '5501002e3e';
const PONG = '5502007b6d';
/** Read sensor channel 1 (the reference frame of PROTOCOL.md 1). */
const READ = '5503020100424d';

interface Out {
  frames: [number, string][];
  garbage: number;
  badFrames: number;
  /** Every callback in order, for ordering assertions. */
  events: string[];
  /** Largest bufferedBytes seen after any push. */
  maxBuffered: number;
}

function decoder(onFrame?: (d: FrameDecoder) => void): { d: FrameDecoder; out: Out } {
  const out: Out = { frames: [], garbage: 0, badFrames: 0, events: [], maxBuffered: 0 };
  const d: FrameDecoder = new FrameDecoder({
    onFrame: (cmd, data) => {
      out.frames.push([cmd, toHex(data)]);
      out.events.push(`frame ${cmd.toString(16)}:${toHex(data)}`);
      onFrame?.(d);
    },
    onBadFrame: () => {
      out.badFrames++;
      out.events.push('bad');
    },
    onGarbage: (n) => {
      out.garbage += n;
      out.events.push(`garbage ${n}`);
    },
  });
  return { d, out };
}

function push(d: FrameDecoder, out: Out, chunks: (string | Uint8Array)[]): void {
  for (const c of chunks) {
    d.push(typeof c === 'string' ? fromHex(c) : c);
    out.maxBuffered = Math.max(out.maxBuffered, d.bufferedBytes);
  }
}

function decode(chunks: (string | Uint8Array)[]): Out {
  const { d, out } = decoder();
  push(d, out, chunks);
  return out;
}

function bytewise(hex: string): Uint8Array[] {
  return Array.from(fromHex(hex), (b) => Uint8Array.of(b));
}

/** Every way of cutting `hex` into two chunks. */
function twoWaySplits(hex: string): Uint8Array[][] {
  const all = fromHex(hex);
  const out: Uint8Array[][] = [];
  for (let cut = 0; cut <= all.length; cut++) out.push([all.subarray(0, cut), all.subarray(cut)]);
  return out;
}

/** Every way of cutting `hex` into three chunks. */
function threeWaySplits(hex: string): Uint8Array[][] {
  const all = fromHex(hex);
  const out: Uint8Array[][] = [];
  for (let a = 0; a <= all.length; a++)
    for (let b = a; b <= all.length; b++)
      out.push([all.subarray(0, a), all.subarray(a, b), all.subarray(b)]);
  return out;
}

/** A frame like encodeFrame's but with the CRC inverted (so it never matches). */
function badFrame(cmdByte: number, dataHex: string): string {
  const good = encodeFrame(cmdByte, fromHex(dataHex));
  good[good.length - 1] ^= 0xff;
  good[good.length - 2] ^= 0xff;
  return toHex(good);
}

type Expect = { frames: [number, string][]; garbage: number; badFrames: number };

/** The same outcome for one chunk, byte by byte, and every 2- and (optionally) 3-way split. */
function expectEverySplit(hex: string, want: Expect, threeWay = true): void {
  const cases: Uint8Array[][] = [[fromHex(hex)], bytewise(hex), ...twoWaySplits(hex)];
  if (threeWay) cases.push(...threeWaySplits(hex));
  for (const chunks of cases) {
    const out = decode(chunks);
    const got = { frames: out.frames, garbage: out.garbage, badFrames: out.badFrames };
    expect(got, `chunks ${chunks.map((c) => toHex(c)).join(' | ')}`).toEqual(want);
  }
}

describe('encoders', () => {
  it('encodes the reference frames of PROTOCOL.md 1', () => {
    expect(toHex(encodeFrame(0x03, Uint8Array.of(0x01, 0x00)))).toBe(READ);
    expect(toHex(encodeFrame(0x01))).toBe(PING);
    expect(toHex(encodeFrame(0x02))).toBe(PONG);
  });

  it('computes the CRC over CMD, LEN and DATA only, sent big-endian', () => {
    const frame = fromHex(READ);
    const crc = crc16(frame, 1, frame.length - 2);
    expect(frame[frame.length - 2]).toBe(crc >>> 8);
    expect(frame[frame.length - 1]).toBe(crc & 0xff);
    expect(crc16(new TextEncoder().encode('123456789'))).toBe(0x29b1);
  });

  it('refuses a single frame with more than 255 bytes of DATA', () => {
    expect(() => encodeFrame(0x01, new Uint8Array(256))).toThrow(RangeError);
    expect(encodeFrame(0x01, new Uint8Array(255)).length).toBe(MAX_FRAME_BYTES);
  });

  it('fragments a message over 255 bytes into a MORE run of the same code', () => {
    for (const [len, frames] of [
      [0, 1],
      [1, 1],
      [255, 1],
      [256, 2],
      [510, 2],
      [511, 3],
      [16_384, 65],
    ] as const) {
      const data = Uint8Array.from({ length: len }, (_, i) => i * 7);
      const wire = encodeMessage(0x20, data);
      expect(wire.length).toBe(encodedLength(len));
      expect(wire.length).toBe(len + 5 * frames);
      const out = decode([wire]);
      expect(out.frames.length).toBe(frames);
      out.frames.forEach(([cmd], i) => expect(cmd).toBe(i < frames - 1 ? 0xa0 : 0x20));
      expect(out.frames.map(([, d]) => d).join('')).toBe(toHex(data));
      expect(out.frames.slice(0, -1).every(([, d]) => d.length === 510)).toBe(true);
    }
  });
});

describe('FrameDecoder: valid frames', () => {
  it('delivers frames from one chunk, byte by byte and at every split, CMD byte with MORE flag', () => {
    const more = toHex(encodeFrame(0x90, fromHex('aabb')));
    expectEverySplit(PING + READ + more + PONG, {
      frames: [
        [0x01, ''],
        [0x03, '0100'],
        [0x90, 'aabb'],
        [0x02, ''],
      ],
      garbage: 0,
      badFrames: 0,
    });
  });

  it('delivers a maximum-size frame (LEN 255) split anywhere', () => {
    const data = Uint8Array.from({ length: 255 }, (_, i) => (i * 31) & 0xff);
    const wire = toHex(encodeFrame(0x04, data));
    expectEverySplit(wire, { frames: [[0x04, toHex(data)]], garbage: 0, badFrames: 0 }, false);
  });

  it('delivers DATA containing 0x55 bytes intact', () => {
    const wire = toHex(encodeFrame(0x04, fromHex('55555555')));
    expectEverySplit(wire + PING, {
      frames: [
        [0x04, '55555555'],
        [0x01, ''],
      ],
      garbage: 0,
      badFrames: 0,
    });
  });

  it('keeps an incomplete frame buffered and reports nothing for it', () => {
    const { d, out } = decoder();
    push(d, out, ['55030201']);
    expect(out.events).toEqual([]);
    expect(d.hasPartialFrame).toBe(true);
    expect(d.bufferedBytes).toBe(4);
    push(d, out, ['00424d']);
    expect(out.frames).toEqual([[0x03, '0100']]);
    expect(d.hasPartialFrame).toBe(false);
    expect(d.bufferedBytes).toBe(0);
  });
});

describe('FrameDecoder: garbage', () => {
  it('counts each non-0x55 byte where a SOF is expected', () => {
    expectEverySplit('00017f80ff' + PING + 'aabb' + PONG + '01', {
      frames: [
        [0x01, ''],
        [0x02, ''],
      ],
      garbage: 8,
      badFrames: 0,
    });
  });

  it('reports a run of garbage inside one chunk once, and before the frame after it', () => {
    const out = decode(['00010203' + PING]);
    expect(out.events).toEqual(['garbage 4', 'frame 1:']);
  });

  it('counts trailing garbage at once, not when the next byte arrives', () => {
    const { d, out } = decoder();
    push(d, out, [PING + 'aabbcc']);
    expect(out.garbage).toBe(3);
    expect(d.bufferedBytes).toBe(0);
  });

  it('0x55 0x55: the first is garbage, the second the SOF', () => {
    expectEverySplit('55' + PING, { frames: [[0x01, '']], garbage: 1, badFrames: 0 });
    expectEverySplit('555555' + READ, { frames: [[0x03, '0100']], garbage: 3, badFrames: 0 });
    expectEverySplit(PING + '55' + PONG, {
      frames: [
        [0x01, ''],
        [0x02, ''],
      ],
      garbage: 1,
      badFrames: 0,
    });
  });

  it('a lone 0x55 at the end is buffered, not yet garbage', () => {
    const { d, out } = decoder();
    push(d, out, [PING + '55']);
    expect(out.garbage).toBe(0);
    expect(d.bufferedBytes).toBe(1);
    push(d, out, ['55']);
    expect(out.garbage).toBe(1);
    expect(d.bufferedBytes).toBe(1);
  });
});

describe('FrameDecoder: bad CRC and resynchronisation', () => {
  it('drops a bad frame; bytes inside its extent are not garbage', () => {
    const bad = badFrame(0x20, '0102030405');
    expectEverySplit(bad, { frames: [], garbage: 0, badFrames: 1 });
    expectEverySplit(badFrame(0x01, ''), { frames: [], garbage: 0, badFrames: 1 });
  });

  it('counts bytes after the bad frame extent as garbage again', () => {
    expectEverySplit(badFrame(0x20, '0102030405') + 'aabb' + PING, {
      frames: [[0x01, '']],
      garbage: 2,
      badFrames: 1,
    });
  });

  it('a frame right after a bad one is delivered, split anywhere (several chunks)', () => {
    const bad = badFrame(0x20, 'a1a2a3a4a5a6a7a8a9');
    expectEverySplit(bad + READ + bad + PING, {
      frames: [
        [0x03, '0100'],
        [0x01, ''],
      ],
      garbage: 0,
      badFrames: 2,
    });
  });

  it('reports the bad frame before the frame that follows it', () => {
    expect(decode([badFrame(0x01, '00') + PING]).events).toEqual(['bad', 'frame 1:']);
  });

  it('a flipped DATA bit makes a frame bad', () => {
    const frame = encodeFrame(0x03, Uint8Array.of(0x01, 0x00));
    frame[3] ^= 0x01;
    expectEverySplit(toHex(frame), { frames: [], garbage: 0, badFrames: 1 });
  });

  it('a 0x55 inside a bad frame starts a real frame (inner frame ends with the bad frame)', () => {
    // 55 01 03 [55 01 00] [2e 3e]: the outer CRC is wrong; the PING starts at its DATA.
    expect(crc16(fromHex('0103550100'))).not.toBe(0x2e3e);
    expectEverySplit('550103' + PING, { frames: [[0x01, '']], garbage: 0, badFrames: 1 });
  });

  it('a 0x55 inside a bad frame starts a real frame that runs past the bad frame', () => {
    // 55 01 02 [55 01] [00 2e] 3e: the PING's last byte lies after the outer extent.
    expect(crc16(fromHex('01025501'))).not.toBe(0x002e);
    expectEverySplit('550102' + PING + READ, {
      frames: [
        [0x01, ''],
        [0x03, '0100'],
      ],
      garbage: 0,
      badFrames: 1,
    });
  });

  it('a bad frame nested in a bad frame: both extents are quiet, bytes past them are garbage', () => {
    // Outer 55 01 02 [55 01] [04 00]; inner 55 01 04 [00 00 00 00] [00 00]; then 'aa'.
    expectEverySplit('550102550104000000000000' + 'aa' + PING, {
      frames: [[0x01, '']],
      garbage: 1,
      badFrames: 2,
    });
  });

  it('the bad frame spans several pushed chunks: its bytes are never garbage', () => {
    const bad = badFrame(0x21, '0001020304050607080900010203040506070809');
    const { d, out } = decoder();
    const all = fromHex(bad + 'ee' + PING);
    push(d, out, [all.subarray(0, 4), all.subarray(4, 9), all.subarray(9, 20), all.subarray(20)]);
    expect(out.badFrames).toBe(1);
    expect(out.garbage).toBe(1);
    expect(out.frames).toEqual([[0x01, '']]);
  });

  it('a PING nested in a bad frame spanning two chunks, ending with the first chunk, is delivered', () => {
    // Outer: 55 01 0a [PING 00 00 00 00 00] [ff ff]. The first chunk ends right after the PING.
    const outer = '55010a' + PING + '0000000000' + 'ffff';
    const want: Expect = {
      frames: [
        [0x01, ''],
        [0x02, ''],
      ],
      garbage: 0,
      badFrames: 1,
    };
    const out = decode([outer.slice(0, 16), outer.slice(16) + PONG]);
    expect({ frames: out.frames, garbage: out.garbage, badFrames: out.badFrames }).toEqual(want);
  });

  // After a bad CRC in a frame that spans chunks, the carried-over bytes after its SOF may hold a
  // complete frame and more: they must be re-scanned like any other bytes (PROTOCOL.md 1.1).
  it('a PING nested in a bad frame spanning two chunks, with more bytes after it in the first chunk, is delivered and so is the next frame', () => {
    const outer = '55010a' + PING + '0000000000' + 'ffff';
    // First chunk: 55 01 0a 55 01 00 2e 3e 00 (the PING and one more byte of the outer frame).
    const out = decode([outer.slice(0, 18), outer.slice(18) + PONG]);
    expect({ frames: out.frames, garbage: out.garbage, badFrames: out.badFrames }).toEqual({
      frames: [
        [0x01, ''],
        [0x02, ''],
      ],
      garbage: 0,
      badFrames: 1,
    });
  });

  // The SOF taken over from a 0x55 0x55 pair may open the chunk that completes its (bad) frame:
  // the frame is still one bad frame, and resync starts at the byte after that SOF.
  it('0x55 | 0x55 + bad frame in the next chunk: one garbage byte and one bad frame', () => {
    // Chunk 1 is a lone 0x55; chunk 2 opens with the bad frame's SOF (55 01 00 d1 c1), then a PING.
    const out = decode(['55', badFrame(0x01, '') + PING]);
    expect({ frames: out.frames, garbage: out.garbage, badFrames: out.badFrames }).toEqual({
      frames: [[0x01, '']],
      garbage: 1,
      badFrames: 1,
    });
  });
});

describe('FrameDecoder: frame timeout (expirePartialFrame)', () => {
  it('does nothing without an incomplete frame', () => {
    const { d, out } = decoder();
    d.expirePartialFrame();
    push(d, out, [PING]);
    d.expirePartialFrame();
    expect(out.events).toEqual(['frame 1:']);
  });

  it('discards the incomplete frame: its SOF is one garbage byte, the rest is not counted', () => {
    const { d, out } = decoder();
    push(d, out, ['550105aabbcc']);
    expect(d.bufferedBytes).toBe(6);
    d.expirePartialFrame();
    expect(out.garbage).toBe(1);
    expect(out.badFrames).toBe(0);
    expect(d.hasPartialFrame).toBe(false);
    expect(d.bufferedBytes).toBe(0);
    push(d, out, ['dd' + PING]);
    // 'dd' arrives after the expiry: it is ordinary garbage.
    expect(out.garbage).toBe(2);
    expect(out.frames).toEqual([[0x01, '']]);
  });

  it('a lone buffered SOF expires as one garbage byte', () => {
    const { d, out } = decoder();
    push(d, out, ['55']);
    d.expirePartialFrame();
    expect(out.garbage).toBe(1);
    expect(d.bufferedBytes).toBe(0);
  });

  it('a complete PING hidden inside an incomplete long frame is delivered after expiry', () => {
    const stream = '550120' + PING + '0000';
    for (const chunks of [[fromHex(stream)], bytewise(stream), ...twoWaySplits(stream)]) {
      const { d, out } = decoder();
      push(d, out, chunks);
      expect(out.frames).toEqual([]);
      expect(d.bufferedBytes).toBe(10);
      d.expirePartialFrame();
      expect(out.frames).toEqual([[0x01, '']]);
      // The SOF, then the two 00 bytes after the PING; '01 20' belong to the discarded frame.
      expect(out.garbage).toBe(3);
      expect(out.badFrames).toBe(0);
      expect(d.bufferedBytes).toBe(0);
    }
  });

  it('resumes at the next 0x55: an incomplete frame there stays buffered and completes later', () => {
    const inner = toHex(encodeFrame(0x20, fromHex('aabbccddee')));
    const { d, out } = decoder();
    push(d, out, ['5501ff0102' + inner.slice(0, 8)]);
    d.expirePartialFrame();
    expect(out.garbage).toBe(1);
    expect(d.bufferedBytes).toBe(4);
    push(d, out, [inner.slice(8) + PING]);
    expect(out.frames).toEqual([
      [0x20, 'aabbccddee'],
      [0x01, ''],
    ]);
    expect(out.garbage).toBe(1);
  });

  it('expiring again discards the frame found by the previous expiry', () => {
    const { d, out } = decoder();
    push(d, out, ['5501ff00' + '550230']);
    d.expirePartialFrame();
    expect(out.garbage).toBe(1);
    expect(d.bufferedBytes).toBe(3);
    d.expirePartialFrame();
    expect(out.garbage).toBe(2);
    expect(d.bufferedBytes).toBe(0);
    push(d, out, [PONG]);
    expect(out.frames).toEqual([[0x02, '']]);
    expect(out.garbage).toBe(2);
  });

  it('a bad frame found among the buffered bytes after expiry is a bad frame, not garbage', () => {
    const { d, out } = decoder();
    push(d, out, ['5501ff' + badFrame(0x01, '0102') + 'aa']);
    d.expirePartialFrame();
    expect(out.badFrames).toBe(1);
    expect(out.garbage).toBe(2); // the expired SOF and 'aa'
  });
});

describe('FrameDecoder: halt', () => {
  it('ignores every push after halt()', () => {
    const { d, out } = decoder();
    push(d, out, [PING]);
    d.halt();
    push(d, out, [PING + 'aabb' + badFrame(0x01, '') + PONG]);
    expect(out.events).toEqual(['frame 1:']);
  });

  it('halt() inside onFrame stops delivery of the rest of the chunk', () => {
    const { d, out } = decoder((dec) => dec.halt());
    push(d, out, [PING + PONG + 'aa']);
    expect(out.events).toEqual(['frame 1:']);
  });

  it('halt() inside onFrame of a frame that spans chunks stops the rest of that chunk', () => {
    const { d, out } = decoder((dec) => dec.halt());
    push(d, out, ['550100', '2e3e' + PONG]);
    expect(out.events).toEqual(['frame 1:']);
  });

  it('expirePartialFrame() after halt() reports nothing', () => {
    const { d, out } = decoder();
    push(d, out, ['550120' + PING]);
    d.halt();
    d.expirePartialFrame();
    expect(out.events).toEqual([]);
  });
});

describe('FrameDecoder: buffer bound', () => {
  it('never buffers more than one maximum frame (260 bytes)', () => {
    const { d, out } = decoder();
    // A maximal frame byte by byte, then long runs of frame starts that never complete.
    const big = encodeFrame(0x04, new Uint8Array(255).fill(0x55));
    for (const b of big) push(d, out, [Uint8Array.of(b)]);
    expect(out.frames.length).toBe(1);
    expect(out.maxBuffered).toBe(259);
    const starts = new Uint8Array(3000);
    for (let i = 0; i < starts.length; i++) starts[i] = i % 3 === 0 ? 0x55 : 0xff;
    push(d, out, [starts]);
    for (let i = 0; i < starts.length; i += 7) push(d, out, [starts.subarray(i, i + 7)]);
    expect(out.maxBuffered).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    expect(d.bufferedBytes).toBeLessThanOrEqual(MAX_FRAME_BYTES);
  });

  it('an incomplete frame of LEN 255 holds 259 bytes, then completes and frees them', () => {
    const frame = encodeFrame(0x04, new Uint8Array(255));
    const { d, out } = decoder();
    push(d, out, [frame.subarray(0, 259)]);
    expect(d.bufferedBytes).toBe(259);
    push(d, out, [frame.subarray(259)]);
    expect(d.bufferedBytes).toBe(0);
    expect(out.frames.length).toBe(1);
  });
});
