// Shared value checks for message decoders: sizes, ranges and strings per PROTOCOL.md 1.3.
import { VmcpError, type VmcpErrorCode } from '../../errors.js';
import { decodeUtf8, readU16, readU32, readU64 } from '../bytes.js';
import type { TlvReader } from '../tlv.js';

export function fail(code: VmcpErrorCode, field?: number | string, seq?: number): never {
  throw new VmcpError(code, undefined, { field, seq });
}

export function requireSize(r: TlvReader, size: number): void {
  if (r.valueLength !== size) fail('VMCP_ERR_TLV_SIZE', r.tag);
}

export function tlvU8(r: TlvReader): number {
  requireSize(r, 1);
  return r.buf[r.valueStart]!;
}

export function tlvU16(r: TlvReader): number {
  requireSize(r, 2);
  return readU16(r.buf, r.valueStart);
}

export function tlvU32(r: TlvReader): number {
  requireSize(r, 4);
  return readU32(r.buf, r.valueStart);
}

export function tlvU64(r: TlvReader): number {
  requireSize(r, 8);
  const v = readU64(r.buf, r.valueStart);
  if (v === undefined) fail('VMCP_ERR_VALUE_RANGE', r.tag);
  return v;
}

export function tlvString(r: TlvReader, maxBytes = Infinity): string {
  if (r.valueLength > maxBytes) fail('VMCP_ERR_VALUE_RANGE', r.tag);
  const s = decodeUtf8(r.buf, r.valueStart, r.valueStart + r.valueLength);
  if (s === undefined) fail('VMCP_ERR_UTF8', r.tag);
  return s;
}

/**
 * DATA shorter than the command's fixed prefix: ERROR INVALID_DATA. `seqFirst`: the prefix starts
 * with a u32 SEQ, so a DATA of 4 bytes or more still has a readable SEQ (6: REF_SEQ).
 */
export function requireLength(data: Uint8Array, min: number, seqFirst = false): void {
  if (data.length >= min) return;
  if (seqFirst && data.length >= 4) fail('VMCP_ERR_SHORT_DATA', undefined, readU32(data, 0));
  fail('VMCP_ERR_SHORT_DATA');
}

/** A content error with the message's readable SEQ attached (for UPLINK_ACK REJECTED and ERROR REF_SEQ). */
export function withSeq(err: unknown, seq: number): unknown {
  return err instanceof VmcpError
    ? new VmcpError(err.code, err.message, { field: err.field, seq })
    : err;
}
