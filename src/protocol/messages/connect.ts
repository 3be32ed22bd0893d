// CONNECT (0x10) and CONNACK (0x11): session opening and version negotiation (PROTOCOL.md 2.1, 2.2).
import { readU16, readU32 } from '../bytes.js';
import { CONNECT_MAGIC, ConnackTag, ConnectTag } from '../constants.js';
import { ByteWriter, TlvReader } from '../tlv.js';
import { fail, requireLength, tlvString, tlvU16, tlvU32, tlvU64 } from './fields.js';

export interface ConnectMessage {
  versionMin: number;
  versionMax: number;
  vehicleId: string;
  token?: string | undefined;
  /** The UTF-8 of the registered secret (registration, 2.3). */
  credential?: Uint8Array | undefined;
  /** Proposed keepalive in seconds as sent; absent or 0 means 60 (the gateway applies that). */
  keepalive?: number | undefined;
  lastCommandSeq?: number | undefined;
  clientInfo?: string | undefined;
}

export const VEHICLE_ID_MAX = 64;
export const CLIENT_INFO_MAX = 128;
export const VEHICLE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

export function isValidVehicleId(id: string): boolean {
  return VEHICLE_ID_PATTERN.test(id);
}

function isIdByte(c: number): boolean {
  return (
    (c >= 0x30 && c <= 0x39) || // 0-9
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x61 && c <= 0x7a) || // a-z
    c === 0x2e || // .
    c === 0x5f || // _
    c === 0x3a || // :
    c === 0x2d // -
  );
}

const reader = new TlvReader();

/** Decodes CONNECT DATA. Every failure is a VmcpError the gateway answers with CONNACK INVALID (2.2). */
export function decodeConnect(data: Uint8Array): ConnectMessage {
  requireLength(data, 8);
  if (readU32(data, 0) !== CONNECT_MAGIC) fail('VMCP_ERR_BAD_MAGIC');
  const versionMin = readU16(data, 4);
  const versionMax = readU16(data, 6);
  if (versionMin > versionMax) fail('VMCP_ERR_VERSION_RANGE');
  const msg: ConnectMessage = {
    versionMin,
    versionMax,
    vehicleId: '',
    token: undefined,
    credential: undefined,
    keepalive: undefined,
    lastCommandSeq: undefined,
    clientInfo: undefined,
  };
  const r = reader.reset(data, 8);
  let hasId = false;
  while (r.next()) {
    switch (r.tag) {
      case ConnectTag.VEHICLE_ID: {
        const n = r.valueLength;
        if (n < 1 || n > VEHICLE_ID_MAX) fail('VMCP_ERR_VEHICLE_ID');
        let id = '';
        for (let i = r.valueStart; i < r.valueStart + n; i++) {
          const c = r.buf[i]!;
          if (!isIdByte(c)) fail('VMCP_ERR_VEHICLE_ID');
          id += String.fromCharCode(c);
        }
        msg.vehicleId = id;
        hasId = true;
        break;
      }
      case ConnectTag.TOKEN:
        msg.token = tlvString(r);
        break;
      case ConnectTag.KEEPALIVE:
        msg.keepalive = tlvU16(r);
        break;
      case ConnectTag.LAST_COMMAND_SEQ:
        msg.lastCommandSeq = tlvU32(r);
        break;
      case ConnectTag.CLIENT_INFO:
        msg.clientInfo = tlvString(r, CLIENT_INFO_MAX);
        break;
      case ConnectTag.CREDENTIAL:
        msg.credential = r.value().slice();
        break;
      default: // unknown tags are skipped (1.3)
    }
  }
  if (!hasId) fail('VMCP_ERR_VEHICLE_ID');
  if (msg.token !== undefined && msg.credential !== undefined)
    fail('VMCP_ERR_TOKEN_AND_CREDENTIAL');
  return msg;
}

export function encodeConnect(msg: ConnectMessage): Uint8Array {
  const w = new ByteWriter(64 + (msg.token?.length ?? 0));
  w.u32(CONNECT_MAGIC).u16(msg.versionMin).u16(msg.versionMax);
  w.tlvString(ConnectTag.VEHICLE_ID, msg.vehicleId);
  if (msg.token !== undefined) w.tlvString(ConnectTag.TOKEN, msg.token);
  if (msg.keepalive !== undefined) w.tlvU16(ConnectTag.KEEPALIVE, msg.keepalive);
  if (msg.lastCommandSeq !== undefined) w.tlvU32(ConnectTag.LAST_COMMAND_SEQ, msg.lastCommandSeq);
  if (msg.clientInfo !== undefined) w.tlvString(ConnectTag.CLIENT_INFO, msg.clientInfo);
  if (msg.credential !== undefined) w.tlv(ConnectTag.CREDENTIAL, msg.credential);
  return w.finish();
}

export interface ConnackMessage {
  status: number;
  /** 0 when refused. */
  version: number;
  sessionId?: string | undefined;
  keepalive?: number | undefined;
  nextUplinkSeq?: number | undefined;
  token?: string | undefined;
  serverTime?: number | undefined;
  reason?: string | undefined;
  redirect?: string | undefined;
  retryAfterMs?: number | undefined;
}

export function decodeConnack(data: Uint8Array): ConnackMessage {
  requireLength(data, 3);
  const msg: ConnackMessage = { status: data[0]!, version: readU16(data, 1) };
  const r = reader.reset(data, 3);
  while (r.next()) {
    switch (r.tag) {
      case ConnackTag.SESSION_ID:
        msg.sessionId = tlvString(r);
        break;
      case ConnackTag.KEEPALIVE:
        msg.keepalive = tlvU16(r);
        break;
      case ConnackTag.NEXT_UPLINK_SEQ:
        msg.nextUplinkSeq = tlvU32(r);
        break;
      case ConnackTag.TOKEN:
        msg.token = tlvString(r);
        break;
      case ConnackTag.SERVER_TIME:
        msg.serverTime = tlvU64(r);
        break;
      case ConnackTag.REASON:
        msg.reason = tlvString(r);
        break;
      case ConnackTag.REDIRECT:
        msg.redirect = tlvString(r);
        break;
      case ConnackTag.RETRY_AFTER_MS:
        msg.retryAfterMs = tlvU32(r);
        break;
      default:
    }
  }
  return msg;
}

export function encodeConnack(msg: ConnackMessage): Uint8Array {
  const w = new ByteWriter(96);
  w.u8(msg.status).u16(msg.version);
  if (msg.sessionId !== undefined) w.tlvString(ConnackTag.SESSION_ID, msg.sessionId);
  if (msg.keepalive !== undefined) w.tlvU16(ConnackTag.KEEPALIVE, msg.keepalive);
  if (msg.nextUplinkSeq !== undefined) w.tlvU32(ConnackTag.NEXT_UPLINK_SEQ, msg.nextUplinkSeq);
  if (msg.token !== undefined) w.tlvString(ConnackTag.TOKEN, msg.token);
  if (msg.serverTime !== undefined) w.tlvU64(ConnackTag.SERVER_TIME, msg.serverTime);
  if (msg.reason !== undefined) w.tlvString(ConnackTag.REASON, msg.reason);
  if (msg.redirect !== undefined) w.tlvString(ConnackTag.REDIRECT, msg.redirect);
  if (msg.retryAfterMs !== undefined) w.tlvU32(ConnackTag.RETRY_AFTER_MS, msg.retryAfterMs);
  return w.finish();
}
