// Typed encoders and decoders of every VMCP message, and a table of them by command code.
import { Cmd } from '../constants.js';
import { decodeConnack, decodeConnect, encodeConnack, encodeConnect } from './connect.js';
import {
  checkPing,
  decodeDisconnect,
  decodeError,
  decodeQuery,
  decodeQueryResult,
  encodeDisconnect,
  encodeError,
  encodeQuery,
  encodeQueryResult,
} from './control.js';
import {
  decodeCommand,
  decodeCommandAck,
  decodeSensorData,
  decodeSensorRead,
  encodeCommand,
  encodeCommandAck,
  encodeSensorData,
  encodeSensorRead,
} from './downlink.js';
import {
  decodeEvent,
  decodeTelemetry,
  decodeTelemetryBatch,
  decodeUplinkAck,
  encodeEvent,
  encodeTelemetry,
  encodeTelemetryBatch,
  encodeUplinkAck,
} from './uplink.js';

export * from './connect.js';
export * from './control.js';
export * from './downlink.js';
export * from './uplink.js';

/** A message's DATA codec: decode throws VmcpError on invalid DATA. */
export interface MessageCodec<T> {
  readonly code: number;
  decode(data: Uint8Array): T;
  encode(msg: T): Uint8Array;
}

function pingCodec(code: number): MessageCodec<{ data: Uint8Array }> {
  return {
    code,
    decode(data) {
      checkPing(data);
      return { data: data.slice() };
    },
    encode: (msg) => msg.data,
  };
}

/** Every message of versions 1 and 2 by command code (for tests, tools and generic dispatch). */
export const MESSAGE_CODECS = {
  [Cmd.PING]: pingCodec(Cmd.PING),
  [Cmd.PONG]: pingCodec(Cmd.PONG),
  [Cmd.SENSOR_READ]: { code: Cmd.SENSOR_READ, decode: decodeSensorRead, encode: encodeSensorRead },
  [Cmd.SENSOR_DATA]: { code: Cmd.SENSOR_DATA, decode: decodeSensorData, encode: encodeSensorData },
  [Cmd.QUERY]: { code: Cmd.QUERY, decode: decodeQuery, encode: encodeQuery },
  [Cmd.QUERY_RESULT]: {
    code: Cmd.QUERY_RESULT,
    decode: decodeQueryResult,
    encode: encodeQueryResult,
  },
  [Cmd.ERROR]: { code: Cmd.ERROR, decode: decodeError, encode: encodeError },
  [Cmd.DISCONNECT]: { code: Cmd.DISCONNECT, decode: decodeDisconnect, encode: encodeDisconnect },
  [Cmd.CONNECT]: { code: Cmd.CONNECT, decode: decodeConnect, encode: encodeConnect },
  [Cmd.CONNACK]: { code: Cmd.CONNACK, decode: decodeConnack, encode: encodeConnack },
  [Cmd.TELEMETRY]: { code: Cmd.TELEMETRY, decode: decodeTelemetry, encode: encodeTelemetry },
  [Cmd.EVENT]: { code: Cmd.EVENT, decode: decodeEvent, encode: encodeEvent },
  [Cmd.UPLINK_ACK]: { code: Cmd.UPLINK_ACK, decode: decodeUplinkAck, encode: encodeUplinkAck },
  [Cmd.TELEMETRY_BATCH]: {
    code: Cmd.TELEMETRY_BATCH,
    decode: decodeTelemetryBatch,
    encode: encodeTelemetryBatch,
  },
  [Cmd.COMMAND]: { code: Cmd.COMMAND, decode: decodeCommand, encode: encodeCommand },
  [Cmd.COMMAND_ACK]: { code: Cmd.COMMAND_ACK, decode: decodeCommandAck, encode: encodeCommandAck },
} as const;
