// The one error catalogue: stable VMCP_ERR_* codes, the protocol ERROR code or HTTP answer each maps to.
import { ErrorCode, type ErrorCodeValue } from './protocol/constants.js';

interface CatalogueEntry {
  /** The ERROR CODE (PROTOCOL.md 6) a vehicle is sent for this failure, when it reaches the wire. */
  readonly protocol?: ErrorCodeValue;
  /** HTTP status and the snake_case `code` of the error body (PROTOCOL.md 9). */
  readonly http?: readonly [status: number, code: string];
  readonly message: string;
}

const INVALID_DATA = ErrorCode.INVALID_DATA;

/** Every error the gateway raises, by stable code. docs/errors.md lists the same table (a test keeps them in sync). */
export const ERRORS = {
  // Framing (PROTOCOL.md 1.1, 1.2)
  VMCP_ERR_BAD_CRC: { protocol: ErrorCode.INVALID_FRAME, message: 'frame CRC mismatch' },
  VMCP_ERR_BROKEN_RUN: { protocol: ErrorCode.INVALID_FRAME, message: 'fragment run interrupted' },
  VMCP_ERR_TOO_LARGE: {
    protocol: ErrorCode.TOO_LARGE,
    message: 'message exceeds the maximum size',
  },
  // Message content (PROTOCOL.md 1.3 and each command's rules)
  VMCP_ERR_SHORT_DATA: {
    protocol: INVALID_DATA,
    message: "DATA shorter than the command's fixed part",
  },
  VMCP_ERR_BAD_LENGTH: {
    protocol: INVALID_DATA,
    message: 'DATA length not allowed for the command',
  },
  VMCP_ERR_TLV_TRUNCATED: {
    protocol: INVALID_DATA,
    message: 'TLV record runs past the end of the message',
  },
  VMCP_ERR_TLV_REPEATED: { protocol: INVALID_DATA, message: 'TLV tag repeated in one message' },
  VMCP_ERR_TLV_SIZE: {
    protocol: INVALID_DATA,
    message: 'TLV value has the wrong size for its tag',
  },
  VMCP_ERR_VALUE_RANGE: { protocol: INVALID_DATA, message: 'value out of its range' },
  VMCP_ERR_UTF8: { protocol: INVALID_DATA, message: 'string is not valid UTF-8' },
  VMCP_ERR_MISSING_TAG: { protocol: INVALID_DATA, message: 'required TLV missing' },
  VMCP_ERR_TRAILING_BYTES: { protocol: INVALID_DATA, message: 'bytes after the last record' },
  VMCP_ERR_BAD_MAGIC: { protocol: INVALID_DATA, message: 'CONNECT MAGIC is not "VMCP"' },
  VMCP_ERR_VERSION_RANGE: { protocol: INVALID_DATA, message: 'VERSION_MIN > VERSION_MAX' },
  VMCP_ERR_VEHICLE_ID: {
    protocol: INVALID_DATA,
    message: 'VEHICLE_ID missing or not matching [A-Za-z0-9._:-]{1,64}',
  },
  VMCP_ERR_TOKEN_AND_CREDENTIAL: {
    protocol: INVALID_DATA,
    message: 'both TOKEN and CREDENTIAL present',
  },
  // Session (PROTOCOL.md 2, 6)
  VMCP_ERR_UNKNOWN_COMMAND: {
    protocol: ErrorCode.UNKNOWN_COMMAND,
    message: 'command not registered for the session version',
  },
  VMCP_ERR_UNSUPPORTED_VERSION: {
    protocol: ErrorCode.UNSUPPORTED_VERSION,
    message: 'no common protocol version',
  },
  VMCP_ERR_NOT_CONNECTED: { protocol: ErrorCode.NOT_CONNECTED, message: 'CONNECT expected first' },
  VMCP_ERR_FORBIDDEN: { protocol: ErrorCode.FORBIDDEN, message: "outside the session's scopes" },
  VMCP_ERR_RATE_LIMITED: { protocol: ErrorCode.RATE_LIMITED, message: 'rate limited' },
  VMCP_ERR_INTERNAL: {
    protocol: ErrorCode.INTERNAL,
    http: [500, 'internal'],
    message: 'internal error',
  },
  VMCP_ERR_STORE_UNAVAILABLE: {
    protocol: ErrorCode.INTERNAL,
    http: [503, 'store_unavailable'],
    message: 'store unavailable',
  },
  // Configuration
  VMCP_ERR_CONFIG: { message: 'invalid configuration' },
  // HTTP API (PROTOCOL.md 9)
  VMCP_ERR_HTTP_UNAUTHORIZED: {
    http: [401, 'unauthorized'],
    message: 'missing or wrong bearer token',
  },
  VMCP_ERR_HTTP_NOT_FOUND: { http: [404, 'not_found'], message: 'no such resource' },
  VMCP_ERR_HTTP_BAD_REQUEST: { http: [400, 'bad_request'], message: 'malformed body or parameter' },
  VMCP_ERR_VEHICLE_NOT_FOUND: { http: [404, 'vehicle_not_found'], message: 'vehicle never seen' },
  VMCP_ERR_COMMAND_NOT_FOUND: { http: [404, 'not_found'], message: 'no such command' },
  VMCP_ERR_COMMAND_DELIVERED: {
    http: [409, 'command_delivered'],
    message: 'command already written to the vehicle',
  },
  VMCP_ERR_COMMAND_FINAL: { http: [409, 'command_final'], message: 'command already final' },
  VMCP_ERR_DEVICE_EXISTS: { http: [409, 'device_exists'], message: 'device already registered' },
  VMCP_ERR_DEVICE_NOT_FOUND: { http: [404, 'not_found'], message: 'no such device' },
  VMCP_ERR_VEHICLE_OFFLINE: {
    http: [409, 'vehicle_offline'],
    message: 'vehicle offline or session ended',
  },
  VMCP_ERR_NOT_PERMITTED: {
    http: [409, 'not_permitted'],
    message: 'session lacks command:receive',
  },
  VMCP_ERR_TOO_MANY_READS: {
    http: [429, 'too_many_reads'],
    message: '256 sensor reads outstanding',
  },
  VMCP_ERR_NO_SUCH_CHANNEL: {
    http: [404, 'no_such_channel'],
    message: 'vehicle has no such sensor channel',
  },
  VMCP_ERR_SENSOR_FAILURE: {
    http: [502, 'sensor_failure'],
    message: 'sensor read failed on the vehicle',
  },
  VMCP_ERR_TIMEOUT: { http: [504, 'timeout'], message: 'no answer in time' },
  VMCP_ERR_NOT_READY: { http: [503, 'not_ready'], message: 'listeners or store not ready' },
} as const satisfies Record<string, CatalogueEntry>;

export type VmcpErrorCode = keyof typeof ERRORS;

export interface VmcpErrorOptions {
  cause?: unknown;
  /** A readable SEQ of the message concerned (ERROR REF_SEQ, UPLINK_ACK REJECTED). */
  seq?: number;
  /** The TLV tag or option concerned, for messages and logs. */
  field?: string | number;
}

/** An error from the catalogue. `code` is stable; `message` is for people. */
export class VmcpError extends Error {
  override readonly name = 'VmcpError';
  readonly code: VmcpErrorCode;
  readonly seq: number | undefined;
  readonly field: string | number | undefined;

  constructor(code: VmcpErrorCode, detail?: string, options: VmcpErrorOptions = {}) {
    super(
      detail ?? ERRORS[code].message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.code = code;
    this.seq = options.seq;
    this.field = options.field;
  }

  /** The protocol ERROR code this maps to (INTERNAL when the entry has none). */
  get protocolCode(): ErrorCodeValue {
    const entry: CatalogueEntry = ERRORS[this.code];
    return entry.protocol ?? ErrorCode.INTERNAL;
  }

  /** The HTTP status and snake_case code this maps to (500 internal when the entry has none). */
  get http(): readonly [number, string] {
    const entry: CatalogueEntry = ERRORS[this.code];
    return entry.http ?? [500, 'internal'];
  }
}

export function isVmcpError(err: unknown, code?: VmcpErrorCode): err is VmcpError {
  return err instanceof VmcpError && (code === undefined || err.code === code);
}
