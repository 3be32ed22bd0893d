// Wire constants of VMCP (shared/PROTOCOL.md): command codes, tags, status and reason codes.

/** Start-of-frame byte (PROTOCOL.md 1). */
export const SOF = 0x55;
/** CMD bit 7: the message continues in the next frame (1.2). */
export const MORE_FLAG = 0x80;
/** SOF + CMD + LEN + CRC. */
export const FRAME_OVERHEAD = 5;
/** LEN is one byte (1). */
export const MAX_FRAME_DATA = 255;
export const MAX_FRAME_BYTES = MAX_FRAME_DATA + FRAME_OVERHEAD;
/** Gateway default for a reassembled message (1.2). */
export const DEFAULT_MAX_MESSAGE_BYTES = 16_384;
/** CONNECT's MAGIC, ASCII "VMCP" (2.1). */
export const CONNECT_MAGIC = 0x564d4350;
/** Protocol versions this implementation speaks. */
export const MIN_VERSION = 1;
export const MAX_VERSION = 2;

export const Cmd = {
  PING: 0x01,
  PONG: 0x02,
  SENSOR_READ: 0x03,
  SENSOR_DATA: 0x04,
  QUERY: 0x0a,
  QUERY_RESULT: 0x0b,
  ERROR: 0x0e,
  DISCONNECT: 0x0f,
  CONNECT: 0x10,
  CONNACK: 0x11,
  TELEMETRY: 0x20,
  EVENT: 0x21,
  UPLINK_ACK: 0x22,
  TELEMETRY_BATCH: 0x23,
  COMMAND: 0x30,
  COMMAND_ACK: 0x31,
} as const;
export type CmdCode = (typeof Cmd)[keyof typeof Cmd];

/** Human names of command codes, for logs and metrics labels. */
export const CMD_NAMES: Readonly<Record<number, string>> = Object.freeze(
  Object.fromEntries(Object.entries(Cmd).map(([k, v]) => [v, k])),
);

export function cmdName(code: number): string {
  return CMD_NAMES[code] ?? `0x${code.toString(16).padStart(2, '0')}`;
}

/** CONNECT TLV tags (2.1). */
export const ConnectTag = {
  VEHICLE_ID: 0x01,
  TOKEN: 0x02,
  KEEPALIVE: 0x03,
  LAST_COMMAND_SEQ: 0x04,
  CLIENT_INFO: 0x05,
  CREDENTIAL: 0x06,
} as const;

/** CONNACK TLV tags (2.2). */
export const ConnackTag = {
  SESSION_ID: 0x01,
  KEEPALIVE: 0x02,
  NEXT_UPLINK_SEQ: 0x03,
  TOKEN: 0x04,
  SERVER_TIME: 0x05,
  REASON: 0x06,
  REDIRECT: 0x07,
  RETRY_AFTER_MS: 0x08,
} as const;

/** CONNACK STATUS (2.2). */
export const ConnackStatus = {
  ACCEPTED: 0x00,
  UNSUPPORTED_VERSION: 0x01,
  BAD_CREDENTIALS: 0x02,
  FORBIDDEN: 0x03,
  SERVER_BUSY: 0x04,
  INVALID: 0x05,
} as const;
export type ConnackStatusCode = (typeof ConnackStatus)[keyof typeof ConnackStatus];
export const CONNACK_STATUS_NAMES = [
  'ACCEPTED',
  'UNSUPPORTED_VERSION',
  'BAD_CREDENTIALS',
  'FORBIDDEN',
  'SERVER_BUSY',
  'INVALID',
] as const;

/** TELEMETRY / EVENT TLV tags (3.1). */
export const UplinkTag = {
  TIMESTAMP: 0x01,
  LATITUDE: 0x02,
  LONGITUDE: 0x03,
  SPEED: 0x04,
  HEADING: 0x05,
  ALTITUDE: 0x06,
  ODOMETER: 0x07,
  FUEL_OR_SOC: 0x08,
  STATUS_FLAGS: 0x09,
  ENGINE_RPM: 0x0a,
  BATTERY_MV: 0x0b,
  EVENT_CODE: 0x10,
  SEVERITY: 0x11,
  DETAIL: 0x12,
} as const;
/** Vendor tags 0x80–0xFE are kept as raw bytes (3.1). */
export const VENDOR_TAG_MIN = 0x80;
export const VENDOR_TAG_MAX = 0xfe;

/** UPLINK_ACK STATUS (3.2). */
export const AckStatus = {
  STORED: 0x00,
  DUPLICATE: 0x01,
  OUT_OF_ORDER: 0x02,
  REJECTED: 0x03,
  FORBIDDEN: 0x04,
  THROTTLED: 0x05,
} as const;
export type AckStatusCode = (typeof AckStatus)[keyof typeof AckStatus];
export const ACK_STATUS_NAMES = [
  'STORED',
  'DUPLICATE',
  'OUT_OF_ORDER',
  'REJECTED',
  'FORBIDDEN',
  'THROTTLED',
] as const;

/** COMMAND TLV tags (4.1). */
export const CommandTag = {
  COMMAND_ID: 0x01,
  NAME: 0x02,
  PARAMS: 0x03,
  EXPIRES_AT: 0x04,
  TRACEPARENT: 0x05,
} as const;

/** COMMAND_ACK TLV tags and RESULT codes (4.2). */
export const CommandAckTag = { RESULT_PAYLOAD: 0x01, MESSAGE: 0x02 } as const;
export const CommandResult = {
  SUCCEEDED: 0x00,
  FAILED: 0x01,
  REJECTED: 0x02,
  UNSUPPORTED: 0x03,
  EXPIRED: 0x04,
  IN_PROGRESS: 0x05,
} as const;
export type CommandResultCode = (typeof CommandResult)[keyof typeof CommandResult];

/** SENSOR_DATA STATUS (4.3). */
export const SensorStatus = { OK: 0, NO_SUCH_CHANNEL: 1, FAILURE: 2 } as const;

/** QUERY codes and QUERY_RESULT tags (5). */
export const Query = { SERVER_TIME: 0x01, PENDING_COMMANDS: 0x02, SESSION_INFO: 0x03 } as const;
export const QueryResultTag = {
  SERVER_TIME: 0x01,
  PENDING_COMMANDS: 0x02,
  SESSION_ID: 0x03,
  KEEPALIVE: 0x04,
} as const;

/** ERROR codes (6). */
export const ErrorCode = {
  INVALID_FRAME: 0x01,
  INVALID_DATA: 0x02,
  UNKNOWN_COMMAND: 0x03,
  UNSUPPORTED_VERSION: 0x04,
  NOT_CONNECTED: 0x05,
  FORBIDDEN: 0x06,
  TOO_LARGE: 0x07,
  RATE_LIMITED: 0x08,
  INTERNAL: 0x09,
} as const;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];
export const ErrorTag = { MESSAGE: 0x01, REF_SEQ: 0x02 } as const;

/** DISCONNECT reasons and tags (6). */
export const DisconnectReason = {
  NORMAL: 0x00,
  SHUTDOWN: 0x01,
  TAKEN_OVER: 0x02,
  KEEPALIVE_TIMEOUT: 0x03,
  PROTOCOL_ERROR: 0x04,
  AUTH_EXPIRED: 0x05,
  OVERLOADED: 0x06,
  KICKED: 0x07,
} as const;
export type DisconnectReasonCode = (typeof DisconnectReason)[keyof typeof DisconnectReason];
export const DisconnectTag = { MESSAGE: 0x01, REDIRECT: 0x02, RETRY_AFTER_MS: 0x03 } as const;

export const DISCONNECT_REASON_NAMES = [
  'NORMAL',
  'SHUTDOWN',
  'TAKEN_OVER',
  'KEEPALIVE_TIMEOUT',
  'PROTOCOL_ERROR',
  'AUTH_EXPIRED',
  'OVERLOADED',
  'KICKED',
] as const;
