// Downlink: COMMAND 0x30, COMMAND_ACK 0x31, SENSOR_READ 0x03, SENSOR_DATA 0x04 (PROTOCOL.md 4).
import { readU32 } from '../bytes.js';
import { CommandAckTag, CommandResult, CommandTag } from '../constants.js';
import { ByteWriter, TlvReader } from '../tlv.js';
import { fail, requireLength, tlvString, tlvU64, withSeq } from './fields.js';

export interface CommandMessage {
  seq: number;
  commandId: string;
  name: string;
  /** UTF-8 JSON text, present only when the API request had params. */
  params?: string | undefined;
  expiresAt: number;
  traceparent?: string | undefined;
}

const reader = new TlvReader();

export function decodeCommand(data: Uint8Array): CommandMessage {
  requireLength(data, 4);
  const seq = readU32(data, 0);
  let commandId: string | undefined;
  let name: string | undefined;
  let params: string | undefined;
  let expiresAt: number | undefined;
  let traceparent: string | undefined;
  const r = reader.reset(data, 4);
  while (r.next()) {
    switch (r.tag) {
      case CommandTag.COMMAND_ID:
        commandId = tlvString(r);
        break;
      case CommandTag.NAME:
        name = tlvString(r);
        break;
      case CommandTag.PARAMS:
        params = tlvString(r);
        break;
      case CommandTag.EXPIRES_AT:
        expiresAt = tlvU64(r);
        break;
      case CommandTag.TRACEPARENT:
        traceparent = tlvString(r);
        break;
      default:
    }
  }
  if (commandId === undefined) fail('VMCP_ERR_MISSING_TAG', CommandTag.COMMAND_ID, seq);
  if (name === undefined) fail('VMCP_ERR_MISSING_TAG', CommandTag.NAME, seq);
  if (expiresAt === undefined) fail('VMCP_ERR_MISSING_TAG', CommandTag.EXPIRES_AT, seq);
  const msg: CommandMessage = { seq, commandId, name, expiresAt };
  if (params !== undefined) msg.params = params;
  if (traceparent !== undefined) msg.traceparent = traceparent;
  return msg;
}

export function encodeCommand(msg: CommandMessage): Uint8Array {
  const w = new ByteWriter(96 + (msg.params?.length ?? 0));
  w.u32(msg.seq)
    .tlvString(CommandTag.COMMAND_ID, msg.commandId)
    .tlvString(CommandTag.NAME, msg.name);
  if (msg.params !== undefined) w.tlvString(CommandTag.PARAMS, msg.params);
  w.tlvU64(CommandTag.EXPIRES_AT, msg.expiresAt);
  if (msg.traceparent !== undefined) w.tlvString(CommandTag.TRACEPARENT, msg.traceparent);
  return w.finish();
}

export interface CommandAckMessage {
  seq: number;
  /** CommandResult 0–5. */
  result: number;
  /** Raw RESULT_PAYLOAD bytes: JSON by contract, but reported as text or hex when it is not (4.2). */
  resultPayload?: Uint8Array | undefined;
  message?: string | undefined;
}

export function decodeCommandAck(data: Uint8Array): CommandAckMessage {
  requireLength(data, 5, true);
  const seq = readU32(data, 0);
  const result = data[4]!;
  if (result > CommandResult.IN_PROGRESS) fail('VMCP_ERR_VALUE_RANGE', 'result', seq);
  const msg: CommandAckMessage = { seq, result };
  const r = reader.reset(data, 5);
  try {
    while (r.next()) {
      if (r.tag === CommandAckTag.RESULT_PAYLOAD) msg.resultPayload = r.value().slice();
      else if (r.tag === CommandAckTag.MESSAGE) msg.message = tlvString(r);
    }
  } catch (err) {
    throw withSeq(err, seq);
  }
  return msg;
}

export function encodeCommandAck(msg: CommandAckMessage): Uint8Array {
  const w = new ByteWriter(32 + (msg.resultPayload?.length ?? 0));
  w.u32(msg.seq).u8(msg.result);
  if (msg.resultPayload !== undefined) w.tlv(CommandAckTag.RESULT_PAYLOAD, msg.resultPayload);
  if (msg.message !== undefined) w.tlvString(CommandAckTag.MESSAGE, msg.message);
  return w.finish();
}

export interface SensorReadMessage {
  channel: number;
  tag: number;
}

export function decodeSensorRead(data: Uint8Array): SensorReadMessage {
  requireLength(data, 2);
  return { channel: data[0]!, tag: data[1]! };
}

export function encodeSensorRead(msg: SensorReadMessage): Uint8Array {
  return Uint8Array.of(msg.channel, msg.tag);
}

export interface SensorDataMessage {
  channel: number;
  tag: number;
  /** 0 ok, 1 no such channel, 2 failure. */
  status: number;
  value: Uint8Array;
}

export function decodeSensorData(data: Uint8Array): SensorDataMessage {
  requireLength(data, 3);
  return { channel: data[0]!, tag: data[1]!, status: data[2]!, value: data.slice(3) };
}

export function encodeSensorData(msg: SensorDataMessage): Uint8Array {
  const out = new Uint8Array(3 + msg.value.length);
  out[0] = msg.channel;
  out[1] = msg.tag;
  out[2] = msg.status;
  out.set(msg.value, 3);
  return out;
}
