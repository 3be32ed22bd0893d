// A vehicle on the gateway's in-memory transport (gw.handle with a Duplex): real CONNECT, real frames,
// no sockets. Enough for the API tests that need a live session; the socket suites go further.
import { Duplex } from 'node:stream';
import type { Gateway } from '../../src/gateway/gateway.js';
import {
  Cmd,
  FrameDecoder,
  MessageAssembler,
  decodeConnack,
  encodeConnect,
  encodeMessage,
  type ConnackMessage,
} from '../../src/protocol/index.js';

export interface Received {
  code: number;
  data: Uint8Array;
}

class Wire extends Duplex {
  constructor(private readonly onOut: (chunk: Buffer) => void) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.onOut(chunk);
    cb();
  }
  override _read(): void {}
}

export class MemoryVehicle {
  readonly received: Received[] = [];
  closed = false;
  private readonly wire: Wire;
  private readonly decoder: FrameDecoder;

  constructor(
    readonly gw: Gateway,
    readonly id: string,
    remoteAddress = '10.1.2.3',
  ) {
    const assembler = new MessageAssembler({
      onMessage: (code, data) => this.received.push({ code, data: data.slice() }),
      onBrokenRun: () => undefined,
      onTooLarge: () => undefined,
      onBadFrame: () => undefined,
      onGarbage: () => undefined,
    });
    this.decoder = new FrameDecoder(assembler);
    this.wire = new Wire((chunk) => this.decoder.push(chunk));
    this.wire.on('finish', () => (this.closed = true));
    this.wire.on('close', () => (this.closed = true));
    gw.handle(this.wire, { transport: 'memory', remoteAddress });
  }

  send(code: number, data: Uint8Array): void {
    this.wire.push(Buffer.from(encodeMessage(code, data)));
  }

  async waitFor(code: number, ms = 5_000): Promise<Received> {
    const until = Date.now() + ms;
    for (;;) {
      const i = this.received.findIndex((m) => m.code === code);
      if (i >= 0) return this.received.splice(i, 1)[0]!;
      if (Date.now() > until) throw new Error(`no message 0x${code.toString(16)} within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** CONNECT with a token carrying `scopes`; resolves with the CONNACK. */
  async connect(scopes: readonly string[], lastCommandSeq?: number): Promise<ConnackMessage> {
    const token = await this.gw.tokens.sign({
      subject: this.id,
      scopes,
      ttlMs: 3_600_000,
      nowMs: Date.now(),
    });
    this.send(
      Cmd.CONNECT,
      encodeConnect({
        versionMin: 1,
        versionMax: 2,
        vehicleId: this.id,
        token,
        keepalive: 60,
        lastCommandSeq,
      }),
    );
    return decodeConnack((await this.waitFor(Cmd.CONNACK)).data);
  }

  close(): void {
    this.wire.push(null);
    this.wire.destroy();
  }
}
