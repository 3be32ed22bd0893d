// Reading the uplink bus: a consumer group over every partition stream of the Redis store (issue 5).
import { Cluster, Redis } from 'ioredis';
import type { UplinkRecord } from '../protocol/record.js';

export interface UplinkConsumerOptions {
  urls: string[];
  group: string;
  consumer: string;
  keyPrefix?: string;
  /** Entries per partition per read. */
  batch?: number;
  /** Pause when a full pass over the partitions found nothing. */
  idleMs?: number;
}

export interface ConsumedRecord {
  partition: number;
  /** The stream entry id (for XACK / XCLAIM by hand). */
  id: string;
  record: UplinkRecord;
}

type Client = Redis | Cluster;

function connect(urls: string[]): Client {
  if (urls.length === 1) return new Redis(urls[0]!, { maxRetriesPerRequest: 2 });
  return new Cluster(
    urls.map((u) => {
      const url = new URL(u);
      return { host: url.hostname, port: Number(url.port || 6379) };
    }),
    { redisOptions: { maxRetriesPerRequest: 2 } },
  );
}

/**
 * Consumes every partition stream (`<prefix>:{pN}:uplink`) with one consumer group. Each partition is
 * read on its own (its key has its own hash tag, so one XREADGROUP cannot span two in a cluster).
 * Within a partition a vehicle's records arrive in seq order; an entry is acknowledged (XACK) only
 * after the handler returned, so a consumer that dies gets its pending entries again on restart.
 */
export class UplinkConsumer {
  private readonly redis: Client;
  private readonly prefix: string;
  private partitions = 0;
  private stopped = false;

  constructor(private readonly opts: UplinkConsumerOptions) {
    this.redis = connect(opts.urls);
    this.prefix = opts.keyPrefix ?? 'vmcp';
  }

  private streamKey(p: number): string {
    return `${this.prefix}:{p${p}}:uplink`;
  }

  /** Creates the group on every partition (from the start of the stream when new). */
  async init(): Promise<number> {
    const stored = await this.redis.hget(`${this.prefix}:config`, 'partitions');
    if (stored === null)
      throw new Error(`no VMCP data under prefix '${this.prefix}' (no ${this.prefix}:config)`);
    this.partitions = Number(stored);
    for (let p = 0; p < this.partitions; p++) {
      try {
        await this.redis.xgroup('CREATE', this.streamKey(p), this.opts.group, '0', 'MKSTREAM');
      } catch (err) {
        if (!String(err).includes('BUSYGROUP')) throw err;
      }
    }
    return this.partitions;
  }

  /** Reads until stop() (or the handler returns false); first this consumer's own pending entries, then new ones. */
  async run(
    handler: (r: ConsumedRecord) => boolean | void | Promise<boolean | void>,
  ): Promise<void> {
    if (this.partitions === 0) await this.init();
    const batch = this.opts.batch ?? 100;
    const idleMs = this.opts.idleMs ?? 200;
    const cursor: string[] = Array.from({ length: this.partitions }, () => '0');
    while (!this.stopped) {
      let got = 0;
      for (let p = 0; p < this.partitions && !this.stopped; p++) {
        const key = this.streamKey(p);
        const res = (await this.redis.xreadgroup(
          'GROUP',
          this.opts.group,
          this.opts.consumer,
          'COUNT',
          batch,
          'STREAMS',
          key,
          cursor[p]!,
        )) as [string, [string, string[]][]][] | null;
        const entries = res?.[0]?.[1] ?? [];
        // Reading '0' returns our pending entries; once there are none, switch to new ones ('>').
        if (cursor[p] === '0' && entries.length === 0) cursor[p] = '>';
        for (const [id, fields] of entries) {
          const i = fields.indexOf('r');
          if (i < 0 || i + 1 >= fields.length) {
            await this.redis.xack(key, this.opts.group, id);
            continue;
          }
          const record = JSON.parse(fields[i + 1]!) as UplinkRecord;
          const more = await handler({ partition: p, id, record });
          await this.redis.xack(key, this.opts.group, id);
          got++;
          if (more === false) {
            this.stopped = true;
            break;
          }
        }
      }
      if (got === 0 && !this.stopped) await new Promise((r) => setTimeout(r, idleMs));
    }
  }

  stop(): void {
    this.stopped = true;
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.redis.disconnect();
  }
}
