// `vmcp sim`: the fleet simulator — N simulated vehicles against a gateway, live progress, JSON summary.
import { createInterface } from 'node:readline';
import { parseDuration, parseFlags, parseHostPort } from '../config/index.js';
import { checkFlags, flagText } from '../sim/args.js';
import {
  DEFAULT_LOOPBACK_SOURCES,
  SIM_DEFAULTS,
  SimFleet,
  defaultSources,
  parseSources,
  simFailures,
  type SimAuth,
  type SimOptions,
} from '../sim/fleet.js';

export const SIM_HELP = `Usage: vmcp sim --target HOST:PORT --vehicles N --rate R --duration 60s [options]

Runs N simulated vehicles (routes around a city, speed, heading, battery or fuel, odometer,
occasional events) against a gateway: TELEMETRY at R samples/s each with the seq/ack/resend rules
of PROTOCOL.md 3.2, commands answered SUCCEEDED, sensor reads answered. Prints live progress on a
terminal and a JSON summary on stdout at the end. Exits 1 (with a line on stderr) when no vehicle
ever connected or --verify found acked records missing from the store; 2 on a bad argument.

  --target HOST:PORT       gateway vehicle listener (default 127.0.0.1:7000)
  --vehicles N             simulated vehicles (default 100)
  --rate R                 samples per second per vehicle; 0 = idle, keepalive only (default 1)
  --duration D             sending time, e.g. 60s, 2m (default 60s)
  --batch K                send TELEMETRY_BATCH of K samples (version 2) instead of TELEMETRY
  --keepalive S            proposed keepalive in seconds (default 30)
  --jwt-secret S           mint HS256 tokens (default: env VMCP_JWT_SECRET)
  --token-ttl D            lifetime of minted tokens (default 24h)
  --register               register each vehicle through the API (POST /api/v1/devices: a slow hash
                           per device on the gateway) BEFORE --duration starts (its time is the
                           summary's registration.elapsedMs), then connect with its credential once
                           and after that with the TOKEN the gateway issued in the CONNACK
  --admin-token T          API bearer token (default: env VMCP_ADMIN_TOKEN)
  --http URL               API base URL, e.g. http://127.0.0.1:8080 (registration, --verify)
  --secret-seed S          seed of the registration secrets (default vmcp-sim)
  --verify                 at the end, check sent/acked against the store through the API
  --verify-budget D        time the check may take at most (default 3m); vehicles left over are
                           reported unchecked. Reading a long history from a cold page cache costs
                           about one disk read per record: give long runs more
  --id-prefix P            vehicle ids are P + 6 digits (default SIM-); distinct per sim process
  --first-index N          number of the first vehicle (default 0)
  --sources A-B            local source addresses, round-robin, e.g. 127.0.0.1-127.0.0.50 or
                           127.0.0.1 (one address). Default: ${DEFAULT_LOOPBACK_SOURCES} when the target is
                           in 127.0.0.0/8 (past the ~28k ephemeral ports of one address), else none
  --ramp N                 new connections per second (default 2000)
  --max-connecting N       connections awaiting CONNACK at most (default 1000); below it the limit
                           adapts: it starts at 64, grows on quick CONNACKs and shrinks on slow ones
                           or connect timeouts (a gateway checking registered secrets is slow)
  --connect-timeout D      a connection without CONNACK after this long is dropped and retried
                           (default 15s)
  --window N               samples in flight per vehicle (default 256)
  --max-backlog N          unacked samples kept per vehicle; beyond it samples are skipped (default 5000)
  --drain D                after the duration, wait this long for outstanding acks (default 5s)
  --backoff-base D         reconnect backoff base (default 1s); --backoff-cap D (default 60s)
  --command-ttl D          the ttlMs the API was given for commands: measures delivery latency
  --tick D                 the shared loop's period (default 20ms)
  --seed N                 motion seed (default 1)
  --progress MODE          tty | json | none (default: tty when stderr is a terminal, else none)
  --control stdin          read JSON lines on stdin: {"rate": R} changes the rate, {"stop": true} ends
`;

type Out = (text: string) => void;

/** Flags taking a value, and switches (camelCase, as parseFlags gives them). */
const VALUED = [
  'target',
  'vehicles',
  'rate',
  'duration',
  'batch',
  'keepalive',
  'jwtSecret',
  'tokenTtl',
  'adminToken',
  'http',
  'secretSeed',
  'verifyBudget',
  'idPrefix',
  'firstIndex',
  'sources',
  'ramp',
  'maxConnecting',
  'connectTimeout',
  'window',
  'maxBacklog',
  'drain',
  'backoffBase',
  'backoffCap',
  'commandTtl',
  'tick',
  'seed',
  'progress',
  'control',
] as const;
const SWITCHES = ['register', 'verify', 'help'] as const;

function num(
  flags: Record<string, string | true>,
  key: string,
  def: number,
  min: number,
  max: number,
): number {
  const raw = flags[key];
  if (raw === undefined) return def;
  const n = Number(raw);
  if (raw === true || raw.trim() === '' || !Number.isFinite(n) || n < min || n > max)
    throw new Error(`${flagText(key)}: expected a number in ${min}–${max}`);
  return n;
}

/** A count: like num, and a whole number. */
function int(
  flags: Record<string, string | true>,
  key: string,
  def: number,
  min: number,
  max: number,
): number {
  const n = num(flags, key, def, min, max);
  if (!Number.isInteger(n))
    throw new Error(`${flagText(key)}: expected a whole number in ${min}–${max}`);
  return n;
}

function duration(
  flags: Record<string, string | true>,
  key: string,
  def: number,
  minMs = 0,
): number {
  const raw = flags[key];
  if (raw === undefined) return def;
  const ms = raw === true ? undefined : parseDuration(raw);
  if (ms === undefined || ms < minMs)
    throw new Error(
      `${flagText(key)}: expected a duration like 60s${minMs > 0 ? ` (at least ${minMs} ms)` : ''}`,
    );
  return ms;
}

function str(flags: Record<string, string | true>, key: string): string | undefined {
  const v = flags[key];
  return typeof v === 'string' ? v : undefined;
}

function sources(text: string): string[] {
  try {
    const list = parseSources(text);
    if (list.length === 0) throw new Error('no address');
    return list;
  } catch (e) {
    throw new Error(`--sources: ${(e as Error).message}`);
  }
}

/** Builds the simulator's options from flags and environment; throws Error with a usage message. */
export function simOptions(argv: string[], env: NodeJS.ProcessEnv): SimOptions {
  const parsed = parseFlags(argv);
  checkFlags(parsed, VALUED, SWITCHES);
  const { flags } = parsed;
  const target = parseHostPort(str(flags, 'target') ?? '127.0.0.1:7000');
  if (target === undefined) throw new Error('--target: expected HOST:PORT');
  const adminToken = str(flags, 'adminToken') ?? env.VMCP_ADMIN_TOKEN;
  const http = str(flags, 'http')?.replace(/\/+$/, '');
  if (http !== undefined && !/^https?:\/\/[^/]/.test(http))
    throw new Error('--http: expected a URL like http://127.0.0.1:8080');
  let auth: SimAuth;
  if (flags.register === true) {
    if (adminToken === undefined || http === undefined)
      throw new Error('--register needs --admin-token (or VMCP_ADMIN_TOKEN) and --http');
    auth = {
      kind: 'register',
      adminToken,
      httpUrl: http,
      secretSeed: str(flags, 'secretSeed') ?? 'vmcp-sim',
    };
  } else {
    const secret = str(flags, 'jwtSecret') ?? env.VMCP_JWT_SECRET;
    if (secret === undefined || secret === '')
      throw new Error('give --jwt-secret (or VMCP_JWT_SECRET), or --register');
    auth = { kind: 'jwt', secret, ttlMs: duration(flags, 'tokenTtl', 24 * 3600_000) };
  }
  let verify: SimOptions['verify'];
  if (flags.verify === true) {
    if (adminToken === undefined || http === undefined)
      throw new Error('--verify needs --admin-token (or VMCP_ADMIN_TOKEN) and --http');
    verify = { httpUrl: http, adminToken, budgetMs: duration(flags, 'verifyBudget', 180_000) };
  }
  const idPrefix = str(flags, 'idPrefix') ?? SIM_DEFAULTS.idPrefix;
  if (!/^[A-Za-z0-9._:-]{0,50}$/.test(idPrefix))
    throw new Error('--id-prefix: up to 50 characters of [A-Za-z0-9._:-]');
  const sourcesText = str(flags, 'sources');
  return {
    host: target.host,
    port: target.port,
    vehicles: int(flags, 'vehicles', SIM_DEFAULTS.vehicles, 1, 1_000_000),
    rate: num(flags, 'rate', SIM_DEFAULTS.rate, 0, 10_000),
    durationMs: duration(flags, 'duration', SIM_DEFAULTS.durationMs),
    batch: int(flags, 'batch', SIM_DEFAULTS.batch, 1, 255),
    keepaliveS: int(flags, 'keepalive', SIM_DEFAULTS.keepaliveS, 1, 65_535),
    idPrefix,
    firstIndex: int(flags, 'firstIndex', SIM_DEFAULTS.firstIndex, 0, 999_999_999),
    sources: sourcesText === undefined ? defaultSources(target.host) : sources(sourcesText),
    rampPerSec: num(flags, 'ramp', SIM_DEFAULTS.rampPerSec, 1, 1_000_000),
    maxConnecting: int(flags, 'maxConnecting', SIM_DEFAULTS.maxConnecting, 1, 1_000_000),
    connectTimeoutMs: duration(flags, 'connectTimeout', SIM_DEFAULTS.connectTimeoutMs, 100),
    auth,
    tickMs: duration(flags, 'tick', SIM_DEFAULTS.tickMs, 1),
    window: int(flags, 'window', SIM_DEFAULTS.window, 1, 100_000),
    maxBacklog: int(flags, 'maxBacklog', SIM_DEFAULTS.maxBacklog, 1, 10_000_000),
    drainMs: duration(flags, 'drain', SIM_DEFAULTS.drainMs),
    backoffBaseMs: duration(flags, 'backoffBase', SIM_DEFAULTS.backoffBaseMs),
    backoffCapMs: duration(flags, 'backoffCap', SIM_DEFAULTS.backoffCapMs),
    commandTtlMs: duration(flags, 'commandTtl', SIM_DEFAULTS.commandTtlMs),
    seed: int(flags, 'seed', SIM_DEFAULTS.seed, 0, 2 ** 32 - 1),
    progressMs: SIM_DEFAULTS.progressMs,
    verify,
  };
}

export async function sim(argv: string[], out: Out, err: Out): Promise<number> {
  const { flags } = parseFlags(argv);
  if (flags.help === true) {
    out(SIM_HELP);
    return 0;
  }
  let opts: SimOptions;
  try {
    opts = simOptions(argv, process.env);
  } catch (e) {
    err(`vmcp sim: ${(e as Error).message}\n`);
    return 2;
  }
  const isTty = process.stderr.isTTY === true;
  const mode = str(flags, 'progress') ?? (isTty ? 'tty' : 'none');
  if (!['tty', 'json', 'none'].includes(mode)) {
    err('vmcp sim: --progress: tty, json or none\n');
    return 2;
  }
  const control = str(flags, 'control');
  if (control !== undefined && control !== 'stdin') {
    err('vmcp sim: --control: only "stdin"\n');
    return 2;
  }
  const fleet = new SimFleet(opts, {
    note: err,
    status: mode === 'tty' ? (line) => err(`\r\x1b[2K${line}`) : undefined,
    progress: mode === 'json' ? (json) => err(`${json}\n`) : undefined,
  });
  const onSignal = (): void => fleet.requestStop();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let rl: ReturnType<typeof createInterface> | undefined;
  if (control === 'stdin') {
    rl = createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      try {
        const msg = JSON.parse(line) as { rate?: unknown; stop?: unknown };
        if (typeof msg.rate === 'number' && msg.rate >= 0) fleet.setRate(msg.rate);
        if (msg.stop === true) fleet.requestStop();
      } catch {
        err(`vmcp sim: ignored control line ${JSON.stringify(line)}\n`);
      }
    });
  }
  try {
    const summary = await fleet.run();
    if (mode === 'tty') err('\n');
    out(`${JSON.stringify(summary)}\n`);
    const failures = simFailures(summary);
    for (const f of failures) err(`vmcp sim: FAILED: ${f}\n`);
    return failures.length > 0 ? 1 : 0;
  } finally {
    rl?.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
