// `vmcp sim`: the fleet simulator — N simulated vehicles against a gateway, live progress, JSON summary.
import { createInterface } from 'node:readline';
import { parseDuration, parseFlags, parseHostPort } from '../config/index.js';
import {
  SIM_DEFAULTS,
  SimFleet,
  parseSources,
  type SimAuth,
  type SimOptions,
} from '../sim/fleet.js';

export const SIM_HELP = `Usage: vmcp sim --target HOST:PORT --vehicles N --rate R --duration 60s [options]

Runs N simulated vehicles (routes around a city, speed, heading, battery or fuel, odometer,
occasional events) against a gateway: TELEMETRY at R samples/s each with the seq/ack/resend rules
of PROTOCOL.md 3.2, commands answered SUCCEEDED, sensor reads answered. Prints live progress on a
terminal and a JSON summary on stdout at the end.

  --target HOST:PORT       gateway vehicle listener (default 127.0.0.1:7000)
  --vehicles N             simulated vehicles (default 100)
  --rate R                 samples per second per vehicle; 0 = idle, keepalive only (default 1)
  --duration D             sending time, e.g. 60s, 2m (default 60s)
  --batch K                send TELEMETRY_BATCH of K samples (version 2) instead of TELEMETRY
  --keepalive S            proposed keepalive in seconds (default 30)
  --jwt-secret S           mint HS256 tokens (default: env VMCP_JWT_SECRET)
  --token-ttl D            lifetime of minted tokens (default 24h)
  --register               register each vehicle through the API and connect with its credential
  --admin-token T          API bearer token (default: env VMCP_ADMIN_TOKEN)
  --http URL               API base URL, e.g. http://127.0.0.1:8080 (registration, --verify)
  --secret-seed S          seed of the registration secrets (default vmcp-sim)
  --verify                 at the end, check sent/acked against the store through the API
  --verify-budget D        time the check may take at most (default 3m); vehicles left over are
                           reported unchecked. Reading a long history from a cold page cache costs
                           about one disk read per record: give long runs more
  --id-prefix P            vehicle ids are P + 6 digits (default SIM-); distinct per sim process
  --first-index N          number of the first vehicle (default 0)
  --sources A-B            local source addresses, e.g. 127.0.0.1-127.0.0.50 (round-robin)
  --ramp N                 new connections per second (default 2000)
  --max-connecting N       connections awaiting CONNACK at most (default 1000)
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
  if (raw === true || !Number.isFinite(n) || n < min || n > max)
    throw new Error(
      `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: expected a number in ${min}–${max}`,
    );
  return n;
}

function duration(flags: Record<string, string | true>, key: string, def: number): number {
  const raw = flags[key];
  if (raw === undefined) return def;
  const ms = raw === true ? undefined : parseDuration(raw);
  if (ms === undefined)
    throw new Error(
      `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: expected a duration like 60s`,
    );
  return ms;
}

function str(flags: Record<string, string | true>, key: string): string | undefined {
  const v = flags[key];
  return typeof v === 'string' ? v : undefined;
}

/** Builds the simulator's options from flags and environment; throws Error with a usage message. */
export function simOptions(argv: string[], env: NodeJS.ProcessEnv): SimOptions {
  const { flags } = parseFlags(argv);
  const target = parseHostPort(str(flags, 'target') ?? '127.0.0.1:7000');
  if (target === undefined) throw new Error('--target: expected HOST:PORT');
  const adminToken = str(flags, 'adminToken') ?? env.VMCP_ADMIN_TOKEN;
  const http = str(flags, 'http')?.replace(/\/+$/, '');
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
    vehicles: num(flags, 'vehicles', SIM_DEFAULTS.vehicles, 1, 1_000_000),
    rate: num(flags, 'rate', SIM_DEFAULTS.rate, 0, 10_000),
    durationMs: duration(flags, 'duration', SIM_DEFAULTS.durationMs),
    batch: num(flags, 'batch', SIM_DEFAULTS.batch, 1, 255),
    keepaliveS: num(flags, 'keepalive', SIM_DEFAULTS.keepaliveS, 1, 65_535),
    idPrefix,
    firstIndex: num(flags, 'firstIndex', SIM_DEFAULTS.firstIndex, 0, 999_999_999),
    sources: sourcesText === undefined ? [] : parseSources(sourcesText),
    rampPerSec: num(flags, 'ramp', SIM_DEFAULTS.rampPerSec, 1, 1_000_000),
    maxConnecting: num(flags, 'maxConnecting', SIM_DEFAULTS.maxConnecting, 1, 1_000_000),
    auth,
    tickMs: duration(flags, 'tick', SIM_DEFAULTS.tickMs),
    window: num(flags, 'window', SIM_DEFAULTS.window, 1, 100_000),
    maxBacklog: num(flags, 'maxBacklog', SIM_DEFAULTS.maxBacklog, 1, 10_000_000),
    drainMs: duration(flags, 'drain', SIM_DEFAULTS.drainMs),
    backoffBaseMs: duration(flags, 'backoffBase', SIM_DEFAULTS.backoffBaseMs),
    backoffCapMs: duration(flags, 'backoffCap', SIM_DEFAULTS.backoffCapMs),
    commandTtlMs: duration(flags, 'commandTtl', SIM_DEFAULTS.commandTtlMs),
    seed: num(flags, 'seed', SIM_DEFAULTS.seed, 0, 2 ** 32 - 1),
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
  const fleet = new SimFleet(opts, {
    note: err,
    status: mode === 'tty' ? (line) => err(`\r\x1b[2K${line}`) : undefined,
    progress: mode === 'json' ? (json) => err(`${json}\n`) : undefined,
  });
  const onSignal = (): void => fleet.requestStop();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let rl: ReturnType<typeof createInterface> | undefined;
  if (str(flags, 'control') === 'stdin') {
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
    const lost = summary.store?.lostAcked ?? 0;
    return lost > 0 ? 1 : 0;
  } finally {
    rl?.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
