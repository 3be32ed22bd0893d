// MessageAssembler (PROTOCOL.md 1.2): MORE runs, broken runs, the size limit, buffer release.
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  FrameDecoder,
  MORE_FLAG,
  MessageAssembler,
  encodeFrame,
  encodeMessage,
  toHex,
  type MessageSink,
} from '../../src/protocol/index.js';

interface Out {
  events: string[];
  messages: [number, string][];
}

function assembler(maxMessageBytes?: number): { a: MessageAssembler; out: Out } {
  const out: Out = { events: [], messages: [] };
  const sink: MessageSink = {
    onMessage: (code, data) => {
      out.messages.push([code, toHex(data)]);
      out.events.push(`message ${code.toString(16)} ${data.length}`);
    },
    onBrokenRun: (code) => out.events.push(`broken ${code.toString(16)}`),
    onTooLarge: (code) => out.events.push(`tooLarge ${code.toString(16)}`),
    onBadFrame: () => out.events.push('bad'),
    onGarbage: (n) => out.events.push(`garbage ${n}`),
  };
  return { a: new MessageAssembler(sink, maxMessageBytes), out };
}

function bytes(len: number, seed = 1): Uint8Array {
  return Uint8Array.from({ length: len }, (_, i) => (i * 13 + seed) & 0xff);
}

/** The assembler's private run buffer (released after a run, PROTOCOL.md 1.2 / the class comment). */
function runBuffer(a: MessageAssembler): Uint8Array | undefined {
  return (a as unknown as { buf: Uint8Array | undefined }).buf;
}

describe('MessageAssembler: single frames', () => {
  it('passes a frame without MORE through as one message, code without the flag', () => {
    const { a, out } = assembler();
    a.onFrame(0x01, new Uint8Array(0));
    a.onFrame(0x20, Uint8Array.of(1, 2, 3));
    expect(out.messages).toEqual([
      [0x01, ''],
      [0x20, '010203'],
    ]);
    expect(a.inRun).toBe(false);
  });

  it('forwards bad frames and garbage', () => {
    const { a, out } = assembler();
    a.onBadFrame();
    a.onGarbage(7);
    expect(out.events).toEqual(['bad', 'garbage 7']);
  });

  it('a single frame larger than a small limit is TOO_LARGE; one at the limit is a message', () => {
    const { a, out } = assembler(10);
    a.onFrame(0x20, bytes(10));
    a.onFrame(0x21, bytes(11));
    a.onFrame(0x01, bytes(0));
    expect(out.events).toEqual(['message 20 10', 'tooLarge 21', 'message 1 0']);
  });
});

describe('MessageAssembler: MORE runs', () => {
  it('reassembles a run of frames of one code, MORE on all but the last', () => {
    const { a, out } = assembler();
    const parts = [bytes(255, 1), bytes(255, 2), bytes(40, 3)];
    a.onFrame(0x30 | MORE_FLAG, parts[0]!);
    expect(a.inRun).toBe(true);
    a.onFrame(0x30 | MORE_FLAG, parts[1]!);
    expect(out.events).toEqual([]);
    a.onFrame(0x30, parts[2]!);
    expect(out.messages).toEqual([[0x30, parts.map((p) => toHex(p)).join('')]]);
    expect(a.inRun).toBe(false);
  });

  it('accepts short and empty fragments', () => {
    const { a, out } = assembler();
    a.onFrame(0x10 | MORE_FLAG, Uint8Array.of(1));
    a.onFrame(0x10 | MORE_FLAG, new Uint8Array(0));
    a.onFrame(0x10 | MORE_FLAG, Uint8Array.of(2, 3));
    a.onFrame(0x10, new Uint8Array(0));
    expect(out.messages).toEqual([[0x10, '010203']]);
  });

  it('copies fragments: a fragment view overwritten after its call does not change the message', () => {
    const { a, out } = assembler();
    const shared = Uint8Array.of(1, 2, 3);
    a.onFrame(0x10 | MORE_FLAG, shared);
    shared.fill(9);
    a.onFrame(0x10, shared);
    expect(out.messages).toEqual([[0x10, '010203090909']]);
  });

  it('reassembles two runs back to back, the second independent of the first', () => {
    const { a, out } = assembler();
    a.onFrame(0x23 | MORE_FLAG, bytes(255, 5));
    a.onFrame(0x23, bytes(3, 6));
    a.onFrame(0x23 | MORE_FLAG, bytes(2, 7));
    a.onFrame(0x23, bytes(1, 8));
    expect(out.messages).toEqual([
      [0x23, toHex(bytes(255, 5)) + toHex(bytes(3, 6))],
      [0x23, toHex(bytes(2, 7)) + toHex(bytes(1, 8))],
    ]);
  });

  it('reassembles a maximum-size message (16,384 bytes) exactly', () => {
    const { a, out } = assembler();
    const data = bytes(DEFAULT_MAX_MESSAGE_BYTES, 3);
    const d = new FrameDecoder(a);
    d.push(encodeMessage(0x10, data));
    expect(out.messages).toEqual([[0x10, toHex(data)]]);
  });
});

describe('MessageAssembler: broken runs', () => {
  it('a frame of another code breaks the run; that frame is then processed normally', () => {
    const { a, out } = assembler();
    a.onFrame(0x10 | MORE_FLAG, bytes(255));
    a.onFrame(0x01, Uint8Array.of(0xaa));
    expect(out.events).toEqual(['broken 10', 'message 1 1']);
    expect(out.messages).toEqual([[0x01, 'aa']]);
    expect(a.inRun).toBe(false);
  });

  it('the interrupting frame may start a new run, which completes normally', () => {
    const { a, out } = assembler();
    a.onFrame(0x10 | MORE_FLAG, bytes(100, 1));
    a.onFrame(0x10 | MORE_FLAG, bytes(100, 2));
    a.onFrame(0x30 | MORE_FLAG, bytes(5, 3));
    expect(out.events).toEqual(['broken 10']);
    expect(a.inRun).toBe(true);
    a.onFrame(0x30, bytes(4, 4));
    expect(out.events).toEqual(['broken 10', 'message 30 9']);
    // None of the broken run's bytes leak into the new message.
    expect(out.messages).toEqual([[0x30, toHex(bytes(5, 3)) + toHex(bytes(4, 4))]]);
  });

  it('the interrupting code is compared without the MORE flag', () => {
    const { a, out } = assembler();
    a.onFrame(0x21 | MORE_FLAG, Uint8Array.of(1));
    a.onFrame(0x21 | MORE_FLAG, Uint8Array.of(2));
    a.onFrame(0x21, Uint8Array.of(3));
    expect(out.events).toEqual(['message 21 3']);
  });

  it('through the frame decoder: a PING inside a CONNECT run breaks it', () => {
    const { a, out } = assembler();
    const d = new FrameDecoder(a);
    const wire = encodeMessage(0x10, bytes(300));
    d.push(wire.subarray(0, 260)); // the first (MORE) frame
    d.push(encodeFrame(0x01));
    d.push(wire.subarray(260)); // the last fragment alone: a complete one-frame message
    expect(out.events).toEqual(['broken 10', 'message 1 0', 'message 10 45']);
  });
});

describe('MessageAssembler: size limit', () => {
  it('reports TOO_LARGE as soon as the run passes the limit, before the final fragment', () => {
    const { a, out } = assembler(600);
    a.onFrame(0x10 | MORE_FLAG, bytes(255));
    a.onFrame(0x10 | MORE_FLAG, bytes(255));
    expect(out.events).toEqual([]);
    a.onFrame(0x10 | MORE_FLAG, bytes(255)); // 765 > 600
    expect(out.events).toEqual(['tooLarge 10']);
    expect(a.inRun).toBe(false);
    expect(runBuffer(a)).toBeUndefined();
  });

  it('drops the rest of an oversized run to its last fragment: the tail is not a new message', () => {
    // 1.2: a message is the whole run; its tail, once the limit is passed, belongs to it.
    const { a, out } = assembler(600);
    for (let i = 0; i < 3; i++) a.onFrame(0x30 | MORE_FLAG, bytes(255)); // 765 > 600
    a.onFrame(0x30 | MORE_FLAG, bytes(10));
    a.onFrame(0x30, bytes(10)); // the run's last fragment
    expect(out.events).toEqual(['tooLarge 30']);
    a.onFrame(0x30, bytes(4)); // after the run: a message again
    expect(out.events).toEqual(['tooLarge 30', 'message 30 4']);
  });

  it('a frame of another code ends the dropping of an oversized run and is processed', () => {
    const { a, out } = assembler(600);
    for (let i = 0; i < 3; i++) a.onFrame(0x30 | MORE_FLAG, bytes(255));
    a.onFrame(0x01, bytes(2));
    a.onFrame(0x30, bytes(3));
    expect(out.events).toEqual(['tooLarge 30', 'message 1 2', 'message 30 3']);
  });

  it('a run exactly at the limit is a message; one byte more is TOO_LARGE', () => {
    const { a, out } = assembler(300);
    a.onFrame(0x10 | MORE_FLAG, bytes(255));
    a.onFrame(0x10, bytes(45));
    expect(out.events).toEqual(['message 10 300']);
    a.onFrame(0x10 | MORE_FLAG, bytes(255));
    a.onFrame(0x10, bytes(46));
    expect(out.events).toEqual(['message 10 300', 'tooLarge 10']);
  });

  it('the default limit is 16,384 bytes: a run of 16,385 is TOO_LARGE', () => {
    const { a, out } = assembler();
    const d = new FrameDecoder(a);
    d.push(encodeMessage(0x10, bytes(DEFAULT_MAX_MESSAGE_BYTES + 1)));
    expect(out.events[0]).toBe('tooLarge 10');
    expect(out.messages.every(([, hex]) => hex.length / 2 <= DEFAULT_MAX_MESSAGE_BYTES)).toBe(true);
  });

  it('never grows its buffer past the limit', () => {
    const { a } = assembler(1000);
    for (let i = 0; i < 3; i++) a.onFrame(0x10 | MORE_FLAG, bytes(255));
    expect(runBuffer(a)!.length).toBeLessThanOrEqual(1000);
  });
});

describe('MessageAssembler: buffer release', () => {
  it('releases the run buffer after a complete run', () => {
    const { a } = assembler();
    a.onFrame(0x10 | MORE_FLAG, bytes(255));
    expect(runBuffer(a)).toBeDefined();
    a.onFrame(0x10, bytes(10));
    expect(runBuffer(a)).toBeUndefined();
  });

  it('releases the run buffer after a broken run and on reset()', () => {
    const { a } = assembler();
    a.onFrame(0x10 | MORE_FLAG, bytes(255));
    a.onFrame(0x01, bytes(0));
    expect(runBuffer(a)).toBeUndefined();
    a.onFrame(0x10 | MORE_FLAG, bytes(255));
    a.reset();
    expect(runBuffer(a)).toBeUndefined();
    expect(a.inRun).toBe(false);
  });

  it('allocates nothing for single-frame messages', () => {
    const { a } = assembler();
    a.onFrame(0x20, bytes(200));
    expect(runBuffer(a)).toBeUndefined();
  });
});
