// The floor of Node.js for the uplink: a server that does the least any Node gateway must do per
// message (read the socket, find the frame, check its CRC, write a 10-byte UPLINK_ACK) and nothing
// else: no token check, no session state, no rate limit, no store. Its CPU per ack, measured by
// `vmcp bench uplink --target node-floor` with the same fleet as the gateway, is the part of the
// gateway's figure that no change inside the gateway removes while it reads through Node's sockets.
// Not a gateway: it acks what it never stores, and accepts any CONNECT.
//
// Run: node --import tsx bench/node-floor.ts [port] [stream|onread]; prints `FLOOR_PORT <port>`.
// - stream: the sockets net.Server hands out, read through 'data' events (as the gateway reads).
// - onread: each accepted handle re-wrapped in a net.Socket with the `onread` option: one reused
//   read buffer and no Readable stream machinery per read.
import { createServer, Socket, type SocketConstructorOpts } from 'node:net';
import {
  AckStatus,
  Cmd,
  ConnackStatus,
  encodeConnack,
  encodeMessage,
  FrameDecoder,
  type FrameSink,
  readU32,
  UPLINK_ACK_FRAME_BYTES,
  writeUplinkAckFrame,
} from '../src/protocol/index.js';

const port = Number(process.argv[2] ?? 0);
const io = process.argv[3] ?? 'stream';
if (io !== 'stream' && io !== 'onread') throw new Error('io: stream | onread');

const CONNACK = encodeMessage(
  Cmd.CONNACK,
  encodeConnack({ status: ConnackStatus.ACCEPTED, version: 1, keepalive: 30, nextUplinkSeq: 1 }),
);

class Conn implements FrameSink {
  readonly decoder = new FrameDecoder(this);
  constructor(readonly socket: Socket) {}
  onFrame(cmdByte: number, data: Uint8Array): void {
    const code = cmdByte & 0x7f;
    if (code === Cmd.TELEMETRY || code === Cmd.EVENT) {
      const ack = Buffer.allocUnsafe(UPLINK_ACK_FRAME_BYTES);
      writeUplinkAckFrame(ack, 0, readU32(data, 0), AckStatus.STORED);
      this.socket.write(ack);
    } else if (code === Cmd.CONNECT) this.socket.write(CONNACK);
    else if (code === Cmd.PING) this.socket.write(encodeMessage(Cmd.PONG, data));
  }
  onBadFrame(): void {}
  onGarbage(): void {}
}

const readBuffer = Buffer.allocUnsafe(64 * 1024);
const server = createServer({ pauseOnConnect: io === 'onread', noDelay: true }, (socket) => {
  if (io === 'stream') {
    const conn = new Conn(socket);
    socket.on('data', (chunk: Buffer) => conn.decoder.push(chunk));
    socket.on('error', () => socket.destroy());
    return;
  }
  // `_handle` and the `handle` option are Node internals (child_process passes handles this way).
  const internal = socket as unknown as { _handle: unknown };
  const handle = internal._handle;
  internal._handle = null;
  socket.destroy();
  const conn: { c?: Conn } = {};
  const fast = new Socket({
    handle,
    onread: {
      buffer: readBuffer,
      callback: (n: number, buf: Uint8Array) => {
        conn.c!.decoder.push(Buffer.from(buf.subarray(0, n)));
        return true;
      },
    },
  } as SocketConstructorOpts);
  conn.c = new Conn(fast);
  fast.on('error', () => fast.destroy());
});
server.maxConnections = 19_900;
server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  const addr = server.address();
  if (addr !== null && typeof addr === 'object') process.stdout.write(`FLOOR_PORT ${addr.port}\n`);
});
const stop = (): void => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
