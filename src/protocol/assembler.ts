// Reassembly of MORE-fragmented messages with a size limit (PROTOCOL.md 1.2): frames in, messages out.
import { DEFAULT_MAX_MESSAGE_BYTES, MORE_FLAG } from './constants.js';
import type { FrameSink } from './frame.js';

/** What the assembler reports. `data` is a view valid only during the call: copy what you keep. */
export interface MessageSink {
  /** A complete message: one frame's DATA, or a run's concatenated DATA. `code` has no MORE flag. */
  onMessage(code: number, data: Uint8Array): void;
  /** A run of `code` interrupted by a frame of another code: the partial message was dropped. */
  onBrokenRun(code: number): void;
  /** A run of `code` passed the maximum message size; the assembler discards it, to its last frame. */
  onTooLarge(code: number): void;
  onBadFrame(): void;
  onGarbage(count: number): void;
}

/**
 * Turns frames into messages. A frame without MORE outside a run is passed through as a view,
 * with no copy; only fragmented messages are copied into a buffer that grows up to the limit.
 */
export class MessageAssembler implements FrameSink {
  private runCode = -1;
  private runLen = 0;
  private buf: Uint8Array | undefined;
  /** The code of an oversized run whose remaining fragments are being dropped (1.2: one message). */
  private skipCode = -1;

  constructor(
    private readonly sink: MessageSink,
    private readonly maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES,
  ) {}

  /** True while a fragment run is open. */
  get inRun(): boolean {
    return this.runCode >= 0;
  }

  onFrame(cmdByte: number, data: Uint8Array): void {
    const code = cmdByte & 0x7f;
    const more = (cmdByte & MORE_FLAG) !== 0;
    if (this.skipCode >= 0) {
      // The rest of an oversized message is part of it, not a new one; another code ends it.
      if (code === this.skipCode) {
        if (!more) this.skipCode = -1;
        return;
      }
      this.skipCode = -1;
    }
    if (this.runCode >= 0 && code !== this.runCode) {
      // 1.2: the partial message is dropped and the interrupting frame is processed normally.
      const broken = this.runCode;
      this.reset();
      this.sink.onBrokenRun(broken);
    }
    if (this.runCode < 0 && !more) {
      if (data.length > this.maxMessageBytes) {
        this.sink.onTooLarge(code);
        return;
      }
      this.sink.onMessage(code, data);
      return;
    }
    const total = this.runLen + data.length;
    if (total > this.maxMessageBytes) {
      this.reset();
      if (more) this.skipCode = code;
      this.sink.onTooLarge(code);
      return;
    }
    this.append(data, total);
    this.runCode = code;
    if (!more) {
      const msg = this.buf!.subarray(0, total);
      this.reset();
      this.sink.onMessage(code, msg);
    }
  }

  onBadFrame(): void {
    this.sink.onBadFrame();
  }

  onGarbage(count: number): void {
    this.sink.onGarbage(count);
  }

  /** Ends the run and releases its buffer: fragmented messages are rare, idle sessions keep none. */
  reset(): void {
    this.skipCode = -1;
    this.runCode = -1;
    this.runLen = 0;
    this.buf = undefined;
  }

  private append(data: Uint8Array, total: number): void {
    let buf = this.buf;
    if (buf === undefined || buf.length < total) {
      const next = new Uint8Array(
        Math.min(this.maxMessageBytes, Math.max(total, (buf?.length ?? 256) * 2)),
      );
      if (buf !== undefined && this.runLen > 0) next.set(buf.subarray(0, this.runLen));
      this.buf = buf = next;
    }
    buf.set(data, this.runLen);
    this.runLen = total;
  }
}
