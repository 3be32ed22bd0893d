// A minimal MQTT 3.1.1 codec for the peer-broker bench: just CONNECT, PUBLISH (QoS 0/1), PUBACK,
// SUBSCRIBE, PINGREQ and DISCONNECT out, and a streaming parser of what comes back. Lean on purpose:
// the simulator shares two cores with the broker, so it must cost as little as the VMCP simulator.

export const PacketType = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  SUBSCRIBE: 8,
  SUBACK: 9,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
} as const;

function varintLength(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

function writeVarint(b: Buffer, o: number, n: number): number {
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    b[o++] = byte;
  } while (n > 0);
  return o;
}

function packet(first: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(1 + varintLength(body.length) + body.length);
  out[0] = first;
  const o = writeVarint(out, 1, body.length);
  body.copy(out, o);
  return out;
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(2 + b.length);
  out.writeUInt16BE(b.length, 0);
  b.copy(out, 2);
  return out;
}

export function connectPacket(clientId: string, keepaliveS: number, clean = true): Buffer {
  const header = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, clean ? 0x02 : 0x00, 0, 0]);
  header.writeUInt16BE(keepaliveS, 8);
  return packet(PacketType.CONNECT << 4, Buffer.concat([header, str(clientId)]));
}

/** PUBLISH with QoS 1 (packet id) or 0, written into one buffer. `topic` is pre-encoded (str()). */
export function publishPacket(
  topic: Buffer,
  packetId: number,
  payload: Uint8Array,
  qos: 0 | 1,
): Buffer {
  const len = topic.length + (qos > 0 ? 2 : 0) + payload.length;
  const out = Buffer.allocUnsafe(1 + varintLength(len) + len);
  out[0] = (PacketType.PUBLISH << 4) | (qos << 1);
  let o = writeVarint(out, 1, len);
  o += topic.copy(out, o);
  if (qos > 0) {
    out.writeUInt16BE(packetId, o);
    o += 2;
  }
  out.set(payload, o);
  return out;
}

export function encodeTopic(topic: string): Buffer {
  return str(topic);
}

export function pubackPacket(packetId: number): Buffer {
  return Buffer.from([PacketType.PUBACK << 4, 2, packetId >> 8, packetId & 0xff]);
}

export function subscribePacket(packetId: number, filter: string, qos: 0 | 1): Buffer {
  const id = Buffer.from([packetId >> 8, packetId & 0xff]);
  return packet(
    (PacketType.SUBSCRIBE << 4) | 0x02,
    Buffer.concat([id, str(filter), Buffer.from([qos])]),
  );
}

export const PINGREQ = Buffer.from([PacketType.PINGREQ << 4, 0]);
export const DISCONNECT = Buffer.from([PacketType.DISCONNECT << 4, 0]);

export interface PacketSink {
  onConnack(returnCode: number): void;
  onPuback(packetId: number): void;
  onPublish(qos: number, packetId: number, topicLength: number, payloadLength: number): void;
  onSuback(): void;
  onPingresp(): void;
  onMalformed(): void;
}

/** Streaming parser: push chunks, get whole packets. Buffers at most one packet. */
export class PacketParser {
  private pending: Buffer | null = null;

  constructor(private readonly sink: PacketSink) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending !== null) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let o = 0;
    const end = buf.length;
    while (o < end) {
      if (o + 2 > end) break;
      const first = buf[o]!;
      let len = 0;
      let mul = 1;
      let p = o + 1;
      let complete = false;
      for (let i = 0; i < 4 && p < end; i++) {
        const b = buf[p++]!;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (p - o > 4) {
          this.sink.onMalformed();
          return;
        }
        break;
      }
      if (p + len > end) break;
      this.dispatch(first, buf, p, len);
      o = p + len;
    }
    if (o < end) this.pending = Buffer.from(buf.subarray(o));
  }

  private dispatch(first: number, b: Buffer, o: number, len: number): void {
    const type = first >> 4;
    switch (type) {
      case PacketType.CONNACK:
        this.sink.onConnack(len >= 2 ? b[o + 1]! : 255);
        return;
      case PacketType.PUBACK:
        this.sink.onPuback(len >= 2 ? (b[o]! << 8) | b[o + 1]! : 0);
        return;
      case PacketType.PUBLISH: {
        const qos = (first >> 1) & 3;
        const tlen = (b[o]! << 8) | b[o + 1]!;
        const id = qos > 0 ? (b[o + 2 + tlen]! << 8) | b[o + 3 + tlen]! : 0;
        this.sink.onPublish(qos, id, tlen, len - 2 - tlen - (qos > 0 ? 2 : 0));
        return;
      }
      case PacketType.SUBACK:
        this.sink.onSuback();
        return;
      case PacketType.PINGRESP:
        this.sink.onPingresp();
        return;
      default:
        return;
    }
  }
}
