// A scripted vehicle for integration tests: a real TCP (or TLS) socket speaking raw VMCP frames.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import {
  Cmd,
  FrameDecoder,
  MESSAGE_CODECS,
  MessageAssembler,
  encodeConnect,
  encodeMessage,
  type ConnackMessage,
  type ConnectMessage,
} from '../../src/protocol/index.js';

export interface Received {
  code: number;
  data: Uint8Array;
  /** performance.now() when it was decoded (orders messages across connections of one test). */
  at: number;
}

export class TestVehicle {
  readonly inbox: Received[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  readonly closedPromise: Promise<void>;
  garbage = 0;
  badFrames = 0;

  private constructor(readonly socket: Socket) {
    const decoder = new FrameDecoder(
      new MessageAssembler({
        onMessage: (code, data) => {
          this.inbox.push({ code, data: data.slice(), at: performance.now() });
          this.wake();
        },
        onBrokenRun: () => undefined,
        onTooLarge: () => undefined,
        onBadFrame: () => this.badFrames++,
        onGarbage: (n) => (this.garbage += n),
      }),
    );
    socket.on('data', (chunk) => decoder.push(chunk));
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static async open(
    port: number,
    host = '127.0.0.1',
    tls?: ConnectionOptions,
  ): Promise<TestVehicle> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s: Socket =
        tls === undefined
          ? netConnect({ port, host }, () => resolve(s))
          : tlsConnect({ port, host, ...tls }, () => resolve(s));
      s.once('error', reject);
    });
    socket.setNoDelay(true);
    return new TestVehicle(socket);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(code: number, data: Uint8Array = new Uint8Array(0)): void {
    this.socket.write(encodeMessage(code, data));
  }

  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Waits for the next message with `code` (any code when undefined), removing it and what came before it of that code. */
  async next(code?: number, timeoutMs = 5_000): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => code === undefined || m.code === code);
      if (i >= 0) return this.inbox.splice(i, 1)[0]!;
      if (this.closed)
        throw new Error(`connection closed while waiting for 0x${(code ?? -1).toString(16)}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `timed out waiting for 0x${(code ?? -1).toString(16)}; inbox: ${this.describe()}`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Decodes the next message of `code` with its codec. */
  async nextDecoded<T = Record<string, unknown>>(code: number, timeoutMs?: number): Promise<T> {
    const m = await this.next(code, timeoutMs);
    return (MESSAGE_CODECS as unknown as Record<number, { decode(d: Uint8Array): T }>)[
      code
    ]!.decode(m.data);
  }

  describe(): string {
    return this.inbox
      .map((m) => `0x${m.code.toString(16)}:${Buffer.from(m.data).toString('hex')}`)
      .join(' ');
  }

  async connect(msg: Partial<ConnectMessage> & { vehicleId: string }): Promise<ConnackMessage> {
    this.send(Cmd.CONNECT, encodeConnect({ versionMin: 1, versionMax: 2, ...msg }));
    return this.nextDecoded<ConnackMessage>(Cmd.CONNACK);
  }

  /** Resolves when the gateway closed the connection. */
  async waitClosed(timeoutMs = 5_000): Promise<void> {
    await Promise.race([
      this.closedPromise,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('connection not closed in time')), timeoutMs),
      ),
    ]);
  }

  close(): void {
    this.socket.destroy();
  }
}
