// TELEMETRY 0x20, EVENT 0x21 and TELEMETRY_BATCH 0x23 handlers: the check order (a)–(f) of PROTOCOL.md 3.2 and 5.
import { isVmcpError } from '../../errors.js';
import {
  AckStatus,
  Cmd,
  ErrorCode,
  decodeEventSample,
  decodeTelemetrySample,
  eventData,
  readU32,
  splitTelemetryBatch,
  telemetryData,
  type UplinkRecord,
} from '../../protocol/index.js';
import { ScopeBit, type Session } from '../session.js';
import { ADMIT, NO_ACK } from '../uplink.js';

function record(
  s: Session,
  seq: number,
  kind: UplinkRecord['kind'],
  timestamp: number,
  data: UplinkRecord['data'],
): UplinkRecord {
  return {
    vehicleId: s.vehicleId,
    seq,
    kind,
    timestamp,
    receivedAt: s.gw.now,
    traceparent: s.ensureTracer().traceparent(seq),
    data,
  };
}

/**
 * A copy of data[start, end): the frame buffers are reused, and the store writes after a commit
 * delay. Buffer.allocUnsafe slices Node's shared 8 KB pool; a Uint8Array of its own over 64 bytes
 * (a TELEMETRY's TLVs are ~90) gets a backing store of its own, allocated and later swept: ~1 µs
 * per message against ~0.2 µs. The copy is dropped once its commit is done.
 */
function copyOf(data: Uint8Array, start: number, end: number): Uint8Array {
  const out = Buffer.allocUnsafe(end - start);
  out.set(data.subarray(start, end));
  return out;
}

export function onTelemetry(s: Session, data: Uint8Array): void {
  if (data.length < 4) {
    s.sendError(ErrorCode.INVALID_DATA, Cmd.TELEMETRY, 'TELEMETRY shorter than SEQ');
    return;
  }
  const seq = readU32(data, 0);
  const pipeline = s.gw.uplink;
  if (pipeline.admit(s, seq, seq, 1, false) !== ADMIT) return;
  if ((s.scopes & ScopeBit.TELEMETRY) === 0) {
    pipeline.consume(s, seq, null, AckStatus.FORBIDDEN); // (d)
    return;
  }
  let rec: UplinkRecord;
  try {
    const sample = decodeTelemetrySample(data, 4, data.length);
    rec = record(s, seq, 'telemetry', sample.timestamp, telemetryData(sample));
  } catch (err) {
    if (!isVmcpError(err)) throw err;
    pipeline.consume(s, seq, null, AckStatus.REJECTED); // (e)
    return;
  }
  pipeline.consume(s, seq, rec, AckStatus.STORED, seq, copyOf(data, 4, data.length)); // (f)
}

export function onEvent(s: Session, data: Uint8Array): void {
  if (data.length < 4) {
    s.sendError(ErrorCode.INVALID_DATA, Cmd.EVENT, 'EVENT shorter than SEQ');
    return;
  }
  const seq = readU32(data, 0);
  const pipeline = s.gw.uplink;
  if (pipeline.admit(s, seq, seq, 1, false) !== ADMIT) return;
  if ((s.scopes & ScopeBit.EVENT) === 0) {
    pipeline.consume(s, seq, null, AckStatus.FORBIDDEN);
    return;
  }
  let rec: UplinkRecord;
  try {
    const ev = decodeEventSample(data, 4, data.length);
    rec = record(s, seq, 'event', ev.timestamp, eventData(ev));
  } catch (err) {
    if (!isVmcpError(err)) throw err;
    pipeline.consume(s, seq, null, AckStatus.REJECTED);
    return;
  }
  pipeline.consume(s, seq, rec, AckStatus.STORED, seq, copyOf(data, 4, data.length));
}

/**
 * TELEMETRY_BATCH (5): layout errors are ERROR INVALID_DATA with nothing consumed; then the checks
 * apply to the batch as one message; then each unconsumed sample is FORBIDDEN, REJECTED or STORED,
 * and the batch gets exactly one UPLINK_ACK (SEQ LAST, the first non-STORED status, else STORED).
 */
export function onTelemetryBatch(s: Session, data: Uint8Array): void {
  let layout;
  try {
    layout = splitTelemetryBatch(data);
  } catch (err) {
    if (!isVmcpError(err)) throw err;
    s.sendError(ErrorCode.INVALID_DATA, Cmd.TELEMETRY_BATCH, err.message, err.seq);
    return;
  }
  const { firstSeq, count, ranges } = layout;
  const last = firstSeq + count - 1;
  const pipeline = s.gw.uplink;
  // Samples already consumed are skipped: only those from uplinkNext on are charged and judged.
  const from = Math.max(firstSeq, s.uplinkNext);
  if (pipeline.admit(s, firstSeq, last, last - from + 1, true) !== ADMIT) return;
  const allowed = (s.scopes & ScopeBit.TELEMETRY) !== 0;
  const records: (UplinkRecord | null)[] = [];
  const raws: (Uint8Array | undefined)[] = [];
  let batchStatus: number = AckStatus.STORED;
  for (let seq = from; seq <= last; seq++) {
    const i = seq - firstSeq;
    let status: number = AckStatus.STORED;
    let rec: UplinkRecord | null = null;
    if (!allowed) status = AckStatus.FORBIDDEN;
    else {
      try {
        const start = ranges[2 * i]!;
        const end = ranges[2 * i + 1]!;
        const sample = decodeTelemetrySample(data, start, end);
        rec = record(s, seq, 'telemetry', sample.timestamp, telemetryData(sample));
        raws[seq - from] = copyOf(data, start, end);
      } catch (err) {
        if (!isVmcpError(err)) throw err;
        status = AckStatus.REJECTED;
      }
    }
    if (batchStatus === AckStatus.STORED && status !== AckStatus.STORED) batchStatus = status;
    records.push(rec);
  }
  for (let seq = from; seq <= last; seq++) {
    const rec = records[seq - from]!;
    // Only the last sample carries the batch's single ack.
    pipeline.consume(s, seq, rec, seq === last ? batchStatus : NO_ACK, last, raws[seq - from]);
  }
}
