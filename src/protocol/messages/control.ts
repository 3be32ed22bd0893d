// Control messages: PING/PONG (2.4), QUERY/QUERY_RESULT (5), ERROR and DISCONNECT (6).
import { DisconnectTag, ErrorTag, QueryResultTag } from '../constants.js';
import { ByteWriter, TlvReader } from '../tlv.js';
import { fail, requireLength, tlvString, tlvU16, tlvU32, tlvU64 } from './fields.js';

/** PING DATA is 0–8 bytes, echoed by PONG (2.4). */
export const PING_MAX_DATA = 8;

export function checkPing(data: Uint8Array): void {
  if (data.length > PING_MAX_DATA) fail('VMCP_ERR_BAD_LENGTH');
}

export interface QueryMessage {
  query: number;
}

export function decodeQuery(data: Uint8Array): QueryMessage {
  if (data.length !== 1) fail('VMCP_ERR_BAD_LENGTH');
  return { query: data[0]! };
}

export function encodeQuery(msg: QueryMessage): Uint8Array {
  return Uint8Array.of(msg.query);
}

export interface QueryResultMessage {
  query: number;
  /** 0 ok, 1 unknown query. */
  status: number;
  serverTime?: number | undefined;
  pendingCommands?: number | undefined;
  sessionId?: string | undefined;
  keepalive?: number | undefined;
}

const reader = new TlvReader();

export function decodeQueryResult(data: Uint8Array): QueryResultMessage {
  requireLength(data, 2);
  const msg: QueryResultMessage = { query: data[0]!, status: data[1]! };
  const r = reader.reset(data, 2);
  while (r.next()) {
    switch (r.tag) {
      case QueryResultTag.SERVER_TIME:
        msg.serverTime = tlvU64(r);
        break;
      case QueryResultTag.PENDING_COMMANDS:
        msg.pendingCommands = tlvU32(r);
        break;
      case QueryResultTag.SESSION_ID:
        msg.sessionId = tlvString(r);
        break;
      case QueryResultTag.KEEPALIVE:
        msg.keepalive = tlvU16(r);
        break;
      default:
    }
  }
  return msg;
}

export function encodeQueryResult(msg: QueryResultMessage): Uint8Array {
  const w = new ByteWriter(32);
  w.u8(msg.query).u8(msg.status);
  if (msg.serverTime !== undefined) w.tlvU64(QueryResultTag.SERVER_TIME, msg.serverTime);
  if (msg.pendingCommands !== undefined)
    w.tlvU32(QueryResultTag.PENDING_COMMANDS, msg.pendingCommands);
  if (msg.sessionId !== undefined) w.tlvString(QueryResultTag.SESSION_ID, msg.sessionId);
  if (msg.keepalive !== undefined) w.tlvU16(QueryResultTag.KEEPALIVE, msg.keepalive);
  return w.finish();
}

export interface ErrorMessage {
  code: number;
  /** Command code of the message concerned; 0 when none or untrusted. */
  refCmd: number;
  message?: string | undefined;
  refSeq?: number | undefined;
}

export function decodeError(data: Uint8Array): ErrorMessage {
  requireLength(data, 2);
  const msg: ErrorMessage = { code: data[0]!, refCmd: data[1]! };
  const r = reader.reset(data, 2);
  while (r.next()) {
    if (r.tag === ErrorTag.MESSAGE) msg.message = tlvString(r);
    else if (r.tag === ErrorTag.REF_SEQ) msg.refSeq = tlvU32(r);
  }
  return msg;
}

export function encodeError(msg: ErrorMessage): Uint8Array {
  const w = new ByteWriter(16 + (msg.message?.length ?? 0));
  w.u8(msg.code).u8(msg.refCmd);
  if (msg.message !== undefined) w.tlvString(ErrorTag.MESSAGE, msg.message);
  if (msg.refSeq !== undefined) w.tlvU32(ErrorTag.REF_SEQ, msg.refSeq);
  return w.finish();
}

export interface DisconnectMessage {
  reason: number;
  message?: string | undefined;
  redirect?: string | undefined;
  retryAfterMs?: number | undefined;
}

export function decodeDisconnect(data: Uint8Array): DisconnectMessage {
  requireLength(data, 1);
  const msg: DisconnectMessage = { reason: data[0]! };
  const r = reader.reset(data, 1);
  while (r.next()) {
    switch (r.tag) {
      case DisconnectTag.MESSAGE:
        msg.message = tlvString(r);
        break;
      case DisconnectTag.REDIRECT:
        msg.redirect = tlvString(r);
        break;
      case DisconnectTag.RETRY_AFTER_MS:
        msg.retryAfterMs = tlvU32(r);
        break;
      default:
    }
  }
  return msg;
}

export function encodeDisconnect(msg: DisconnectMessage): Uint8Array {
  const w = new ByteWriter(16 + (msg.message?.length ?? 0) + (msg.redirect?.length ?? 0));
  w.u8(msg.reason);
  if (msg.message !== undefined) w.tlvString(DisconnectTag.MESSAGE, msg.message);
  if (msg.redirect !== undefined) w.tlvString(DisconnectTag.REDIRECT, msg.redirect);
  if (msg.retryAfterMs !== undefined) w.tlvU32(DisconnectTag.RETRY_AFTER_MS, msg.retryAfterMs);
  return w.finish();
}
