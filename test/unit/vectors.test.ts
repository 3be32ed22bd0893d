// Every case of the independent implementation's vectors (shared/vectors/vmcp.json) is reproduced here.
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  Cmd,
  FrameDecoder,
  MESSAGE_CODECS,
  MessageAssembler,
  crc16,
  decodeTlvs,
  encodeFrame,
  encodeMessage,
  fromHex,
  toHex,
  type MessageSink,
} from '../../src/protocol/index.js';
import { FIXTURE_PATH, SHARED_PATH, loadVectors } from '../helpers/vectors.js';

const vectors = loadVectors();

interface Collected {
  frames: [number, string][];
  messages: [number, string][];
  garbage: number;
  badFrames: number;
}

function collector(): { sink: MessageSink & { onFrame?: never }; out: Collected } {
  const out: Collected = { frames: [], messages: [], garbage: 0, badFrames: 0 };
  const sink: MessageSink = {
    onMessage: (code, data) => out.messages.push([code, toHex(data)]),
    onBrokenRun: () => undefined,
    onTooLarge: () => undefined,
    onBadFrame: () => out.badFrames++,
    onGarbage: (n) => (out.garbage += n),
  };
  return { sink, out };
}

/** Decodes chunks into raw frames (no reassembly). */
function decodeFrames(chunks: Uint8Array[]): Collected {
  const out: Collected = { frames: [], messages: [], garbage: 0, badFrames: 0 };
  const d = new FrameDecoder({
    onFrame: (cmd, data) => out.frames.push([cmd, toHex(data)]),
    onBadFrame: () => out.badFrames++,
    onGarbage: (n) => (out.garbage += n),
  });
  for (const c of chunks) d.push(c);
  return out;
}

function decodeMessages(chunks: Uint8Array[]): Collected {
  const { sink, out } = collector();
  const d = new FrameDecoder(new MessageAssembler(sink));
  for (const c of chunks) d.push(c);
  return out;
}

function bytewise(b: Uint8Array): Uint8Array[] {
  return Array.from(b, (x) => Uint8Array.of(x));
}

describe('vector file', () => {
  it('the fixture copy is identical to ../shared/vectors/vmcp.json', () => {
    if (!existsSync(SHARED_PATH)) {
      // Outside the workspace layout the fixture is the only copy; nothing to compare.
      expect(existsSync(FIXTURE_PATH)).toBe(true);
      return;
    }
    expect(readFileSync(FIXTURE_PATH, 'utf8')).toBe(readFileSync(SHARED_PATH, 'utf8'));
  });

  it('has every section', () => {
    for (const k of ['crc16', 'frames', 'messages', 'streams', 'tlv'] as const)
      expect(vectors[k].length).toBeGreaterThan(0);
  });
});

describe('crc16 vectors', () => {
  for (const v of vectors.crc16) {
    const bytes = v.ascii !== undefined ? new TextEncoder().encode(v.ascii) : fromHex(v.hex!);
    it(`${v.ascii ?? (v.hex || '(empty)')} → ${v.crc}`, () => {
      expect(crc16(bytes).toString(16).padStart(4, '0')).toBe(v.crc);
    });
  }
});

describe('frame vectors', () => {
  for (const v of vectors.frames) {
    const wire = fromHex(v.hex);
    const cmdByte = v.cmd | (v.more ? 0x80 : 0);
    it(`${v.name}: encodes to the exact bytes`, () => {
      expect(toHex(encodeFrame(cmdByte, fromHex(v.data)))).toBe(v.hex);
    });
    it(`${v.name}: decodes in one chunk and byte by byte`, () => {
      for (const chunks of [[wire], bytewise(wire)]) {
        const out = decodeFrames(chunks);
        expect(out.frames).toEqual([[cmdByte, v.data]]);
        expect(out.garbage).toBe(0);
        expect(out.badFrames).toBe(0);
      }
    });
  }
});

describe('message vectors', () => {
  for (const v of vectors.messages) {
    const wire = fromHex(v.hex);
    const codec = (
      MESSAGE_CODECS as Record<
        number,
        { decode(d: Uint8Array): unknown; encode(m: never): Uint8Array }
      >
    )[v.cmd];
    it(`${v.name}: has a codec for command 0x${v.cmd.toString(16)}`, () => {
      expect(codec).toBeDefined();
    });

    it(`${v.name}: the wire bytes reassemble to the vector's DATA (one chunk, byte by byte)`, () => {
      for (const chunks of [[wire], bytewise(wire)]) {
        const out = decodeMessages(chunks);
        expect(out.messages).toEqual([[v.cmd, v.data]]);
        expect(out.garbage + out.badFrames).toBe(0);
      }
    });

    it(`${v.name}: DATA decodes to the vector's fields`, () => {
      const decoded = codec!.decode(fromHex(v.data)) as Record<string, unknown>;
      expect(normalize(v.cmd, decoded)).toEqual(expectedFields(v.cmd, v.fields));
    });

    it(`${v.name}: the fields encode to the exact wire bytes`, () => {
      const data = codec!.encode(toMessage(v.cmd, v.fields) as never);
      expect(toHex(data)).toBe(v.data);
      expect(toHex(encodeMessage(v.cmd, data))).toBe(v.hex);
    });
  }
});

/** Drops undefined keys, and turns byte fields into the vectors' text form. */
function normalize(cmd: number, decoded: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(decoded)) {
    if (v === undefined) continue;
    if (k === 'samples') out[k] = (v as Record<string, unknown>[]).map((s) => normalize(cmd, s));
    else if (k === 'resultPayload') out[k] = new TextDecoder().decode(v as Uint8Array);
    else out[k] = v;
  }
  return out;
}

/** The vector's fields as this codec reports them: CONNECT's MAGIC is checked, not returned. */
function expectedFields(cmd: number, fields: Record<string, unknown>): Record<string, unknown> {
  const { magic, ...rest } = fields;
  if (cmd === Cmd.CONNECT) expect(magic).toBe(0x564d4350);
  return rest;
}

function toMessage(cmd: number, fields: Record<string, unknown>): Record<string, unknown> {
  const msg = { ...expectedFields(cmd, fields) };
  if (typeof msg.resultPayload === 'string')
    msg.resultPayload = new TextEncoder().encode(msg.resultPayload);
  return msg;
}

describe('stream vectors', () => {
  for (const v of vectors.streams) {
    const chunks = v.chunks.map(fromHex);
    const check = (out: Collected): void => {
      expect(out.frames).toEqual(v.frames);
      if (v.garbage !== undefined) expect(out.garbage).toBe(v.garbage);
      if (v.badFrames !== undefined) expect(out.badFrames).toBe(v.badFrames);
    };
    it(`${v.name}: as chunked in the vector`, () => check(decodeFrames(chunks)));
    it(`${v.name}: one byte at a time`, () => check(decodeFrames(bytewise(Buffer.concat(chunks)))));
    it(`${v.name}: at every single split point`, () => {
      const all = Buffer.concat(chunks);
      for (let cut = 0; cut <= all.length; cut++)
        check(decodeFrames([all.subarray(0, cut), all.subarray(cut)]));
    });
  }
});

describe('tlv vectors', () => {
  for (const v of vectors.tlv) {
    it(`${v.name}: ${v.valid ? 'valid' : 'invalid'}`, () => {
      const bytes = fromHex(v.hex);
      if (v.valid) {
        expect(decodeTlvs(bytes).map(([t, val]) => [t, toHex(val)])).toEqual(v.records);
      } else {
        expect(() => decodeTlvs(bytes)).toThrowError(
          expect.objectContaining({ name: 'VmcpError' }) as Error,
        );
      }
    });
  }
});
