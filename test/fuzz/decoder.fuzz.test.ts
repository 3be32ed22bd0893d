// Bounded fuzzing in `npm test` (fixed seeds, capped iterations, at most ≈3 s of wall clock in all):
// the engine of bench/fuzz.ts.
// `npm run fuzz -- --seconds N` runs the same checks for longer with a fresh seed.
import { describe, expect, it } from 'vitest';
import { Fuzzer, ReferenceDecoder, Rng, mutateData, runFuzz } from '../../bench/fuzz.js';
import { Cmd, MESSAGE_CODECS, fromHex, toHex } from '../../src/protocol/index.js';

const PING = '5501002e3e';

describe('fuzz harness', () => {
  it('Rng is deterministic per seed', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const seqA = Array.from({ length: 8 }, () => a.u32());
    expect(Array.from({ length: 8 }, () => b.u32())).toEqual(seqA);
    expect(Array.from({ length: 8 }, () => c.u32())).not.toEqual(seqA);
    expect(toHex(mutateData(new Rng(5), fromHex('0102030405060708')))).toBe(
      toHex(mutateData(new Rng(5), fromHex('0102030405060708'))),
    );
  });

  it('the reference decoder follows PROTOCOL.md 1.1 on hand-checked streams', () => {
    const run = (chunks: string[], expire: number[] = []): unknown => {
      const r = new ReferenceDecoder();
      chunks.forEach((c, i) => {
        r.push(fromHex(c));
        if (expire.includes(i)) r.expirePartialFrame();
      });
      return [r.frames, r.garbage, r.badFrames, r.bufferedBytes];
    };
    expect(run(['00' + PING + 'aa'])).toEqual([[[1, '']], 2, 0, 0]);
    expect(run(['55', PING])).toEqual([[[1, '']], 1, 0, 0]);
    // A bad frame (its bytes are not garbage) with a PING nested in it.
    expect(run(['550103' + PING])).toEqual([[[1, '']], 0, 1, 0]);
    expect(run(['55010a' + PING + '0000000000ffff' + PING])).toEqual([
      [
        [1, ''],
        [1, ''],
      ],
      0,
      1,
      0,
    ]);
    // Frame timeout: the SOF is garbage, decoding resumes at the next 0x55.
    expect(run(['550120' + PING + '0000'], [0])).toEqual([[[1, '']], 3, 0, 0]);
    expect(run(['550120'])).toEqual([[], 0, 0, 3]);
  });

  it('reports a decoder that throws anything but VmcpError', () => {
    const codec = MESSAGE_CODECS[Cmd.PING] as { decode(data: Uint8Array): unknown };
    const original = codec.decode;
    codec.decode = () => {
      throw new TypeError('planted');
    };
    try {
      const f = new Fuzzer({ seed: 1, seconds: 1 });
      f.checkData(Cmd.PING, new Uint8Array(1), () => 'planted input');
      expect(f.kept.map((x) => x.kind)).toContain('decoder-threw');
      expect(f.summary.failures).toBeGreaterThan(0);
    } finally {
      codec.decode = original;
    }
  });

  it('reports a decoded value that does not re-encode to itself', () => {
    const codec = MESSAGE_CODECS[Cmd.QUERY] as { encode(msg: { query: number }): Uint8Array };
    const original = codec.encode;
    codec.encode = (msg) => Uint8Array.of(msg.query ^ 1);
    try {
      const f = new Fuzzer({ seed: 1, seconds: 1 });
      f.checkData(Cmd.QUERY, Uint8Array.of(2), () => 'planted input');
      expect(f.kept.map((x) => x.kind)).toEqual(['reencode-mismatch']);
    } finally {
      codec.encode = original;
    }
  });

  it('valid DATA is no failure, and counts as decoded', () => {
    const f = new Fuzzer({ seed: 1, seconds: 1 });
    f.checkData(Cmd.PING, fromHex('0102'), () => '');
    f.checkData(Cmd.QUERY, fromHex('01'), () => '');
    f.checkData(Cmd.UPLINK_ACK, fromHex('0000000703'), () => '');
    expect(f.kept).toEqual([]);
    expect(f.summary.failures).toBe(0);
    expect(f.summary.decoded).toBe(3);
  });
});

describe('fuzz', () => {
  it('random and mutated DATA: every message decoder returns or throws VmcpError; results re-encode', () => {
    const { summary, failures } = runFuzz({
      seed: 0x5eed0001,
      seconds: 1.2,
      maxIterations: 1500,
      only: 'data',
    });
    expect(failures).toEqual([]);
    expect(summary.failures).toBe(0);
    // The fuzzer reached the decoders' interesting paths, not just their length checks.
    expect(summary.dataCases).toBeGreaterThan(100);
    expect(summary.decoded).toBeGreaterThan(0);
    for (const code of [
      'VMCP_ERR_SHORT_DATA',
      'VMCP_ERR_TLV_TRUNCATED',
      'VMCP_ERR_TLV_SIZE',
      'VMCP_ERR_UTF8',
      'VMCP_ERR_BAD_LENGTH',
    ])
      expect(summary.rejected[code], code).toBeGreaterThan(0);
  });

  it('random and mutated streams: push() never throws, ≤ 260 bytes buffered, frames are real, messages within the limit, decoders only throw VmcpError', () => {
    const { summary, failures } = runFuzz({
      seed: 0x5eed0002,
      seconds: 0.9,
      maxIterations: 600,
      only: 'streams',
      oracle: false,
    });
    expect(failures).toEqual([]);
    expect(summary.streams).toBeGreaterThan(20);
    expect(summary.frames).toBeGreaterThan(0);
    expect(summary.messages).toBeGreaterThan(0);
    expect(summary.badFrames).toBeGreaterThan(0);
    expect(summary.garbage).toBeGreaterThan(0);
  });

  it('random and mutated streams: the frame decoder agrees with the reference decoder (frames, garbage, bad frames, buffered bytes)', () => {
    const { summary, failures } = runFuzz({
      seed: 0x5eed0003,
      seconds: 0.9,
      maxIterations: 600,
      only: 'streams',
      oracle: true,
    });
    expect(failures).toEqual([]);
    expect(summary.streams).toBeGreaterThan(20);
    expect(summary.frames).toBeGreaterThan(0);
  });
});
