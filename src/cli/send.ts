// `vmcp send VIN NAME`: queues a command for a vehicle and, with --wait, follows it to its final status.
import { parseDuration } from '../config/index.js';
import { isValidVehicleId } from '../protocol/messages/connect.js';
import { COMMAND_STATUSES, isFinalStatus } from '../store/types.js';
import {
  ApiError,
  CONNECTION_HELP,
  UsageError,
  createApiClient,
  RawJson,
  encodeId,
  parseCommandArgs,
  runCommand,
  type Out,
} from './http.js';

/** PROTOCOL.md 9: ttlMs is an integer 1–604,800,000 (7 days). */
const TTL_MAX_MS = 604_800_000;
const DEFAULT_TIMEOUT_MS = 30_000;
export const POLL_INTERVAL_MS = 200;
/** Statuses after which a command never changes again. */
export const FINAL_STATUSES: ReadonlySet<string> = new Set(COMMAND_STATUSES.filter(isFinalStatus));

/** Exit code when --wait ran out of time before the command reached a final status. */
export const EXIT_TIMEOUT = 3;

export const SEND_HELP = `Usage: vmcp send VIN NAME [--params JSON] [--ttl 1h] [--wait [--timeout 30s]]

Queues the command NAME for the vehicle VIN (POST /api/v1/vehicles/{VIN}/commands); a vehicle
not connected yet gets it when it connects. Prints {"id","seq","status"}.

  --params JSON    any JSON value sent to the vehicle as PARAMS (e.g. '{"all":true}')
  --ttl DURATION   the command expires this long after it is accepted (ms/s/m/h/d; max 7d;
                   default: the gateway's, 24h)
  --wait           poll the command every ${POLL_INTERVAL_MS} ms until its status is final
                   (${[...FINAL_STATUSES].join(', ')}),
                   then print the command
  --timeout DURATION  how long --wait waits (default 30s)

${CONNECTION_HELP}

Exit codes: 0 queued (with --wait: succeeded), 1 another final status or an API error,
2 bad arguments, ${EXIT_TIMEOUT} --wait timed out (the command is printed as last seen).
`;

interface Accepted {
  id: string;
  seq?: unknown;
  status?: unknown;
}

function isAccepted(body: unknown): body is Accepted {
  return (
    typeof body === 'object' && body !== null && typeof (body as { id?: unknown }).id === 'string'
  );
}

function statusOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const s = (body as { status?: unknown }).status;
  return typeof s === 'string' ? s : undefined;
}

function duration(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    throw new UsageError(
      `--${flag} must be a positive duration like 500ms, 30s, 1h or 7d, got ${JSON.stringify(text)}`,
    );
  }
  return ms;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function send(argv: string[], out: Out, err: Out): Promise<number> {
  return runCommand('vmcp send', err, async () => {
    const args = parseCommandArgs(argv, {
      values: ['params', 'ttl', 'timeout'],
      booleans: ['wait'],
    });
    if (args.help) {
      out(SEND_HELP);
      return 0;
    }
    const [vin, name, ...extra] = args.positionals;
    if (vin === undefined || name === undefined) throw new UsageError('expected VIN and NAME');
    if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
    if (!isValidVehicleId(vin))
      throw new UsageError(`VIN must match [A-Za-z0-9._:-]{1,64}, got ${JSON.stringify(vin)}`);
    if (name === '') throw new UsageError('NAME must not be empty');
    const params = args.values.params;
    if (params !== undefined) {
      try {
        JSON.parse(params);
      } catch (e) {
        throw new UsageError(`--params is not valid JSON: ${(e as Error).message}`);
      }
    }
    const ttlMs = duration('ttl', args.values.ttl);
    if (ttlMs !== undefined && ttlMs > TTL_MAX_MS)
      throw new UsageError(`--ttl must be at most 7d (${TTL_MAX_MS} ms)`);
    const timeoutMs = duration('timeout', args.values.timeout) ?? DEFAULT_TIMEOUT_MS;
    const wait = args.booleans.wait === true;
    if (args.values.timeout !== undefined && !wait)
      throw new UsageError('--timeout only applies with --wait');

    const api = createApiClient(args);
    // --params goes in as written: the gateway sends the vehicle the JSON text it was given.
    const members = [`"name":${JSON.stringify(name)}`];
    if (params !== undefined) members.push(`"params":${params}`);
    if (ttlMs !== undefined) members.push(`"ttlMs":${ttlMs}`);
    const body = new RawJson(`{${members.join(',')}}`);
    const accepted = await api.request('POST', `/api/v1/vehicles/${encodeId(vin)}/commands`, body);
    if (!wait) {
      out(`${JSON.stringify(accepted)}\n`);
      return 0;
    }
    if (!isAccepted(accepted))
      throw new ApiError(`unexpected answer ${JSON.stringify(accepted)}`, 202, accepted);
    err(
      `vmcp send: queued command ${accepted.id} (seq ${String(accepted.seq)}), waiting up to ${timeoutMs} ms…\n`,
    );

    const path = `/api/v1/commands/${encodeId(accepted.id)}`;
    const deadline = Date.now() + timeoutMs;
    let last: unknown = accepted;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const signal = AbortSignal.timeout(left);
      try {
        last = await api.request('GET', path, undefined, signal);
      } catch (e) {
        if (signal.aborted) break;
        throw e;
      }
      const status = statusOf(last);
      if (status !== undefined && FINAL_STATUSES.has(status)) {
        out(`${JSON.stringify(last)}\n`);
        return status === 'succeeded' ? 0 : 1;
      }
      const pause = Math.min(POLL_INTERVAL_MS, deadline - Date.now());
      if (pause <= 0) break;
      await sleep(pause);
    }
    out(`${JSON.stringify(last)}\n`);
    err(
      `vmcp send: timed out after ${timeoutMs} ms; command ${accepted.id} is still ${statusOf(last) ?? 'not final'}\n`,
    );
    return EXIT_TIMEOUT;
  });
}
