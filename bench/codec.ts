// Codec benchmark (docs/benchmarks.md): single-threaded throughput of the pure VMCP codec.
//
//   npm run bench:codec -- [--seconds 2] [--repeats 3] [--warmup 1] [--no-threshold] [--dist]
//                          [--only codec.decode]   (benchmarks whose name contains the text)
//
// JSON lines (one per measurement) go to stdout, the human summary to stderr. Exits 1 when the
// median full TELEMETRY decode rate is below THRESHOLD_MSGS_PER_SEC, unless --no-threshold.
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import type * as Codec from '../src/protocol/index.js';

const THRESHOLD_MSGS_PER_SEC = 1_000_000;
/** The gateway reads sockets in 64 KiB chunks. */
const CHUNK_BYTES = 64 * 1024;
/** SEQ + TIMESTAMP, LATITUDE, LONGITUDE, SPEED, HEADING, ALTITUDE, ENGINE_RPM, BATTERY_MV. */
const TELEMETRY_DATA_BYTES = 70;
const TELEMETRY_FRAME_BYTES = TELEMETRY_DATA_BYTES + 5;
/** 65,536 frames of 75 bytes are exactly 75 chunks of 64 KiB, so the stream loops seamlessly. */
const STREAM_FRAMES = 65_536;

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '2' },
    repeats: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    'no-threshold': { type: 'boolean', default: false },
    dist: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
});
const seconds = Number(args.seconds);
const repeats = Number(args.repeats);
const warmupSeconds = Number(args.warmup);
if (!(seconds > 0) || !Number.isInteger(repeats) || repeats < 1 || !(warmupSeconds >= 0)) {
  console.error('usage: bench/codec.ts [--seconds S>0] [--repeats N>=1] [--warmup S>=0]');
  process.exit(2);
}

// --dist benches the compiled output of `npm run build` instead of the sources tsx transpiles.
const codec: typeof Codec = args.dist
  ? ((await import(new URL('../dist/protocol/index.js', import.meta.url).href)) as typeof Codec)
  : await import('../src/protocol/index.js');
const {
  Cmd,
  FrameDecoder,
  MessageAssembler,
  crc16,
  decodeTelemetry,
  encodeMessage,
  encodeTelemetry,
  writeUplinkAckFrame,
  UPLINK_ACK_FRAME_BYTES,
} = codec;

const ENV = { node: process.version, cpu: cpus()[0]?.model ?? 'unknown' };

function check(cond: boolean, what: string): asserts cond {
  if (!cond) {
    console.error(`bench/codec: check failed: ${what}`);
    process.exit(3);
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs

function sampleMessage(i: number): Codec.TelemetryMessage {
  return {
    seq: i + 1,
    timestamp: 1_700_000_000_000 + i * 1000,
    latitude: 483_584_000 + ((i * 37) % 100_000),
    longitude: 111_952_000 - ((i * 53) % 100_000),
    speed: (i * 7) % 2500,
    heading: (i * 11) % 3600,
    altitude: ((i * 3) % 600) - 100,
    engineRpm: 800 + ((i * 13) % 5000),
    batteryMv: 12_000 + (i % 2000),
  };
}

/** STREAM_FRAMES TELEMETRY frames, seqs 1…STREAM_FRAMES, back to back. */
function buildStream(): Uint8Array {
  const stream = new Uint8Array(STREAM_FRAMES * TELEMETRY_FRAME_BYTES);
  for (let i = 0; i < STREAM_FRAMES; i++) {
    const data = encodeTelemetry(sampleMessage(i));
    check(data.length === TELEMETRY_DATA_BYTES, `TELEMETRY DATA is ${data.length} bytes, not 70`);
    const frame = encodeMessage(Cmd.TELEMETRY, data);
    check(frame.length === TELEMETRY_FRAME_BYTES, `frame is ${frame.length} bytes, not 75`);
    stream.set(frame, i * TELEMETRY_FRAME_BYTES);
  }
  return stream;
}

const stream = buildStream();
const chunks: Uint8Array[] = [];
for (let o = 0; o < stream.length; o += CHUNK_BYTES)
  chunks.push(stream.subarray(o, o + CHUNK_BYTES));
check(chunks.length === 75 && chunks.every((c) => c.length === CHUNK_BYTES), '75 full chunks');

/** Sum of seqs 1…n of the looping stream, as the first `frames` frames carry them. */
function expectedSeqSum(frames: number): number {
  const loops = Math.floor(frames / STREAM_FRAMES);
  const rest = frames % STREAM_FRAMES;
  return (loops * STREAM_FRAMES * (STREAM_FRAMES + 1)) / 2 + (rest * (rest + 1)) / 2;
}

// ---------------------------------------------------------------------------------------------
// Harness

/** What one run did: units of work (frames, messages, acks, spans or bytes) and bytes. */
interface Work {
  ops: number;
  bytes: number;
}

/**
 * Calls `step` (one batch of work) until `duration` seconds have passed; returns the wall seconds
 * taken and the process CPU seconds used meanwhile. The clock is read once per batch, so a batch
 * should take well under a millisecond.
 */
function timed(duration: number, step: () => void): { wall: number; cpu: number } {
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const limit = start + BigInt(Math.round(duration * 1e9));
  let now = start;
  do {
    step();
    now = process.hrtime.bigint();
  } while (now < limit);
  const cpu = process.cpuUsage(cpu0);
  return { wall: Number(now - start) / 1e9, cpu: (cpu.user + cpu.system) / 1e6 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Bench {
  name: string;
  /** The JSON key of the rate: framesPerSec, msgsPerSec, acksPerSec, … */
  rateKey: string;
  /**
   * Fresh state for one run: `step` does one batch of work; `finish`, called after the run,
   * checks the results were really computed and reports the work done.
   */
  setup(): { step: () => void; finish: () => Work };
}

interface Result {
  bench: string;
  rateKey: string;
  rate: number;
  mbPerSec: number;
  runs: number[];
  /** Median CPU seconds per wall second: well under 1 means the run did not have a core to itself. */
  cpuShare: number;
}

function runBench(b: Bench): Result {
  if (warmupSeconds > 0) {
    const w = b.setup();
    timed(warmupSeconds, w.step);
    w.finish();
  }
  const rates: number[] = [];
  const mbs: number[] = [];
  const shares: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const s = b.setup();
    const { wall, cpu } = timed(seconds, s.step);
    const work = s.finish();
    rates.push(work.ops / wall);
    mbs.push(work.bytes / 1e6 / wall);
    shares.push(cpu / wall);
  }
  const result: Result = {
    bench: b.name,
    rateKey: b.rateKey,
    rate: median(rates),
    mbPerSec: median(mbs),
    runs: rates.map(Math.round),
    cpuShare: median(shares),
  };
  const line = {
    bench: b.name,
    [b.rateKey]: Math.round(result.rate),
    mbPerSec: Math.round(result.mbPerSec * 10) / 10,
    runs: result.runs,
    cpuShare: Math.round(result.cpuShare * 100) / 100,
    seconds,
    repeats,
    ...ENV,
  };
  console.log(JSON.stringify(line));
  return result;
}

// ---------------------------------------------------------------------------------------------
// Benchmarks

/** (a) Stream → FrameDecoder → MessageAssembler → decodeTelemetry: the gateway's uplink hot path. */
const decodeTelemetryBench: Bench = {
  name: 'codec.decode.telemetry',
  rateKey: 'framesPerSec',
  setup() {
    let count = 0;
    let seqSum = 0;
    let speedSum = 0;
    let other = 0;
    const assembler = new MessageAssembler({
      onMessage(code, data) {
        if (code !== Cmd.TELEMETRY) {
          other++;
          return;
        }
        const m = decodeTelemetry(data);
        count++;
        seqSum += m.seq;
        speedSum += m.speed!;
      },
      onBrokenRun: () => other++,
      onTooLarge: () => other++,
      onBadFrame: () => other++,
      onGarbage: () => other++,
    });
    const decoder = new FrameDecoder(assembler);
    let c = 0;
    let pushed = 0;
    return {
      step() {
        decoder.push(chunks[c]!);
        c = c === chunks.length - 1 ? 0 : c + 1;
        pushed += CHUNK_BYTES;
      },
      finish() {
        const frames = Math.floor(pushed / TELEMETRY_FRAME_BYTES);
        check(other === 0, 'no garbage, bad frame or other message');
        check(count === frames, `decoded ${count} messages, expected ${frames}`);
        check(seqSum === expectedSeqSum(frames), 'sum of decoded seqs');
        check(speedSum > 0, 'speeds decoded');
        return { ops: count, bytes: count * TELEMETRY_FRAME_BYTES };
      },
    };
  },
};

/** (b) Stream → FrameDecoder only: SOF search, CRC and framing, no reassembly or TLV. */
const decodeFramesBench: Bench = {
  name: 'codec.decode.frames',
  rateKey: 'framesPerSec',
  setup() {
    let count = 0;
    let dataBytes = 0;
    let other = 0;
    const decoder = new FrameDecoder({
      onFrame(cmdByte, data) {
        count++;
        dataBytes += data.length + (cmdByte === Cmd.TELEMETRY ? 0 : 1_000_000);
      },
      onBadFrame: () => other++,
      onGarbage: () => other++,
    });
    let c = 0;
    let pushed = 0;
    return {
      step() {
        decoder.push(chunks[c]!);
        c = c === chunks.length - 1 ? 0 : c + 1;
        pushed += CHUNK_BYTES;
      },
      finish() {
        const frames = Math.floor(pushed / TELEMETRY_FRAME_BYTES);
        check(other === 0, 'no garbage or bad frame');
        check(count === frames, `decoded ${count} frames, expected ${frames}`);
        check(dataBytes === frames * TELEMETRY_DATA_BYTES, 'every frame a 70-byte TELEMETRY');
        return { ops: count, bytes: count * TELEMETRY_FRAME_BYTES };
      },
    };
  },
};

const ENCODE_BATCH = 1024;
const encodeInputs = Array.from({ length: ENCODE_BATCH }, (_, i) => sampleMessage(i));

/** (c) encodeTelemetry + encodeMessage: a vehicle (or the simulator) sending TELEMETRY. */
const encodeTelemetryBench: Bench = {
  name: 'codec.encode.telemetry',
  rateKey: 'msgsPerSec',
  setup() {
    let msgs = 0;
    let bytes = 0;
    let crcSum = 0;
    return {
      step() {
        for (let i = 0; i < ENCODE_BATCH; i++) {
          const frame = encodeMessage(Cmd.TELEMETRY, encodeTelemetry(encodeInputs[i]!));
          bytes += frame.length;
          crcSum += frame[frame.length - 1]!;
        }
        msgs += ENCODE_BATCH;
      },
      finish() {
        check(bytes === msgs * TELEMETRY_FRAME_BYTES, 'every frame 75 bytes');
        check(crcSum > 0, 'frames written');
        return { ops: msgs, bytes };
      },
    };
  },
};

/** (c) writeUplinkAckFrame into a reused buffer: the gateway acknowledging uplink. */
const encodeAckBench: Bench = {
  name: 'codec.encode.uplinkAck',
  rateKey: 'acksPerSec',
  setup() {
    const out = new Uint8Array(ENCODE_BATCH * UPLINK_ACK_FRAME_BYTES);
    let seq = 0;
    let crcSum = 0;
    return {
      step() {
        let o = 0;
        for (let i = 0; i < ENCODE_BATCH; i++) o = writeUplinkAckFrame(out, o, ++seq, 0);
        check(o === out.length, 'every ack 10 bytes');
        crcSum += out[o - 1]!;
      },
      finish() {
        check(out[0] === 0x55 && out[1] === Cmd.UPLINK_ACK && crcSum > 0, 'ack frames written');
        return { ops: seq, bytes: seq * UPLINK_ACK_FRAME_BYTES };
      },
    };
  },
};

/** (d) crc16 over 64 KiB chunks of the stream. */
const crcBench: Bench = {
  name: 'codec.crc16',
  rateKey: 'bytesPerSec',
  setup() {
    let c = 0;
    let acc = 0;
    let bytes = 0;
    return {
      step() {
        acc ^= crc16(chunks[c]!);
        c = c === chunks.length - 1 ? 0 : c + 1;
        bytes += CHUNK_BYTES;
      },
      finish() {
        check(crc16(new TextEncoder().encode('123456789')) === 0x29b1 && acc >= 0, 'check value');
        return { ops: bytes, bytes };
      },
    };
  },
};

/** (d) crc16 over 72-byte spans (CMD + LEN + 70 bytes DATA), as the frame decoder calls it. */
const crcFrameBench: Bench = {
  name: 'codec.crc16.frame',
  rateKey: 'spansPerSec',
  setup() {
    let c = 0;
    let acc = 0;
    let n = 0;
    const spans = Math.floor(CHUNK_BYTES / TELEMETRY_FRAME_BYTES);
    return {
      step() {
        const chunk = chunks[c]!;
        for (let i = 0, o = 0; i < spans; i++, o += TELEMETRY_FRAME_BYTES)
          acc ^= crc16(chunk, o + 1, o + TELEMETRY_FRAME_BYTES - 2);
        c = c === chunks.length - 1 ? 0 : c + 1;
        n += spans;
      },
      finish() {
        check(acc >= 0, 'crc computed');
        return { ops: n, bytes: n * (TELEMETRY_FRAME_BYTES - 3) };
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------

console.error(
  `bench/codec: ${args.dist ? 'dist/' : 'src/'} codec, ${ENV.node}, ${ENV.cpu}; ` +
    `${warmupSeconds} s warm-up + ${repeats} × ${seconds} s per measurement, median reported`,
);
const results = [
  decodeTelemetryBench,
  decodeFramesBench,
  encodeTelemetryBench,
  encodeAckBench,
  crcBench,
  crcFrameBench,
]
  .filter((b) => args.only === undefined || b.name.includes(args.only))
  .map(runBench);

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const human: Record<string, string> = {
  'codec.decode.telemetry': 'TELEMETRY full decode (frame → assembler → typed object)',
  'codec.decode.frames': 'frame decode only (SOF, CRC, framing)',
  'codec.encode.telemetry': 'TELEMETRY encode (encodeTelemetry + encodeMessage)',
  'codec.encode.uplinkAck': 'UPLINK_ACK frame write (writeUplinkAckFrame)',
  'codec.crc16': 'crc16 over 64 KiB buffers',
  'codec.crc16.frame': 'crc16 over 72-byte frame spans',
};
console.error('');
for (const r of results) {
  const unit = r.rateKey.replace('PerSec', '/s');
  const rate = r.rateKey === 'bytesPerSec' ? '' : `${fmt(r.rate).padStart(11)} ${unit.padEnd(9)}`;
  console.error(
    `  ${human[r.bench]!.padEnd(58)} ${rate.padEnd(21)} ${r.mbPerSec.toFixed(1).padStart(8)} MB/s`,
  );
}
const busy = results.filter((r) => r.cpuShare < 0.9).map((r) => r.bench);
if (busy.length > 0)
  console.error(
    `\n  warning: the process got under 90% of a core during ${busy.join(', ')}: ` +
      'the machine is busy and those figures are low',
  );

const telemetry = results.find((r) => r.bench === 'codec.decode.telemetry');
if (telemetry === undefined) process.exit(0); // --only left it out: nothing to hold to the threshold
const pass = telemetry.rate >= THRESHOLD_MSGS_PER_SEC;
console.error(
  `\n  threshold: full TELEMETRY decode ${fmt(telemetry.rate)} msgs/s ` +
    `${pass ? '>=' : '<'} ${fmt(THRESHOLD_MSGS_PER_SEC)}` +
    (args['no-threshold'] ? ' (not enforced: --no-threshold)' : pass ? ': ok' : ': FAIL'),
);
if (!pass && !args['no-threshold']) process.exit(1);
