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
  | { t: 'reply'; rid: string; ok: boolean; code?: string; status?: number; value?: string };

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

// Registry keys carry the vehicle as hash tag so each script touches one slot in Redis Cluster.
const CLAIM = `
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
return old`;

const RELEASE = `
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cjson.decode(cur).sessionId ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`;

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
  private readonly pending = new Map<
    string,
    { resolve(r: Extract<NodeMessage, { t: 'reply' }>): void; timer: NodeJS.Timeout }
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
  private nodeKey(nodeId: string): string {
    return `${this.prefix}:node:${nodeId}`;
  }
  private nodeSessionsKey(nodeId: string): string {
    return `${this.prefix}:node-sessions:${nodeId}`;
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
    await this.redis.set(this.nodeKey(this.nodeId), JSON.stringify(info), 'PX', this.nodeTtlMs);
    await this.redis.sadd(this.nodesKey, this.nodeId);
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

  /** Registers `rec` as the vehicle's one live session; returns the session it replaces, if any. */
  async claim(rec: SessionRecord): Promise<SessionRecord | undefined> {
    const old = (await this.redis.eval(
      CLAIM,
      1,
      this.sessionKey(rec.vehicleId),
      JSON.stringify(rec),
    )) as string | null;
    await this.redis.sadd(this.nodeSessionsKey(rec.nodeId), rec.vehicleId);
    await this.redis.zadd(this.onlineKey, 0, rec.vehicleId);
    if (old === null) return undefined;
    const prev = JSON.parse(old) as SessionRecord;
    if (prev.nodeId !== rec.nodeId)
      await this.redis.srem(this.nodeSessionsKey(prev.nodeId), rec.vehicleId);
    return prev;
  }

  /** Removes the registry entry if it still names `sessionId` (a newer claim is left alone). */
  async release(vehicleId: string, sessionId: string, nodeId = this.nodeId): Promise<number> {
    const n = (await this.redis.eval(RELEASE, 1, this.sessionKey(vehicleId), sessionId)) as number;
    if (n === 1) {
      await this.redis.zrem(this.onlineKey, vehicleId);
      await this.redis.srem(this.nodeSessionsKey(nodeId), vehicleId);
    }
    return n;
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

  /** Sends a request and waits for its reply; resolves undefined after `timeoutMs` (a dead or slow node). */
  async request(
    nodeId: string,
    msg: Extract<NodeMessage, { rid: string; from: string }>,
    timeoutMs: number,
  ): Promise<Extract<NodeMessage, { t: 'reply' }> | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(msg.rid);
        resolve(undefined);
      }, timeoutMs);
      this.pending.set(msg.rid, { resolve, timer });
      this.send(nodeId, msg).catch(() => {
        clearTimeout(timer);
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
    if (msg.t === 'reply') {
      const p = this.pending.get(msg.rid);
      if (p !== undefined) {
        this.pending.delete(msg.rid);
        clearTimeout(p.timer);
        p.resolve(msg);
      }
      return;
    }
    void this.handlers
      ?.onMessage(msg)
      .then(async (reply) => {
        if ('rid' in msg && 'from' in msg && reply !== undefined) {
          await this.send(msg.from, { t: 'reply', rid: msg.rid, ...reply });
        }
      })
      .catch((err: unknown) => this.logger.error({ err, msg: msg.t }, 'node message failed'));
  }
}
