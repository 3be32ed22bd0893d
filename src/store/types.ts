// The store port: every adapter (SQLite embedded, Redis) implements this and passes test/store/contract.ts.
import type { RecordData, UplinkRecord } from '../protocol/record.js';

/** Every status a command can have, the open ones first (the API's enum, the CLI's checks). */
export const COMMAND_STATUSES = [
  'pending',
  'delivered',
  'succeeded',
  'failed',
  'rejected',
  'unsupported',
  'expired',
  'cancelled',
] as const;

export type CommandStatus = (typeof COMMAND_STATUSES)[number];

export const OPEN_STATUSES: readonly CommandStatus[] = ['pending', 'delivered'];
/** COMMAND_ACK RESULT 0–4 → final status (4.2). */
export const RESULT_STATUS: readonly CommandStatus[] = [
  'succeeded',
  'failed',
  'rejected',
  'unsupported',
  'expired',
];

export function isFinalStatus(s: CommandStatus): boolean {
  return s !== 'pending' && s !== 'delivered';
}

/** One uplink seq to consume: a stored record, or `record: null` for a hole (REJECTED / FORBIDDEN, 3.2). */
export interface UplinkWrite {
  vehicleId: string;
  seq: number;
  record: UplinkRecord | null;
  /**
   * The record's TLVs as received (a TELEMETRY sample, or an EVENT after its SEQ), when the gateway
   * has them: a store may keep these bytes instead of the JSON of `record.data` and decode them with
   * the codec on read (the SQLite store does). A copy, not a view of a reused buffer.
   */
  raw?: Uint8Array | undefined;
  /**
   * The bytes of `record.traceparent` other than its seq (UplinkTracer.ids), when the gateway's
   * tracer made it: a store may keep these instead of the text (the SQLite store does).
   */
  traceIds?: Uint8Array | undefined;
  /**
   * The writing session's fence (cluster: its claim's epoch), the same for every write of a vehicle
   * in one call. An engine shared by several nodes refuses the vehicle's writes (`fenced`) when a
   * later session has marked the vehicle seen with a higher fence; undefined is not checked.
   */
  fence?: number | undefined;
}

/**
 * Per-vehicle outcome of an append that was not written. `lastSeq` is the store's last consumed seq
 * for that vehicle when the writes did not continue from it (another node consumed it, or a bug).
 */
export type AppendFailure =
  | { kind: 'conflict'; lastSeq: number }
  /** A later session of the vehicle (a higher fence) has connected: this one is superseded. */
  | { kind: 'fenced' }
  | { kind: 'error'; error: Error };

export interface VehicleRow {
  id: string;
  /** Last consumed uplink seq (0 before any). */
  lastUplinkSeq: number;
  /** Merged telemetry data, each key from the highest seq carrying it (9). */
  latest: RecordData;
  firstSeenAt: number | null;
  lastSeenAt: number | null;
  /** The vehicle's fence after markSeen, from engines that keep one (see `markSeen`). */
  fence?: number;
}

export interface CommandRow {
  id: string;
  vehicleId: string;
  seq: number;
  name: string;
  /** JSON text of `params`, or null when the request had none. */
  params: string | null;
  createdAt: number;
  expiresAt: number;
  status: CommandStatus;
  /** Parsed RESULT_PAYLOAD (JSON value, or string), null until a final result carries one. */
  result: unknown;
  updatedAt: number;
  traceparent: string | null;
}

export interface NewCommand {
  id: string;
  vehicleId: string;
  name: string;
  params: string | null;
  createdAt: number;
  expiresAt: number;
  traceparent: string | null;
}

export interface DeviceRow {
  id: string;
  secretHash: string;
  scopes: string[];
  createdAt: number;
  revokedAt: number | null;
}

export interface VehiclePage {
  items: VehicleRow[];
  /** Opaque cursor for the next page, or null at the end. */
  next: string | null;
}

export interface StoreCapabilities {
  /** The engine's name, for logs and /metrics. */
  readonly engine: string;
  /** Appends of different vehicles may fail independently (Redis); SQLite commits a batch whole. */
  readonly partialAppend: boolean;
}

export interface Store {
  readonly capabilities: StoreCapabilities;
  open(): Promise<void>;
  close(): Promise<void>;
  /** Cheap round trip used to detect recovery after a failure. */
  ping(): Promise<void>;

  // Uplink (3.2): durable before the gateway acks.
  /**
   * Consumes `writes` (grouped by vehicle, each vehicle's seqs contiguous and ascending). A vehicle's
   * writes are applied only if its first seq is its last consumed + 1; its latest state is merged from
   * its telemetry records; `record.seq` equals the write's `seq`. Resolves with the vehicles NOT
   * written (absent = durable), a conflict included; rejects only on an error, in which case nothing
   * is assumed written (an engine with `partialAppend` reports per-vehicle errors in the map instead).
   */
  appendUplink(writes: readonly UplinkWrite[]): Promise<Map<string, AppendFailure>>;
  /** Stored records with seq > afterSeq, in seq order (holes are not listed). Every `limit` here is ≥ 1. */
  listUplink(vehicleId: string, afterSeq: number, limit: number): Promise<UplinkRecord[]>;
  /**
   * Deletes up to `limit` records received before `before`; returns how many. Seq state and latest stay.
   * An engine may approximate "received before" by arrival order: fewer than `limit` means "nothing
   * more to delete now", never that newer records were touched.
   */
  pruneUplink(before: number, limit: number): Promise<number>;

  // Vehicles
  /**
   * Records a CONNACK ACCEPTED; returns the vehicle (created when new). With `fence` (cluster: the
   * session's claim epoch) an engine shared by nodes raises the vehicle's fence to it and returns
   * the fence it holds after that in `VehicleRow.fence` (higher: a later session has connected).
   */
  markSeen(vehicleId: string, at: number, fence?: number): Promise<VehicleRow>;
  /** A vehicle that has connected at least once, else undefined. */
  getVehicle(vehicleId: string): Promise<VehicleRow | undefined>;
  listVehicles(limit: number, cursor: string | null): Promise<VehiclePage>;

  // Downlink outbox (4.1)
  /** Persists a command with the vehicle's next downlink seq (never reused). */
  createCommand(cmd: NewCommand): Promise<CommandRow>;
  getCommand(id: string): Promise<CommandRow | undefined>;
  /** Commands neither final nor expired at `now`, by seq. */
  openCommands(vehicleId: string, now: number): Promise<CommandRow[]>;
  /**
   * Moves a command to `to` if its status is one of `from` (compare-and-set); sets `result` when given.
   * Returns the updated row, or undefined when the status did not match (the row is unchanged).
   */
  transitionCommand(
    id: string,
    from: readonly CommandStatus[],
    to: CommandStatus,
    now: number,
    result?: unknown,
  ): Promise<CommandRow | undefined>;
  /** Marks open commands past EXPIRES_AT as expired; returns them (at most `limit`). */
  expireCommands(now: number, limit: number): Promise<CommandRow[]>;

  // Device registry (2.3, 9)
  /** false when a (non-revoked) device with that id exists. A revoked id may be registered again. */
  addDevice(device: DeviceRow): Promise<boolean>;
  getDevice(id: string): Promise<DeviceRow | undefined>;
  /** false when there is no such device or it is already revoked. */
  revokeDevice(id: string, at: number): Promise<boolean>;

  /** Small key/value settings kept with the data (generated secrets live in files, not here). */
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;
}
