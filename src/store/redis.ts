// The shared store for scale-out (issue 5): Redis standalone or Redis Cluster through ioredis.
// Key layout (docs/cluster.md): a vehicle's uplink state lives under its partition's hash tag {p<N>}
// (N = partitionOf(vehicleId)), its commands under {v:<vehicleId>}; every Lua script touches one slot.
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { partitionOf } from '../cluster/ring.js';
import type { RecordData, UplinkRecord } from '../protocol/record.js';
import {
  ADD_DEVICE,
  APPEND_UPLINK,
  CREATE_COMMAND,
  EXPIRE_COMMAND,
  GET_VEHICLE,
  LIST_UPLINK,
  MARK_SEEN,
  PRUNE_UPLINK,
  REVOKE_DEVICE,
  TRANSITION_COMMAND,
  type RedisScript,
} from './redis-scripts.js';
import {
  isFinalStatus,
  type AppendFailure,
  type CommandRow,
  type CommandStatus,
  type DeviceRow,
  type NewCommand,
  type Store,
  type StoreCapabilities,
  type UplinkWrite,
  type VehiclePage,
  type VehicleRow,
} from './types.js';

export interface RedisStoreOptions {
  /** One URL → a standalone server; several → Redis Cluster with these seed nodes. */
  urls: string[];
  /** Uplink partitions (streams). Fixed for the life of the data: open() refuses another count. */
  partitions?: number;
  /** Prefix of every key (no braces). Default 'vmcp'. */
  keyPrefix?: string;
  /** A command without a reply in this time fails (default 10 000 ms). */
  commandTimeoutMs?: number;
  /** Connection errors (ioredis reconnects on its own); default: ignored, ping() reports them. */
  onError?: (err: Error) => void;
}

export const DEFAULT_PARTITIONS = 16;
export const DEFAULT_KEY_PREFIX = 'vmcp';
const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
/** A command id in the expiry index without its command this long past EXPIRES_AT is dropped. */
const ORPHAN_GRACE_MS = 60_000;
/** Entries read per round trip when looking for prunable records. */
const PRUNE_READ_CHUNK = 500;

type Client = Redis | Cluster;
type Hash = Record<string, string>;

/** Flat [field, value, …] → object. */
function pairs(flat: unknown): Hash {
  const out: Hash = {};
  if (!Array.isArray(flat)) return out;
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1]);
  return out;
}

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

/** Section-8 JSON of a write's record, keys in the documented order; seq and vehicleId from the write. */
function recordJson(w: UplinkWrite, r: UplinkRecord): string {
  const o: Record<string, unknown> = {
    vehicleId: w.vehicleId,
    seq: w.seq,
    kind: r.kind,
    timestamp: r.timestamp,
    receivedAt: r.receivedAt,
  };
  if (r.traceparent !== undefined) o.traceparent = r.traceparent;
  o.data = r.data;
  return JSON.stringify(o);
}

function toVehicle(id: string, reply: unknown): VehicleRow | undefined {
  if (!Array.isArray(reply) || reply.length < 3) return undefined;
  const [seen, seq, latestFlat, fence] = reply as [string, string, unknown, string | undefined];
  const colon = seen.indexOf(':');
  const latest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(pairs(latestFlat))) latest[k] = JSON.parse(v) as unknown;
  const row: VehicleRow = {
    id,
    lastUplinkSeq: Number(seq),
    latest: latest as RecordData,
    firstSeenAt: Number(seen.slice(0, colon)),
    lastSeenAt: Number(seen.slice(colon + 1)),
  };
  if (fence !== undefined && fence !== '') row.fence = Number(fence);
  return row;
}

function toCommand(h: Hash): CommandRow | undefined {
  if (h.id === undefined || h.status === undefined) return undefined;
  return {
    id: h.id,
    vehicleId: h.vehicleId ?? '',
    seq: Number(h.seq),
    name: h.name ?? '',
    params: h.params ?? null,
    createdAt: Number(h.createdAt),
    expiresAt: Number(h.expiresAt),
    status: h.status as CommandStatus,
    result: h.result === undefined ? null : (JSON.parse(h.result) as unknown),
    updatedAt: Number(h.updatedAt),
    traceparent: h.traceparent ?? null,
  };
}

function toDevice(id: string, h: Hash): DeviceRow | undefined {
  if (h.secretHash === undefined) return undefined;
  return {
    id,
    secretHash: h.secretHash,
    scopes: JSON.parse(h.scopes ?? '[]') as string[],
    createdAt: Number(h.createdAt),
    revokedAt: h.revokedAt === undefined ? null : Number(h.revokedAt),
  };
}

/** Smallest stream id greater than `id` ('ms-seq'). */
function nextStreamId(id: string): string {
  const dash = id.indexOf('-');
  return `${id.slice(0, dash)}-${BigInt(id.slice(dash + 1)) + 1n}`;
}

function credentials(url: string): Pick<RedisOptions, 'username' | 'password' | 'tls'> {
  const u = new URL(url);
  const out: Pick<RedisOptions, 'username' | 'password' | 'tls'> = {};
  if (u.username !== '') out.username = decodeURIComponent(u.username);
  if (u.password !== '') out.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') out.tls = {};
  return out;
}

export class RedisStore implements Store {
  readonly capabilities: StoreCapabilities = { engine: 'redis', partialAppend: true };
  readonly partitions: number;
  readonly keyPrefix: string;
  private client: Client | undefined;

  constructor(private readonly options: RedisStoreOptions) {
    if (options.urls.length === 0) throw new Error('RedisStore needs at least one URL');
    this.partitions = options.partitions ?? DEFAULT_PARTITIONS;
    if (!Number.isInteger(this.partitions) || this.partitions < 1 || this.partitions > 4096) {
      throw new RangeError(`partitions must be an integer in 1..4096, got ${this.partitions}`);
    }
    this.keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    if (/[{}]/.test(this.keyPrefix)) throw new Error('keyPrefix must not contain { or }');
  }

  // ---- keys (see docs/cluster.md) ----

  /** The vehicle's partition (0 … partitions-1). */
  partitionOf(vehicleId: string): number {
    return partitionOf(vehicleId, this.partitions);
  }
  private pk(p: number): string {
    return `${this.keyPrefix}:{p${p}}`;
  }
  /** The partition's uplink stream, the one consumers read (section-8 records in field `r`). */
  streamKey(p: number): string {
    return `${this.pk(p)}:uplink`;
  }
  private seqKey(p: number): string {
    return `${this.pk(p)}:seq`;
  }
  /** Per vehicle of the partition: the highest session fence marked seen (SessionRecord.epoch). */
  private fenceKey(p: number): string {
    return `${this.pk(p)}:fence`;
  }
  private seenKey(p: number): string {
    return `${this.pk(p)}:seen`;
  }
  private historyKey(p: number, vehicleId: string): string {
    return `${this.pk(p)}:h:${vehicleId}`;
  }
  private latestKey(p: number, vehicleId: string): string {
    return `${this.pk(p)}:l:${vehicleId}`;
  }
  private vk(vehicleId: string): string {
    return `${this.keyPrefix}:{v:${vehicleId}}`;
  }
  private cmdSeqKey(vehicleId: string): string {
    return `${this.vk(vehicleId)}:cseq`;
  }
  private cmdKey(vehicleId: string, id: string): string {
    return `${this.vk(vehicleId)}:c:${id}`;
  }
  private openKey(vehicleId: string): string {
    return `${this.vk(vehicleId)}:open`;
  }
  private get vehiclesKey(): string {
    return `${this.keyPrefix}:vehicles`;
  }
  private get cmdIndexKey(): string {
    return `${this.keyPrefix}:cmd:idx`;
  }
  private get cmdExpiryKey(): string {
    return `${this.keyPrefix}:cmd:exp`;
  }
  private deviceKey(id: string): string {
    return `${this.keyPrefix}:dev:${id}`;
  }
  private get metaKey(): string {
    return `${this.keyPrefix}:meta`;
  }
  private get configKey(): string {
    return `${this.keyPrefix}:config`;
  }

  // ---- lifecycle ----

  async open(): Promise<void> {
    if (this.client !== undefined) return;
    const timeout = this.options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    const urls = this.options.urls;
    let client: Client;
    // While disconnected, commands fail at once instead of waiting in ioredis' offline queue, and
    // commands in flight when a connection drops are not re-sent: a call that timed out or failed
    // must not be executed later behind the caller's back (a failed append was not acked).
    if (urls.length === 1) {
      const opts: RedisOptions = {
        lazyConnect: true,
        commandTimeout: timeout,
        enableAutoPipelining: true,
        enableOfflineQueue: false,
        autoResendUnfulfilledCommands: false,
      };
      client = new Redis(urls[0]!, opts);
    } else {
      const opts: ClusterOptions = {
        lazyConnect: true,
        enableAutoPipelining: true,
        enableOfflineQueue: false,
        scaleReads: 'master',
        // Re-reads the slot map now and then, so a master that comes back is reconnected even when
        // no command ran into a MOVED / connection error in the meantime.
        slotsRefreshInterval: 2000,
        redisOptions: {
          commandTimeout: timeout,
          autoResendUnfulfilledCommands: false,
          ...credentials(urls[0]!),
        },
      };
      client = new Cluster(urls, opts);
    }
    client.on('error', (err: Error) => this.options.onError?.(err));
    try {
      await client.connect();
      await client.ping();
      // The partition count is part of the data layout: refuse to reinterpret existing data.
      await client.hsetnx(this.configKey, 'partitions', String(this.partitions));
      const stored = await client.hget(this.configKey, 'partitions');
      if (Number(stored) !== this.partitions) {
        throw new Error(
          `the data under '${this.keyPrefix}' uses ${stored} partitions, not ${this.partitions}`,
        );
      }
    } catch (err) {
      client.disconnect();
      throw err;
    }
    this.client = client;
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c === undefined) return;
    try {
      await c.quit();
    } catch {
      c.disconnect();
    }
  }

  private get c(): Client {
    if (this.client === undefined) throw new Error('store is not open');
    return this.client;
  }

  async ping(): Promise<void> {
    const c = this.c;
    if (c instanceof Cluster) {
      // The master of every slot must answer: one master down means some partitions (and the
      // vehicles' commands hashed onto its slots) are unavailable.
      const owners = new Set<string>();
      for (let slot = 0; slot < 16384; slot++) {
        const owner = c.slots[slot]?.[0];
        if (owner === undefined) throw new Error(`Redis Cluster slot ${slot} has no known master`);
        owners.add(owner);
      }
      const masters = new Map<string, Redis>(
        c.nodes('master').map((n) => [`${n.options.host}:${n.options.port}`, n]),
      );
      await Promise.all(
        [...owners].map((key) => {
          const node = masters.get(key);
          if (node === undefined) {
            c.refreshSlotsCache(); // reconnects it if the slot map still names it
            throw new Error(`Redis Cluster master ${key} is not connected`);
          }
          return node.ping();
        }),
      );
    } else {
      await c.ping();
    }
  }

  /** EVALSHA, falling back to EVAL when the node does not have the script cached. */
  private async run(
    s: RedisScript,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    const c = this.c;
    const params = [...keys, ...args.map(String)];
    try {
      return await c.evalsha(s.sha, keys.length, params);
    } catch (err) {
      if (!isNoScript(err)) throw err;
      return await c.eval(s.lua, keys.length, params);
    }
  }

  // ---- uplink ----

  async appendUplink(writes: readonly UplinkWrite[]): Promise<Map<string, AppendFailure>> {
    if (this.client === undefined) throw new Error('store is not open');
    const byVehicle = new Map<string, UplinkWrite[]>();
    for (const w of writes) {
      const list = byVehicle.get(w.vehicleId);
      if (list === undefined) byVehicle.set(w.vehicleId, [w]);
      else list.push(w);
    }
    const byPartition = new Map<number, string[]>();
    for (const vehicleId of byVehicle.keys()) {
      const p = this.partitionOf(vehicleId);
      const list = byPartition.get(p);
      if (list === undefined) byPartition.set(p, [vehicleId]);
      else list.push(vehicleId);
    }

    const calls = [...byPartition].map(async ([p, vehicles]) => {
      const keys = [this.seqKey(p), this.streamKey(p), this.fenceKey(p)];
      const args: (string | number)[] = [vehicles.length];
      for (const vehicleId of vehicles) {
        const vw = byVehicle.get(vehicleId)!;
        keys.push(this.historyKey(p, vehicleId), this.latestKey(p, vehicleId));
        // latest: each telemetry key from the highest seq carrying it; an undefined value is no key.
        const patch = new Map<string, string>();
        const recs: string[] = [];
        for (const w of vw) {
          recs.push(String(w.seq), w.record === null ? '' : recordJson(w, w.record));
          if (w.record?.kind !== 'telemetry') continue;
          for (const [k, v] of Object.entries(w.record.data)) {
            if (v !== undefined) patch.set(k, JSON.stringify(v));
          }
        }
        const fence = vw[0]!.fence;
        args.push(vehicleId, fence === undefined ? '' : String(fence), vw.length, patch.size);
        for (const x of recs) args.push(x);
        for (const [k, v] of patch) args.push(k, v);
      }
      try {
        return { vehicles, reply: await this.run(APPEND_UPLINK, keys, args) };
      } catch (err) {
        return { vehicles, error: err instanceof Error ? err : new Error(String(err)) };
      }
    });

    const failures = new Map<string, AppendFailure>();
    const errors: Error[] = [];
    for (const r of await Promise.all(calls)) {
      if ('error' in r && r.error !== undefined) {
        errors.push(r.error);
        for (const vehicleId of r.vehicles) {
          failures.set(vehicleId, { kind: 'error', error: r.error });
        }
        continue;
      }
      const flat = Array.isArray(r.reply) ? (r.reply as unknown[]) : [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        failures.set(
          String(flat[i]),
          flat[i + 1] === 'fenced'
            ? { kind: 'fenced' }
            : { kind: 'conflict', lastSeq: Number(flat[i + 1]) },
        );
      }
    }
    if (errors.length > 0 && errors.length === byPartition.size) {
      throw errors.length === 1
        ? errors[0]!
        : new AggregateError(errors, `every partition failed: ${errors[0]!.message}`);
    }
    // The map in the order of the call's vehicles.
    const ordered = new Map<string, AppendFailure>();
    for (const vehicleId of byVehicle.keys()) {
      const f = failures.get(vehicleId);
      if (f !== undefined) ordered.set(vehicleId, f);
    }
    return ordered;
  }

  async listUplink(vehicleId: string, afterSeq: number, limit: number): Promise<UplinkRecord[]> {
    const p = this.partitionOf(vehicleId);
    const reply = await this.run(
      LIST_UPLINK,
      [this.historyKey(p, vehicleId), this.streamKey(p)],
      [String(Math.max(0, Math.floor(afterSeq))), String(Math.max(1, Math.floor(limit)))],
    );
    return (reply as string[]).map((r) => JSON.parse(r) as UplinkRecord);
  }

  /**
   * Walks each partition stream from its oldest entry while records were received before `before`
   * (arrival order approximates "received before": it stops at the first newer record), then trims
   * those entries (XTRIM MINID) and removes their ids from the vehicles' histories.
   */
  async pruneUplink(before: number, limit: number): Promise<number> {
    const c = this.c;
    let total = 0;
    for (let p = 0; p < this.partitions && total < limit; p++) {
      const stream = this.streamKey(p);
      const victims = new Map<string, string[]>(); // vehicleId → its entry ids
      let lastId: string | undefined;
      let taken = 0;
      let from = '-';
      let stop = false;
      while (!stop && total + taken < limit) {
        const want = Math.min(PRUNE_READ_CHUNK, limit - total - taken);
        const entries = await c.xrange(stream, from, '+', 'COUNT', want);
        for (const [id, fields] of entries) {
          const f: Hash = {};
          for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
          let receivedAt = Number.POSITIVE_INFINITY;
          try {
            receivedAt = (JSON.parse(f.r ?? '{}') as { receivedAt?: number }).receivedAt ?? 0;
          } catch {
            receivedAt = 0; // not ours to keep: an unreadable entry is pruned with its neighbours
          }
          if (!(receivedAt < before)) {
            stop = true;
            break;
          }
          lastId = id;
          taken++;
          if (f.v !== undefined) {
            const list = victims.get(f.v);
            if (list === undefined) victims.set(f.v, [id]);
            else list.push(id);
          }
        }
        if (entries.length < want) break;
        if (lastId !== undefined) from = `(${lastId}`;
      }
      if (lastId === undefined) continue;
      const keys = [stream];
      const args: string[] = [nextStreamId(lastId)];
      for (const [vehicleId, ids] of victims) {
        keys.push(this.historyKey(p, vehicleId));
        args.push(String(ids.length), ...ids);
      }
      const reply = (await this.run(PRUNE_UPLINK, keys, args)) as [number, number];
      total += Number(reply[1]);
    }
    return total;
  }

  // ---- vehicles ----

  private vehicleKeys(vehicleId: string): string[] {
    const p = this.partitionOf(vehicleId);
    return [this.seenKey(p), this.seqKey(p), this.latestKey(p, vehicleId)];
  }

  async markSeen(vehicleId: string, at: number, fence?: number): Promise<VehicleRow> {
    const p = this.partitionOf(vehicleId);
    const [reply] = await Promise.all([
      this.run(
        MARK_SEEN,
        [...this.vehicleKeys(vehicleId), this.fenceKey(p)],
        [vehicleId, String(at), fence === undefined ? '' : String(fence)],
      ),
      this.c.zadd(this.vehiclesKey, 0, vehicleId),
    ]);
    const row = toVehicle(vehicleId, reply);
    if (row === undefined) throw new Error(`markSeen(${vehicleId}) returned no row`);
    return row;
  }

  async getVehicle(vehicleId: string): Promise<VehicleRow | undefined> {
    return toVehicle(
      vehicleId,
      await this.run(GET_VEHICLE, this.vehicleKeys(vehicleId), [vehicleId]),
    );
  }

  async listVehicles(limit: number, cursor: string | null): Promise<VehiclePage> {
    const after = cursor === null ? '' : Buffer.from(cursor, 'base64url').toString('utf8');
    limit = Math.max(1, limit);
    const ids = await this.c.zrangebylex(
      this.vehiclesKey,
      after === '' ? '-' : `(${after}`,
      '+',
      'LIMIT',
      0,
      limit + 1,
    );
    const more = ids.length > limit;
    if (more) ids.pop();
    const rows = await Promise.all(ids.map((id) => this.getVehicle(id)));
    return {
      items: rows.filter((r): r is VehicleRow => r !== undefined),
      next: more ? Buffer.from(ids[ids.length - 1]!).toString('base64url') : null,
    };
  }

  // ---- downlink outbox ----

  async createCommand(cmd: NewCommand): Promise<CommandRow> {
    const c = this.c;
    // 1. id → vehicle index (global). A leftover of a failed earlier attempt for the same vehicle
    //    and id is reused; anything else is a duplicate id.
    if ((await c.hsetnx(this.cmdIndexKey, cmd.id, cmd.vehicleId)) === 0) {
      const owner = await c.hget(this.cmdIndexKey, cmd.id);
      if (owner !== cmd.vehicleId || (await c.exists(this.cmdKey(owner, cmd.id))) === 1) {
        throw new Error(`command ${cmd.id} already exists`);
      }
    }
    // 2. The expiry index before the command: every command that exists is in it (a leftover entry
    //    without command is dropped by expireCommands).
    await c.zadd(this.cmdExpiryKey, cmd.expiresAt, cmd.id);
    // 3. The command with its seq, atomically in the vehicle's slot.
    const seq = await this.run(
      CREATE_COMMAND,
      [
        this.cmdSeqKey(cmd.vehicleId),
        this.cmdKey(cmd.vehicleId, cmd.id),
        this.openKey(cmd.vehicleId),
      ],
      [
        cmd.id,
        cmd.vehicleId,
        cmd.name,
        cmd.params === null ? '0' : '1',
        cmd.params ?? '',
        String(cmd.createdAt),
        String(cmd.expiresAt),
        cmd.traceparent === null ? '0' : '1',
        cmd.traceparent ?? '',
      ],
    );
    return {
      id: cmd.id,
      vehicleId: cmd.vehicleId,
      seq: Number(seq),
      name: cmd.name,
      params: cmd.params,
      createdAt: cmd.createdAt,
      expiresAt: cmd.expiresAt,
      status: 'pending',
      result: null,
      updatedAt: cmd.createdAt,
      traceparent: cmd.traceparent,
    };
  }

  async getCommand(id: string): Promise<CommandRow | undefined> {
    const c = this.c;
    const vehicleId = await c.hget(this.cmdIndexKey, id);
    if (vehicleId === null) return undefined;
    return toCommand(await c.hgetall(this.cmdKey(vehicleId, id)));
  }

  async openCommands(vehicleId: string, now: number): Promise<CommandRow[]> {
    const c = this.c;
    const ids = await c.zrange(this.openKey(vehicleId), 0, -1);
    const rows = await Promise.all(ids.map((id) => c.hgetall(this.cmdKey(vehicleId, id))));
    return rows
      .map(toCommand)
      .filter(
        (r): r is CommandRow => r !== undefined && !isFinalStatus(r.status) && r.expiresAt > now,
      )
      .sort((a, b) => a.seq - b.seq);
  }

  async transitionCommand(
    id: string,
    from: readonly CommandStatus[],
    to: CommandStatus,
    now: number,
    result?: unknown,
  ): Promise<CommandRow | undefined> {
    const c = this.c;
    if (from.length === 0) return undefined;
    const vehicleId = await c.hget(this.cmdIndexKey, id);
    if (vehicleId === null) return undefined;
    const reply = await this.run(
      TRANSITION_COMMAND,
      [this.cmdKey(vehicleId, id), this.openKey(vehicleId)],
      [
        id,
        to,
        String(now),
        result === undefined ? '0' : '1',
        result === undefined ? '' : JSON.stringify(result),
        ...from,
      ],
    );
    if (reply === null) return undefined;
    const row = toCommand(pairs(reply));
    if (row === undefined) return undefined;
    if (isFinalStatus(to)) {
      // Keeps the expiry index small; a leftover is dropped by expireCommands, so a failure here is
      // not the caller's (the transition happened).
      await c.zrem(this.cmdExpiryKey, id).catch(() => undefined);
    } else {
      await c.zadd(this.cmdExpiryKey, row.expiresAt, id);
    }
    return row;
  }

  async expireCommands(now: number, limit: number): Promise<CommandRow[]> {
    const c = this.c;
    const out: CommandRow[] = [];
    let offset = 0; // entries left in place (not due after all, or a creation in progress)
    for (let round = 0; round < 16 && out.length < limit; round++) {
      const want = limit - out.length;
      const flat = await c.zrangebyscore(
        this.cmdExpiryKey,
        '-inf',
        now,
        'WITHSCORES',
        'LIMIT',
        offset,
        want,
      );
      if (flat.length === 0) break;
      const due: { id: string; expiresAt: number }[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        due.push({ id: flat[i]!, expiresAt: Number(flat[i + 1]) });
      }
      const owners = await c.hmget(this.cmdIndexKey, ...due.map((d) => d.id));
      const replies = await Promise.all(
        due.map(({ id }, i) => {
          const vehicleId = owners[i];
          if (vehicleId === null || vehicleId === undefined) return Promise.resolve('missing');
          return this.run(
            EXPIRE_COMMAND,
            [this.cmdKey(vehicleId, id), this.openKey(vehicleId)],
            [id, String(now)],
          );
        }),
      );
      const drop: string[] = [];
      replies.forEach((reply, i) => {
        const { id, expiresAt } = due[i]!;
        if (Array.isArray(reply)) {
          const row = toCommand(pairs(reply));
          if (row !== undefined) out.push(row);
          drop.push(id);
        } else if (reply === 'final') {
          drop.push(id);
        } else if (reply === 'missing' && expiresAt < now - ORPHAN_GRACE_MS) {
          drop.push(id);
        } else {
          offset++;
        }
      });
      if (drop.length > 0) await c.zrem(this.cmdExpiryKey, ...drop);
      if (due.length < want) break;
    }
    return out;
  }

  // ---- devices and meta ----

  async addDevice(device: DeviceRow): Promise<boolean> {
    const reply = await this.run(
      ADD_DEVICE,
      [this.deviceKey(device.id)],
      [device.secretHash, JSON.stringify(device.scopes), String(device.createdAt)],
    );
    return Number(reply) === 1;
  }

  async getDevice(id: string): Promise<DeviceRow | undefined> {
    return toDevice(id, await this.c.hgetall(this.deviceKey(id)));
  }

  async revokeDevice(id: string, at: number): Promise<boolean> {
    return Number(await this.run(REVOKE_DEVICE, [this.deviceKey(id)], [String(at)])) === 1;
  }

  async getMeta(key: string): Promise<string | undefined> {
    return (await this.c.hget(this.metaKey, key)) ?? undefined;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.c.hset(this.metaKey, key, value);
  }
}
