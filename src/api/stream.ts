// GET /api/v1/stream: server-sent events of uplink records, presence changes and command status
// changes. One set of gateway listeners and one heartbeat timer serve every client; both exist only
// while at least one client is connected. A client that does not read is dropped, not buffered for.
import type { ServerResponse } from 'node:http';
import type { CommandRow } from '../store/types.js';
import type { Gateway, PresenceEvent } from '../gateway/gateway.js';
import type { Logger } from '../observability/logger.js';
import type { UplinkRecord } from '../protocol/record.js';
import { commandJson } from './views.js';

export const HEARTBEAT_MS = 15_000;
/** Bytes a client may leave unread before it is disconnected. */
export const MAX_CLIENT_BUFFER = 1 << 20;

interface Client {
  res: ServerResponse;
  /** Vehicle ids to pass, or null for all. */
  vehicles: ReadonlySet<string> | null;
}

export interface StreamHubOptions {
  heartbeatMs?: number;
  maxClientBuffer?: number;
}

export class StreamHub {
  private readonly clients = new Set<Client>();
  private timer: NodeJS.Timeout | undefined;
  private readonly heartbeatMs: number;
  private readonly maxBuffer: number;

  private readonly onUplink = (r: UplinkRecord): void => this.publish('uplink', r.vehicleId, r);
  private readonly onPresence = (p: PresenceEvent): void =>
    this.publish('presence', p.vehicleId, p);
  private readonly onCommand = (c: CommandRow): void =>
    this.publish('command', c.vehicleId, commandJson(c));

  constructor(
    private readonly gw: Gateway,
    private readonly logger: Logger | undefined,
    opts: StreamHubOptions = {},
  ) {
    this.heartbeatMs = opts.heartbeatMs ?? HEARTBEAT_MS;
    this.maxBuffer = opts.maxClientBuffer ?? MAX_CLIENT_BUFFER;
  }

  get size(): number {
    return this.clients.size;
  }

  /** Takes over a response (already hijacked from fastify) and streams events into it until it closes. */
  attach(res: ServerResponse, vehicles: readonly string[] | undefined): void {
    const client: Client = {
      res,
      vehicles: vehicles === undefined || vehicles.length === 0 ? null : new Set(vehicles),
    };
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n: connected\n\n');
    const done = (): void => this.detach(client);
    res.on('close', done);
    res.on('error', done);
    if (this.clients.size === 0) this.start();
    this.clients.add(client);
  }

  /** Ends every stream (server shutdown). */
  closeAll(): void {
    for (const c of [...this.clients]) {
      this.detach(c);
      c.res.end();
    }
  }

  private start(): void {
    this.gw.events.on('uplink', this.onUplink);
    this.gw.events.on('presence', this.onPresence);
    this.gw.events.on('command', this.onCommand);
    this.timer = setInterval(() => this.heartbeat(), this.heartbeatMs);
    this.timer.unref();
  }

  private stop(): void {
    this.gw.events.off('uplink', this.onUplink);
    this.gw.events.off('presence', this.onPresence);
    this.gw.events.off('command', this.onCommand);
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private detach(c: Client): void {
    if (!this.clients.delete(c)) return;
    if (this.clients.size === 0) this.stop();
  }

  private publish(event: string, vehicleId: string, payload: unknown): void {
    let chunk: string | undefined;
    for (const c of this.clients) {
      if (c.vehicles !== null && !c.vehicles.has(vehicleId)) continue;
      chunk ??= `event: ${event}\ndata: ${JSON.stringify(payload)}\n\n`;
      this.write(c, chunk);
    }
  }

  private heartbeat(): void {
    for (const c of this.clients) this.write(c, ': heartbeat\n\n');
  }

  private write(c: Client, chunk: string): void {
    if (c.res.writableLength > this.maxBuffer) {
      this.logger?.warn(
        { buffered: c.res.writableLength },
        'event stream client too slow: dropped',
      );
      this.detach(c);
      c.res.destroy();
      return;
    }
    c.res.write(chunk);
  }
}
