// Cluster coordination on Redis: the one-session-per-vehicle registry, node heartbeats, and node-to-node messages.
import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import type { Logger } from '../observability/logger.js';

/** A vehicle's live session as the registry holds it. */
export interface SessionRecord {
  vehicleId: string;
  nodeId: string;
  sessionId: string;
  connectedAt: number;
  remote: string;
  version: number;
  keepalive: number;
  /**
   * The claim's fence: a per-vehicle counter, higher for every later claim. The session writes with
   * it and the store refuses writes below the vehicle's highest (a stalled node that resumes after a
   * takeover cannot store its old session's uplink). Set by the claim.
   */
  epoch?: number;
  /**
   * Sessions this claim replaced whose close its node has not confirmed yet, newest first (set by
   * the claim itself, cleared once they are closed). Whoever replaces or releases this record
   * closes them when that node cannot: a claimant killed before it asked leaves no session open.
   */
  pending?: SessionRef[];
}

/** One session of a vehicle: the node holding it and its id. */
export interface SessionRef {
  nodeId: string;
  sessionId: string;
}

export interface NodeInfo {
  nodeId: string;
  /** host:port vehicles can connect to (sent as REDIRECT when another node drains). */
  vehicleAddress: string;
  httpAddress: string;
  startedAt: number;
  heartbeatAt: number;
}

/** Messages between nodes, on each node's channel. `rid` correlates a request with its reply. */
export type NodeMessage =
  | { t: 'takeover'; vehicleId: string; sessionId: string; from: string; rid: string }
  | { t: 'command'; vehicleId: string; commandId: string }
  | { t: 'cancel'; vehicleId: string; seq: number }
  | { t: 'kick'; vehicleId: string; message: string; from: string; rid: string }
  | {
      t: 'sensor';
      vehicleId: string;
      channel: number;
      timeoutMs: number;
      from: string;
      rid: string;
    }
  | { t: 'reply'; rid: string; ok: boolean; code?: string; status?: number; value?: string }
  /** Sent every PROGRESS_MS while a request is being worked on: the node is alive and busy with it. */
  | { t: 'progress'; rid: string };

/** Events every node re-emits to its own API stream (presence and command changes happen on one node). */
export interface ClusterEvent {
  from: string;
  kind: 'presence' | 'command';
  data: unknown;
}

export interface CoordinatorOptions {
  urls: string[];
  nodeId: string;
  keyPrefix?: string;
  /** How often the node refreshes its heartbeat key. */
  heartbeatMs?: number;
  /** A node whose heartbeat is older than this is dead: its sessions are released. */
  nodeTtlMs?: number;
  logger: Logger;
}

export interface CoordinatorHandlers {
  onMessage(
    msg: NodeMessage,
  ): Promise<Omit<Extract<NodeMessage, { t: 'reply' }>, 't' | 'rid'> | void>;
  onEvent(event: ClusterEvent): void;
  /**
   * The registry forgot this node's sessions: other nodes declared it dead (it was frozen or cut off
   * longer than the node TTL) or Redis lost its data. The node registers them again with `reclaim`.
   */
  onForgotten?(): Promise<void>;
}

type Client = Redis | Cluster;

function connect(urls: string[]): Client {
  // commandTimeout: a Redis that accepts connections but does not answer fails calls instead of hanging.
  const common = {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    lazyConnect: false,
    commandTimeout: 5_000,
  };
  if (urls.length === 1)
    return new Redis(urls[0]!, {
      ...common,
      retryStrategy: (n: number) => Math.min(n * 100, 1_000),
    });
  const nodes = urls.map((u) => {
    const url = new URL(u);
    return { host: url.hostname, port: Number(url.port || 6379) };
  });
  return new Cluster(nodes, {
    redisOptions: common,
    clusterRetryStrategy: (n: number) => Math.min(n * 100, 1_000),
  });
}

/** How long a takeover waits for the node holding the old session to answer. */
export const TAKEOVER_TIMEOUT_MS = 3_000;
/** How long it waits in all while that node reports progress (its CONNECT waits for its own takeovers). */
const TAKEOVER_MAX_WAIT_MS = 10_000;
/** How long the mark "your sessions were released" waits for a reaped node to come back. */
const REAPED_MARK_MS = 3_600_000;
/** How often a node answering a request says it is still working on it. */
const PROGRESS_MS = 1_000;
/** A claim remembers at most this many unconfirmed sessions before it (newest first). */
const MAX_PENDING = 8;

// Registry keys carry the vehicle as hash tag so each script touches one slot in Redis Cluster.
// CLAIM stores ARGV[1] (a JSON object without `epoch` and `pending`) with the next epoch of the
// vehicle (counter KEYS[2]) and, as its `pending`, the replaced session and that one's own
// unconfirmed sessions. Returns {epoch, replaced record or ''}.
const CLAIM = `
local old = redis.call('GET', KEYS[1])
local epoch = redis.call('INCR', KEYS[2])
local rec = string.sub(ARGV[1], 1, -2) .. ',"epoch":' .. epoch
if old then
  local o = cjson.decode(old)
  local refs = { cjson.encode({ nodeId = o.nodeId, sessionId = o.sessionId }) }
  if type(o.pending) == 'table' then
    for _, p in ipairs(o.pending) do
      if #refs >= tonumber(ARGV[2]) then break end
      table.insert(refs, cjson.encode({ nodeId = p.nodeId, sessionId = p.sessionId }))
    end
  end
  rec = rec .. ',"pending":[' .. table.concat(refs, ',') .. ']'
end
redis.call('SET', KEYS[1], rec .. '}')
return {tostring(epoch), old or ''}`;

// Replaces the record with ARGV[2] if it still names session ARGV[1].
const REPLACE = `
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cjson.decode(cur).sessionId ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1`;

// Stores ARGV[2] unless another session holds the vehicle; 1 when session ARGV[1] holds it now.
const RECLAIM = `
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
if cjson.decode(cur).sessionId == ARGV[1] then return 1 end
return 0`;

// Deletes the record if it still names session ARGV[1]; returns the deleted record.
const RELEASE = `
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
if cjson.decode(cur).sessionId ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return cur`;

/**
 * The Redis side of a multi-node deployment. Each vehicle's live session is one key; a CONNECT on
 * any node claims it atomically (SET returning the previous owner), and the new owner asks the old
 * node to close the session with TAKEN_OVER before its CONNACK. Nodes heartbeat into Redis; the
 * sessions of a node that stops heartbeating are released by the others.
 */
export class RedisCoordinator {
  readonly nodeId: string;
  private readonly prefix: string;
  private readonly heartbeatMs: number;
  private readonly nodeTtlMs: number;
  private readonly logger: Logger;
  private readonly urls: string[];
  private cmd: Client | undefined;
  private sub: Client | undefined;
  private handlers: CoordinatorHandlers | undefined;
  private info: NodeInfo | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** The first heartbeat is done: a node key missing after it means this node was declared dead. */
  private heartbeating = false;
  private restoring = false;
  private readonly pending = new Map<
    string,
    {
      resolve(r: Extract<NodeMessage, { t: 'reply' }>): void;
      timer: NodeJS.Timeout;
      /** A progress message from the node: restart the timer (within the request's wait cap). */
      progress?: () => void;
    }
  >();

  constructor(opts: CoordinatorOptions) {
    this.nodeId = opts.nodeId;
    this.urls = opts.urls;
    this.prefix = opts.keyPrefix ?? 'vmcp';
    this.heartbeatMs = opts.heartbeatMs ?? 2_000;
    this.nodeTtlMs = opts.nodeTtlMs ?? 10_000;
    this.logger = opts.logger;
  }

  private sessionKey(vehicleId: string): string {
    return `${this.prefix}:session:{v:${vehicleId}}`;
  }
  private epochKey(vehicleId: string): string {
    return `${this.prefix}:epoch:{v:${vehicleId}}`;
  }
  private nodeKey(nodeId: string): string {
    return `${this.prefix}:node:${nodeId}`;
  }
  private nodeSessionsKey(nodeId: string): string {
    return `${this.prefix}:node-sessions:${nodeId}`;
  }
  /** Set by a node that released `nodeId`'s sessions, read (and deleted) by that node if it lives. */
  private reapedKey(nodeId: string): string {
    return `${this.prefix}:reaped:${nodeId}`;
  }
  private get nodesKey(): string {
    return `${this.prefix}:nodes`;
  }
  private get onlineKey(): string {
    return `${this.prefix}:online`;
  }
  private channel(nodeId: string): string {
    return `${this.prefix}:ch:node:${nodeId}`;
  }
  private get eventsChannel(): string {
    return `${this.prefix}:ch:events`;
  }

  private get redis(): Client {
    if (this.cmd === undefined) throw new Error('coordinator not started');
    return this.cmd;
  }

  async start(info: Omit<NodeInfo, 'heartbeatAt'>, handlers: CoordinatorHandlers): Promise<void> {
    this.handlers = handlers;
    this.info = { ...info, heartbeatAt: Date.now() };
    this.cmd = connect(this.urls);
    this.sub = connect(this.urls);
    this.cmd.on('error', (err: Error) =>
      this.logger.debug({ err: err.message }, 'redis (coordinator) error'),
    );
    this.sub.on('error', (err: Error) =>
      this.logger.debug({ err: err.message }, 'redis (subscriber) error'),
    );
    this.sub.on('message', (channel: string, text: string) => this.receive(channel, text));
    await this.sub.subscribe(this.channel(this.nodeId), this.eventsChannel);
    // Sessions registered under this node id belong to an earlier life of it (kill -9 and a restart
    // within the node TTL, so it was never reaped): this process holds none yet. Left alone, those
    // vehicles would show online forever.
    const stale = await this.releaseSessionsOf(this.nodeId);
    if (stale > 0)
      this.logger.warn(
        { released: stale },
        'sessions of this node id before its restart were released',
      );
    await this.heartbeat();
    this.heartbeatTimer = setInterval(() => {
      void this.heartbeat().catch((err: unknown) =>
        this.logger.warn({ err: String(err) }, 'heartbeat failed'),
      );
      void this.reapDeadNodes().catch((err: unknown) =>
        this.logger.debug({ err: String(err) }, 'reaping dead nodes failed'),
      );
    }, this.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeatTimer);
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    try {
      await this.redis.del(this.nodeKey(this.nodeId));
      await this.redis.srem(this.nodesKey, this.nodeId);
    } catch {
      // Redis unreachable at shutdown: the heartbeat key expires by itself.
    }
    this.sub?.disconnect();
    this.cmd?.disconnect();
  }

  private async heartbeat(): Promise<void> {
    const info = { ...this.info!, heartbeatAt: Date.now() };
    const before = (await this.redis.call(
      'SET',
      this.nodeKey(this.nodeId),
      JSON.stringify(info),
      'PX',
      this.nodeTtlMs,
      'GET',
    )) as string | null;
    await this.redis.sadd(this.nodesKey, this.nodeId);
    const reaped = await this.redis.getdel(this.reapedKey(this.nodeId));
    // Our key expired (frozen, cut off, or Redis lost it) or a reaper released our sessions (also
    // when it raced with our return): the registry no longer names them.
    if (this.heartbeating && (before === null || reaped !== null)) void this.restore();
    this.heartbeating = true;
  }

  private async restore(): Promise<void> {
    if (this.restoring || this.handlers?.onForgotten === undefined) return;
    this.restoring = true;
    try {
      this.logger.warn(
        {},
        'this node was declared dead or the registry lost its data: registering its sessions again',
      );
      await this.handlers.onForgotten();
    } catch (err) {
      this.logger.warn({ err: String(err) }, 'registering sessions again failed');
    } finally {
      this.restoring = false;
    }
  }

  /**
   * Registers this node's live session `rec` again after the registry forgot it; false when another
   * session holds the vehicle now (a CONNECT elsewhere while this node was unreachable).
   */
  async reclaim(rec: SessionRecord): Promise<boolean> {
    await this.redis.sadd(this.nodeSessionsKey(rec.nodeId), rec.vehicleId);
    const held = (await this.redis.eval(
      RECLAIM,
      1,
      this.sessionKey(rec.vehicleId),
      rec.sessionId,
      JSON.stringify({ ...rec, pending: undefined }),
    )) as number;
    if (held !== 1) return false;
    await this.redis.zadd(this.onlineKey, 0, rec.vehicleId);
    return true;
  }

  async isAlive(nodeId: string): Promise<boolean> {
    return (await this.redis.exists(this.nodeKey(nodeId))) === 1;
  }

  /**
   * Watches `nodeId` (every heartbeat interval): `gone` resolves once its heartbeat key has expired
   * (kill -9: it can no longer say anything itself). A Redis error is no verdict. `stop()` ends it.
   */
  watchNode(nodeId: string): { gone: Promise<void>; stop: () => void } {
    let timer: NodeJS.Timeout | undefined;
    const gone = new Promise<void>((resolve) => {
      timer = setInterval(() => {
        this.isAlive(nodeId).then(
          (alive) => alive || resolve(),
          () => undefined,
        );
      }, this.heartbeatMs);
      timer.unref();
    });
    return { gone, stop: () => clearInterval(timer) };
  }

  async liveNodes(): Promise<NodeInfo[]> {
    const ids = await this.redis.smembers(this.nodesKey);
    const out: NodeInfo[] = [];
    for (const id of ids) {
      const v = await this.redis.get(this.nodeKey(id));
      if (v !== null) out.push(JSON.parse(v) as NodeInfo);
    }
    return out;
  }

  /** Releases the sessions of nodes whose heartbeat expired (kill -9, network loss). */
  async reapDeadNodes(): Promise<number> {
    const ids = await this.redis.smembers(this.nodesKey);
    let released = 0;
    for (const id of ids) {
      if (id === this.nodeId || (await this.isAlive(id))) continue;
      const n = await this.releaseSessionsOf(id);
      released += n;
      await this.redis.srem(this.nodesKey, id);
      // If the node was only frozen, it registers what it still holds when it is back.
      await this.redis.set(this.reapedKey(id), String(Date.now()), 'PX', REAPED_MARK_MS);
      this.logger.warn(
        { nodeId: id, released: n },
        'node stopped heartbeating: its sessions were released',
      );
    }
    return released;
  }

  /** Releases every session the registry names on node `id`; returns how many. */
  private async releaseSessionsOf(id: string): Promise<number> {
    let released = 0;
    const vehicles = await this.redis.smembers(this.nodeSessionsKey(id));
    for (const vehicleId of vehicles) {
      const cur = await this.lookup(vehicleId);
      if (cur !== undefined && cur.nodeId === id) {
        released += await this.release(vehicleId, cur.sessionId, id);
      }
    }
    await this.redis.del(this.nodeSessionsKey(id));
    return released;
  }

  /**
   * Registers `rec` as the vehicle's one live session; returns the claim's epoch (the session's
   * fence) and the session it replaces, if any.
   */
  async claim(rec: SessionRecord): Promise<{ epoch: number; prev: SessionRecord | undefined }> {
    // Listed under its node first: if this node dies right after the claim, the reaper finds it
    // there (a listed vehicle the registry does not name for the node is skipped).
    await this.redis.sadd(this.nodeSessionsKey(rec.nodeId), rec.vehicleId);
    const [epoch, old] = (await this.redis.eval(
      CLAIM,
      2,
      this.sessionKey(rec.vehicleId),
      this.epochKey(rec.vehicleId),
      JSON.stringify({ ...rec, epoch: undefined, pending: undefined }),
      MAX_PENDING,
    )) as [string, string];
    await this.redis.zadd(this.onlineKey, 0, rec.vehicleId);
    if (old === '') return { epoch: Number(epoch), prev: undefined };
    const prev = JSON.parse(old) as SessionRecord;
    if (prev.nodeId !== rec.nodeId)
      await this.redis.srem(this.nodeSessionsKey(prev.nodeId), rec.vehicleId);
    return { epoch: Number(epoch), prev };
  }

  /**
   * Closes the sessions a claim replaced (`prev` and its unconfirmed ones), then records that the
   * claim `rec` has none left. Resolves once one node confirms: a node closes a session only after
   * that session's own takeovers, so the rest of the chain is closed too. A node that is dead, or
   * does not answer within TAKEOVER_TIMEOUT_MS (extended while it reports progress, up to
   * TAKEOVER_MAX_WAIT_MS), is passed over for the session before it.
   */
  async takeOver(rec: SessionRecord, prev: SessionRecord): Promise<void> {
    await this.closeSessions(rec.vehicleId, [prev, ...(prev.pending ?? [])]);
    await this.redis
      .eval(
        REPLACE,
        1,
        this.sessionKey(rec.vehicleId),
        rec.sessionId,
        JSON.stringify({ ...rec, pending: undefined }),
      )
      .catch((err: unknown) =>
        // Left in place, the next claim or release asks once more (closing is idempotent).
        this.logger.debug({ err: String(err) }, 'clearing pending takeovers failed'),
      );
  }

  private async closeSessions(vehicleId: string, refs: readonly SessionRef[]): Promise<void> {
    for (const ref of refs) {
      const msg = {
        t: 'takeover' as const,
        vehicleId,
        sessionId: ref.sessionId,
        from: this.nodeId,
        rid: this.newRequestId(),
      };
      let reply: { ok: boolean } | void | undefined;
      if (ref.nodeId === this.nodeId) reply = await this.handlers?.onMessage(msg);
      else if (await this.isAlive(ref.nodeId)) {
        // A node that dies while we wait (kill -9) is noticed at its heartbeat TTL.
        const watch = this.watchNode(ref.nodeId);
        reply = await Promise.race([
          this.request(ref.nodeId, msg, TAKEOVER_TIMEOUT_MS, TAKEOVER_MAX_WAIT_MS),
          watch.gone.then(() => undefined),
        ]).finally(watch.stop);
      }
      if (reply?.ok === true) return;
    }
  }

  /**
   * Removes the registry entry if it still names `sessionId` (a newer claim is left alone). Sessions
   * that record replaced and never confirmed closed are closed now, in the background.
   */
  async release(vehicleId: string, sessionId: string, nodeId = this.nodeId): Promise<number> {
    const cur = (await this.redis.eval(RELEASE, 1, this.sessionKey(vehicleId), sessionId)) as
      string | null;
    if (cur === null) return 0;
    await this.redis.zrem(this.onlineKey, vehicleId);
    await this.redis.srem(this.nodeSessionsKey(nodeId), vehicleId);
    const refs = (JSON.parse(cur) as SessionRecord).pending ?? [];
    if (refs.length > 0)
      void this.closeSessions(vehicleId, refs).catch((err: unknown) =>
        this.logger.warn({ err: String(err), vehicleId }, 'closing replaced sessions failed'),
      );
    return 1;
  }

  async lookup(vehicleId: string): Promise<SessionRecord | undefined> {
    const v = await this.redis.get(this.sessionKey(vehicleId));
    return v === null ? undefined : (JSON.parse(v) as SessionRecord);
  }

  /** Online vehicles (cluster-wide) in id order, paged by an opaque cursor. */
  async listOnline(
    limit: number,
    cursor: string | null,
  ): Promise<{ ids: string[]; next: string | null }> {
    const after = cursor === null ? '-' : `(${Buffer.from(cursor, 'base64url').toString('utf8')}`;
    const ids = await this.redis.zrangebylex(this.onlineKey, after, '+', 'LIMIT', 0, limit + 1);
    const more = ids.length > limit;
    if (more) ids.pop();
    return { ids, next: more ? Buffer.from(ids[ids.length - 1]!).toString('base64url') : null };
  }

  async send(nodeId: string, msg: NodeMessage): Promise<void> {
    await this.redis.publish(this.channel(nodeId), JSON.stringify(msg));
  }

  /**
   * Sends a request and waits for its reply; resolves undefined after `timeoutMs` without an answer
   * (a dead or slow node). With `maxWaitMs`, each progress message from the node restarts the wait,
   * up to `maxWaitMs` in all.
   */
  async request(
    nodeId: string,
    msg: Extract<NodeMessage, { rid: string; from: string }>,
    timeoutMs: number,
    maxWaitMs = timeoutMs,
  ): Promise<Extract<NodeMessage, { t: 'reply' }> | undefined> {
    return new Promise((resolve) => {
      const cap = Date.now() + maxWaitMs;
      const expire = (): void => {
        this.pending.delete(msg.rid);
        resolve(undefined);
      };
      const entry = {
        resolve,
        timer: setTimeout(expire, timeoutMs),
        progress: (): void => {
          clearTimeout(entry.timer);
          entry.timer = setTimeout(expire, Math.max(0, Math.min(timeoutMs, cap - Date.now())));
        },
      };
      this.pending.set(msg.rid, entry);
      this.send(nodeId, msg).catch(() => {
        clearTimeout(entry.timer);
        this.pending.delete(msg.rid);
        resolve(undefined);
      });
    });
  }

  newRequestId(): string {
    return randomUUID();
  }

  async broadcast(kind: ClusterEvent['kind'], data: unknown): Promise<void> {
    const event: ClusterEvent = { from: this.nodeId, kind, data };
    await this.redis.publish(this.eventsChannel, JSON.stringify(event));
  }

  private receive(channel: string, text: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return;
    }
    if (channel === this.eventsChannel) {
      const event = parsed as ClusterEvent;
      if (event.from !== this.nodeId) this.handlers?.onEvent(event);
      return;
    }
    const msg = parsed as NodeMessage;
    if (msg.t === 'progress') {
      this.pending.get(msg.rid)?.progress?.();
      return;
    }
    if (msg.t === 'reply') {
      const p = this.pending.get(msg.rid);
      if (p !== undefined) {
        this.pending.delete(msg.rid);
        clearTimeout(p.timer);
        p.resolve(msg);
      }
      return;
    }
    // A request being worked on (a takeover waiting for a CONNECT's own takeovers) says so, so the
    // requester waits for it instead of passing it over as dead.
    let ticker: NodeJS.Timeout | undefined;
    if ('rid' in msg && 'from' in msg) {
      const { rid, from } = msg;
      ticker = setInterval(
        () => void this.send(from, { t: 'progress', rid }).catch(() => undefined),
        PROGRESS_MS,
      );
      ticker.unref();
    }
    void this.handlers
      ?.onMessage(msg)
      .then(async (reply) => {
        clearInterval(ticker);
        if ('rid' in msg && 'from' in msg && reply !== undefined) {
          await this.send(msg.from, { t: 'reply', rid: msg.rid, ...reply });
        }
      })
      .catch((err: unknown) => this.logger.error({ err, msg: msg.t }, 'node message failed'))
      .finally(() => clearInterval(ticker));
  }
}
