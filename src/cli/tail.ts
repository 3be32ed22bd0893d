// `vmcp tail`: follows the gateway's event stream (GET /api/v1/stream), one JSON line per event.
import { hostname } from 'node:os';
import { UplinkConsumer } from '../cluster/consumer.js';
import { isValidVehicleId } from '../protocol/messages/connect.js';
import {
  ApiError,
  CONNECTION_HELP,
  SseParser,
  UsageError,
  createApiClient,
  parseCommandArgs,
  runCommand,
  type Out,
  type SseEvent,
} from './http.js';

/** Reconnection delay when the server did not send `retry:`. */
const DEFAULT_RETRY_MS = 2_000;

export const TAIL_HELP = `Usage: vmcp tail [--vehicle VIN]... [--count N]
       vmcp tail --group NAME --redis-url URL [--redis-url URL]... [--consumer NAME] [--count N]

Follows the gateway's event stream and prints one JSON line per event:
  {"event":"uplink","data":{...}}    an uplink record (PROTOCOL.md section 8 form)
  {"event":"presence","data":{...}}  a vehicle came online or went offline
  {"event":"command","data":{...}}   a command changed status
Runs until interrupted (Ctrl-C); reconnects when the gateway closes the stream.

  --vehicle VIN   only this vehicle's events (repeat, or separate ids with commas)
  --count N       exit after N events

With --group, reads the uplink bus instead (the Redis store's partition streams) as a member of
consumer group NAME: every record is printed once per group, in seq order per vehicle, and
acknowledged (XACK) after it was printed; a restarted consumer first gets its unacknowledged
entries again. Lines: {"event":"uplink","partition":P,"id":"<entry id>","data":{...}}.
  --group NAME       the consumer group (created on every partition when new, from the start)
  --consumer NAME    this consumer's name in the group (default: host-pid)
  --redis-url URL    the Redis (several: Redis Cluster seeds); or VMCP_REDIS_URL

${CONNECTION_HELP}

Exit codes: 0 interrupted or N events printed, 1 an API error, 2 bad arguments.
`;

export interface TailOptions {
  /** Stops the tail like SIGINT does (for callers running it in-process). */
  signal?: AbortSignal;
  /** Called each time the stream is open (headers received). */
  onOpen?: () => void;
}

function parseVehicles(values: readonly string[]): string[] {
  const ids: string[] = [];
  for (const v of values) {
    for (const id of v.split(',')) {
      const t = id.trim();
      if (!isValidVehicleId(t)) {
        throw new UsageError(
          `--vehicle must match [A-Za-z0-9._:-]{1,64}, got ${JSON.stringify(t)}`,
        );
      }
      ids.push(t);
    }
  }
  return [...new Set(ids)];
}

function parseCount(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`--count must be a positive integer, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

function formatEvent(e: SseEvent): string {
  let data: unknown = e.data;
  try {
    data = JSON.parse(e.data) as unknown;
  } catch {
    // Not JSON: printed as a string.
  }
  return `${JSON.stringify({ event: e.event, data })}\n`;
}

/** Waits ms, or less when the signal aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

export async function tail(
  argv: string[],
  out: Out,
  err: Out,
  opts: TailOptions = {},
): Promise<number> {
  return runCommand('vmcp tail', err, async () => {
    const args = parseCommandArgs(argv, {
      values: ['count', 'group', 'consumer'],
      multiple: ['vehicle', 'redis-url'],
    });
    if (args.help) {
      out(TAIL_HELP);
      return 0;
    }
    if (args.values.group !== undefined) return tailGroup(args, out, opts);
    if (args.positionals.length > 0) {
      throw new UsageError(
        `unexpected argument ${JSON.stringify(args.positionals[0])} (use --vehicle VIN)`,
      );
    }
    const vehicles = parseVehicles(args.lists.vehicle ?? []);
    const count = parseCount(args.values.count);
    const api = createApiClient(args);
    const query = vehicles.map((v) => `vehicle=${encodeURIComponent(v)}`).join('&');
    const path = `/api/v1/stream${query === '' ? '' : `?${query}`}`;

    const stop = new AbortController();
    const onSigint = (): void => stop.abort();
    const onExternal = (): void => stop.abort();
    process.once('SIGINT', onSigint);
    opts.signal?.addEventListener('abort', onExternal, { once: true });
    if (opts.signal?.aborted === true) stop.abort();
    let printed = 0;
    let connectedOnce = false;
    let retryMs = DEFAULT_RETRY_MS;
    try {
      while (!stop.signal.aborted) {
        let body: ReadableStream<Uint8Array>;
        try {
          body = await api.openStream(path, stop.signal);
        } catch (e) {
          if (stop.signal.aborted) break;
          // A network failure after the stream worked once is waited out; anything else ends the tail.
          if (!(e instanceof ApiError) || e.status !== undefined || !connectedOnce) throw e;
          err(`vmcp tail: ${e.message}; retrying in ${retryMs} ms\n`);
          await pause(retryMs, stop.signal);
          continue;
        }
        connectedOnce = true;
        opts.onOpen?.();
        const parser = new SseParser();
        const decoder = new TextDecoder();
        const reader = body.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            for (const event of parser.push(decoder.decode(value, { stream: true }))) {
              out(formatEvent(event));
              printed++;
              if (count !== undefined && printed >= count) {
                stop.abort();
                return 0;
              }
            }
          }
        } catch (e) {
          if (stop.signal.aborted) break;
          err(`vmcp tail: stream broken: ${(e as Error).message}\n`);
        } finally {
          reader.releaseLock();
          void body.cancel().catch(() => undefined);
        }
        if (stop.signal.aborted) break;
        retryMs = parser.retryMs ?? retryMs;
        err(`vmcp tail: the gateway closed the stream; reconnecting in ${retryMs} ms\n`);
        await pause(retryMs, stop.signal);
      }
      return 0;
    } finally {
      process.removeListener('SIGINT', onSigint);
      opts.signal?.removeEventListener('abort', onExternal);
      stop.abort();
    }
  });
}

/** `vmcp tail --group`: the uplink bus through a Redis consumer group. */
async function tailGroup(
  args: ReturnType<typeof parseCommandArgs>,
  out: Out,
  opts: TailOptions,
): Promise<number> {
  const group = args.values.group!;
  if (!/^[\w.:-]{1,64}$/.test(group))
    throw new UsageError(`--group must be 1–64 of [A-Za-z0-9_.:-], got ${JSON.stringify(group)}`);
  const urls = args.lists['redis-url'] ?? [];
  if (urls.length === 0 && process.env.VMCP_REDIS_URL)
    urls.push(...process.env.VMCP_REDIS_URL.split(','));
  if (urls.length === 0) throw new UsageError('--group needs --redis-url (or VMCP_REDIS_URL)');
  if ((args.lists.vehicle ?? []).length > 0) {
    throw new UsageError(
      '--vehicle cannot be combined with --group: a group member consumes every record it reads',
    );
  }
  const count = parseCount(args.values.count);
  const consumer = new UplinkConsumer({
    urls,
    group,
    consumer: args.values.consumer ?? `${hostname()}-${process.pid}`,
  });
  const onSigint = (): void => consumer.stop();
  process.once('SIGINT', onSigint);
  opts.signal?.addEventListener('abort', onSigint, { once: true });
  let printed = 0;
  try {
    await consumer.init();
    opts.onOpen?.();
    await consumer.run(({ partition, id, record }) => {
      out(`${JSON.stringify({ event: 'uplink', partition, id, data: record })}\n`);
      printed++;
      return count === undefined || printed < count;
    });
    return 0;
  } finally {
    process.removeListener('SIGINT', onSigint);
    await consumer.close();
  }
}
