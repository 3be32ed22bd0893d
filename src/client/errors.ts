// Typed errors of the vehicle SDK: each has a stable `code` callers can switch on.
import { ACK_STATUS_NAMES, CONNACK_STATUS_NAMES } from '../protocol/index.js';

export type ClientErrorCode =
  | 'VMCP_CLIENT_OUTBOX_FULL'
  | 'VMCP_CLIENT_UPLINK_REFUSED'
  | 'VMCP_CLIENT_INVALID_SAMPLE'
  | 'VMCP_CLIENT_CONNECT_REFUSED'
  | 'VMCP_CLIENT_GATEWAY_ERROR'
  | 'VMCP_CLIENT_UPLINK_GAP'
  | 'VMCP_CLIENT_NOT_CONNECTED'
  | 'VMCP_CLIENT_PROTOCOL'
  | 'VMCP_CLIENT_STORE';

/** Base class of every error the SDK raises or emits. */
export class VehicleClientError extends Error {
  override readonly name: string = 'VehicleClientError';
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * `publish*` refused because `maxOutbox` unacked messages are already held. No seq was assigned and
 * nothing was stored: the caller decides whether to retry later, drop, or aggregate.
 */
export class OutboxFullError extends VehicleClientError {
  override readonly name = 'OutboxFullError';
  constructor(readonly maxOutbox: number) {
    super('VMCP_CLIENT_OUTBOX_FULL', `outbox full: ${maxOutbox} unacked messages`);
  }
}

/**
 * The gateway consumed the seq without storing it: UPLINK_ACK REJECTED (invalid content) or
 * FORBIDDEN (outside the session's scopes), PROTOCOL.md 3.2. The message is dropped, never resent.
 * For a TELEMETRY_BATCH the gateway reports one status for the whole batch (5): `batch` gives its
 * seqs, and with REJECTED some of its samples may have been stored.
 */
export class UplinkRefusedError extends VehicleClientError {
  override readonly name = 'UplinkRefusedError';
  constructor(
    readonly seq: number,
    readonly status: number,
    readonly batch?: { firstSeq: number; lastSeq: number },
  ) {
    super(
      'VMCP_CLIENT_UPLINK_REFUSED',
      `uplink seq ${seq} ${ACK_STATUS_NAMES[status] ?? status}` +
        (batch === undefined ? '' : ` (batch ${batch.firstSeq}-${batch.lastSeq})`),
    );
  }
}

/** A sample the gateway would reject (missing timestamp, value out of range): refused before a seq is assigned. */
export class InvalidSampleError extends VehicleClientError {
  override readonly name = 'InvalidSampleError';
  constructor(cause: unknown) {
    super(
      'VMCP_CLIENT_INVALID_SAMPLE',
      `invalid sample: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  }
}

/** CONNACK refused the session (PROTOCOL.md 2.2). `fatal` means the client stopped retrying. */
export class ConnectRefusedError extends VehicleClientError {
  override readonly name = 'ConnectRefusedError';
  constructor(
    readonly status: number,
    readonly reason: string | undefined,
    readonly fatal: boolean,
  ) {
    super(
      'VMCP_CLIENT_CONNECT_REFUSED',
      `CONNACK ${CONNACK_STATUS_NAMES[status] ?? status}${reason === undefined ? '' : `: ${reason}`}`,
    );
  }
}

/** The gateway sent ERROR (PROTOCOL.md 6); the session stays open. */
export class GatewayErrorReceived extends VehicleClientError {
  override readonly name = 'GatewayErrorReceived';
  constructor(
    readonly errorCode: number,
    readonly refCmd: number,
    readonly refSeq: number | undefined,
    detail: string | undefined,
  ) {
    super(
      'VMCP_CLIENT_GATEWAY_ERROR',
      `gateway ERROR ${errorCode} for command 0x${refCmd.toString(16).padStart(2, '0')}` +
        (detail === undefined ? '' : `: ${detail}`),
    );
  }
}

/** The gateway expects an uplink seq the outbox no longer holds (its store and ours disagree). */
export class UplinkGapError extends VehicleClientError {
  override readonly name = 'UplinkGapError';
  constructor(
    readonly expectedSeq: number,
    readonly oldestHeldSeq: number,
  ) {
    super(
      'VMCP_CLIENT_UPLINK_GAP',
      `gateway expects uplink seq ${expectedSeq} but the oldest unacked message is ${oldestHeldSeq}`,
    );
  }
}

/** An operation that needs a live session (QUERY) was called without one, or the session ended. */
export class NotConnectedError extends VehicleClientError {
  override readonly name = 'NotConnectedError';
  constructor(message = 'not connected') {
    super('VMCP_CLIENT_NOT_CONNECTED', message);
  }
}

/** The gateway sent something the client cannot decode, or a message illegal in the session state. */
export class ClientProtocolError extends VehicleClientError {
  override readonly name = 'ClientProtocolError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('VMCP_CLIENT_PROTOCOL', message, options);
  }
}

/** The outbox store failed to persist (disk full, permissions). */
export class OutboxStoreError extends VehicleClientError {
  override readonly name = 'OutboxStoreError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('VMCP_CLIENT_STORE', message, options);
  }
}
