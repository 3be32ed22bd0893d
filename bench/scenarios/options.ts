// The bench's command line: its help, and the options every scenario gets, checked before anything
// starts (an unknown flag or a bad value is a usage error naming the flag: the bench exits 2).
import { parseDuration, parseFlags, parseHostPort } from '../../src/config/index.js';
import { checkFlags, flagText } from '../../src/sim/args.js';
import { ADMIN_TOKEN, JWT_SECRET } from './common.js';
import type { BenchOptions } from './context.js';

export const SCENARIO_NAMES = [
  'connections',
  'uplink',
  'saturation',
  'overload',
  'storm',
  'downlink',
  'compare',
  'soak',
] as const;

export const HELP = `Usage: vmcp bench <scenario> [options]      (node --import tsx bench/fleet.ts …)

Scenarios (each bounded to about 2–3 minutes, but soak: its --duration plus a few minutes):
  connections   ramp N idle vehicles (keepalive 30 s), hold; connect rate, RSS per connection, CPU
  uplink        N vehicles × R msgs/s; send → ack latency, acked/s, CPU µs per ack, loss vs the store
  saturation    raise the per-vehicle rate in steps until p99 > 100 ms or throughput stops rising
  overload      the per-vehicle limit at --sustainable/N, vehicles offering twice that
  storm         SIGKILL + restart the gateway under N vehicles; time until all are back and resent
  downlink      commands posted through the API at rising rates; acked/s and latency
  compare       uplink pairs, the gateway then a peer (--versus, default mqtt://127.0.0.1:1883),
                --pairs K times (default 3): CPU per acked message of each and their ratio per pair
  soak          a long run (--duration, default 30m) of uplink and commands (--command-rate, default
                10/s), with a crash (SIGKILL, restart) every --kill-every D if given: each
                gateway in turn (--gateways G), then Redis (--store redis); fails
                (exit 1) on an acked message lost, a record out of order, an accepted command
                without its result, or the heap growing over 20 MB/h

Exit status: 0 done; 1 the run failed (no vehicle connected, acked messages missing from the store,
soak thresholds; said in the result's notes and the HTML headline) or an error; 2 a bad argument;
130 / 143 interrupted by SIGINT / SIGTERM. On every exit the gateways, simulators, Redis and brokers
the bench started are stopped and its temp dirs removed.

Options:
  --target T            host:port (a running gateway; give --http and --target-pid), mqtt://host:port
                        (a broker; Mosquitto's pid is found with pgrep), or "aedes" (started here),
                        or "node-floor" / "node-floor-onread" / "c-floor" (bench/node-floor.ts,
                        bench/c-floor.c: the least per message in Node and in C, for comparison).
                        Default: start the gateway (node bin/vmcp.js serve, temp data dir).
  --http URL            the --target gateway's HTTP API (store check, downlink)
  --target-pid P        the --target's pid, for its CPU and RSS
  --jwt-secret S        HS256 secret the simulators mint tokens with; --admin-token T: the API
                        bearer token. Against a --target gateway: default env VMCP_JWT_SECRET /
                        VMCP_ADMIN_TOKEN, else the built-in ones; the gateways the bench starts get
                        the given ones, or the built-in ones (${JWT_SECRET} / ${ADMIN_TOKEN})
  --vehicles N --rate R --duration D --batch K --keepalive S --ramp N
  --store-sync full|normal   gateway durability (default full)
  --store sqlite|redis  the started gateways' store (default sqlite, one each); redis: one
                        redis-server started by the bench (AOF, fsync always), shared by them;
                        its CPU and RSS count as the target's
  --gateways G          start G gateway processes (scale-out; vehicles split evenly)
  --sims-per-gateway P  simulator processes per gateway
  --hold D              connections: hold time after the ramp (default 20s)
  --steps 5,10,20       saturation: per-vehicle rates; --step-duration D (default 10s)
  --command-rates 250,500   downlink: commands/s per step
  --sustainable S       overload: the sustainable msgs/s found by saturation
  --cpu-prof            write a V8 CPU profile of the gateway (uplink, saturation) and list hot functions
  --no-verify           skip the store check through the API
  --gateway-flag=F      extra 'vmcp serve' flags as a comma list: --gateway-flag=--commit-interval-ms,1
  --sim-flag=F          extra 'vmcp sim' flags as a comma list: --sim-flag=--max-connecting,200
  --versus T --pairs K  compare: the peer target (as --target) and the number of pairs
  --kill-every D --command-rate C   soak: crash interval (default none), commands/s (default 10)
  --verify-budget D     how long the simulators' store check may take (default 3m; soak 20m):
                        a long history read from a cold page cache costs a disk read per record
  --results-dir DIR     where the .jsonl and .html go (default bench/results)
`;

const VALUED = [
  'target',
  'targetPid',
  'http',
  'jwtSecret',
  'adminToken',
  'vehicles',
  'rate',
  'duration',
  'batch',
  'keepalive',
  'ramp',
  'storeSync',
  'store',
  'gateways',
  'simsPerGateway',
  'hold',
  'steps',
  'stepDuration',
  'commandRates',
  'sustainable',
  'gatewayFlag',
  'simFlag',
  'versus',
  'pairs',
  'killEvery',
  'commandRate',
  'verifyBudget',
  'resultsDir',
] as const;
const SWITCHES = ['cpuProf', 'noVerify', 'help'] as const;

/** --target values that are not host:port or mqtt://host:port. */
export const NAMED_TARGETS = ['aedes', 'node-floor', 'node-floor-onread', 'c-floor'] as const;

/** Whether `t` is a --target the bench knows: host:port, mqtt://host:port or a named one. */
export function validTarget(t: string): boolean {
  if ((NAMED_TARGETS as readonly string[]).includes(t)) return true;
  const hp = t.startsWith('mqtt://') ? t.slice('mqtt://'.length).replace(/\/.*$/, '') : t;
  return parseHostPort(hp) !== undefined && !hp.startsWith(':');
}

/** Whether --target names a running VMCP gateway (host:port), not one the bench starts or a broker. */
export function externalGateway(target: string | undefined): boolean {
  return (
    target !== undefined &&
    !target.startsWith('mqtt://') &&
    !(NAMED_TARGETS as readonly string[]).includes(target)
  );
}

/** A usage error: the bench prints it and exits 2 before starting anything. */
export class UsageError extends Error {}

type Flags = Record<string, string | true>;

function text(flags: Flags, key: string): string | undefined {
  const v = flags[key];
  if (v === undefined) return undefined;
  if (v === true || v.trim() === '') throw new UsageError(`${flagText(key)}: expected a value`);
  return v;
}

function bad(key: string, what: string, got: string): never {
  throw new UsageError(`${flagText(key)}: expected ${what}, got "${got}"`);
}

/** A number ≥ min (a whole one if `integer`), or undefined when the flag is absent. */
function number(
  flags: Flags,
  key: string,
  o: { min?: number; max?: number; integer?: boolean; above?: number } = {},
): number | undefined {
  const raw = text(flags, key);
  if (raw === undefined) return undefined;
  const min = o.min ?? 0;
  const max = o.max ?? Number.MAX_SAFE_INTEGER;
  const what = `${o.integer === true ? 'a whole number' : 'a number'} ${
    o.above !== undefined
      ? `above ${o.above}`
      : max < Number.MAX_SAFE_INTEGER
        ? `in ${min}–${max}`
        : `≥ ${min}`
  }`;
  const pattern = o.integer === true ? /^\d+$/ : /^\d+(?:\.\d+)?$/;
  if (!pattern.test(raw.trim())) bad(key, what, raw);
  const n = Number(raw);
  if (n < min || n > max || (o.above !== undefined && n <= o.above)) bad(key, what, raw);
  return n;
}

function duration(flags: Flags, key: string, positive = true): number | undefined {
  const raw = text(flags, key);
  if (raw === undefined) return undefined;
  const ms = parseDuration(raw);
  if (ms === undefined || (positive && ms <= 0)) bad(key, 'a duration like 30s or 2m', raw);
  return ms;
}

function numberList(flags: Flags, key: string): number[] | undefined {
  const raw = text(flags, key);
  if (raw === undefined) return undefined;
  const parts = raw.split(',').map((p) => p.trim());
  if (parts.some((p) => !/^\d+(?:\.\d+)?$/.test(p) || Number(p) <= 0))
    bad(key, 'a comma list of numbers above 0, e.g. 5,10,20', raw);
  return parts.map(Number);
}

function oneOf<T extends string>(flags: Flags, key: string, values: readonly T[]): T | undefined {
  const raw = text(flags, key);
  if (raw === undefined) return undefined;
  if (!(values as readonly string[]).includes(raw)) bad(key, values.join(' or '), raw);
  return raw as T;
}

function targetText(flags: Flags, key: string): string | undefined {
  const raw = text(flags, key);
  if (raw !== undefined && !validTarget(raw))
    bad(key, `host:port, mqtt://host:port or one of ${NAMED_TARGETS.join(', ')}`, raw);
  return raw;
}

/**
 * The scenario and its options from the bench's arguments (after `node bench/fleet.ts`), secrets
 * defaulted from `env` for a --target gateway. Throws UsageError on anything it does not accept.
 * `help` is true for --help (or no scenario).
 */
export function benchArgs(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): { scenario: string | undefined; help: boolean; opts: BenchOptions } {
  const parsed = parseFlags(argv);
  const { flags, positional } = parsed;
  const scenario = positional[0];
  const help = flags.help === true || scenario === undefined;
  if (scenario !== undefined && !(SCENARIO_NAMES as readonly string[]).includes(scenario))
    throw new UsageError(`unknown scenario "${scenario}" (${SCENARIO_NAMES.join(', ')})`);
  try {
    checkFlags(parsed, VALUED, SWITCHES, 1);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const http = text(flags, 'http')?.replace(/\/+$/, '');
  if (http !== undefined && !/^https?:\/\/[^/]/.test(http))
    bad('http', 'a URL like http://127.0.0.1:8080', http);
  const target = targetText(flags, 'target');
  const external = externalGateway(target);
  const storeSync = oneOf(flags, 'storeSync', ['full', 'normal'] as const) ?? 'full';
  const extra = text(flags, 'gatewayFlag')?.split(',') ?? [];
  const simFlags = text(flags, 'simFlag')?.split(',') ?? [];
  const jwtSecret =
    text(flags, 'jwtSecret') ?? (external ? env.VMCP_JWT_SECRET || undefined : undefined);
  const adminToken =
    text(flags, 'adminToken') ?? (external ? env.VMCP_ADMIN_TOKEN || undefined : undefined);
  const opts: BenchOptions = {
    target,
    targetPid: number(flags, 'targetPid', { integer: true, min: 1 }),
    httpUrl: http,
    vehicles: number(flags, 'vehicles', { integer: true, min: 1, max: 10_000_000 }),
    rate: number(flags, 'rate', { max: 100_000 }),
    durationMs: duration(flags, 'duration'),
    batch: number(flags, 'batch', { integer: true, min: 1, max: 255 }) ?? 1,
    storeSync,
    store: oneOf(flags, 'store', ['sqlite', 'redis'] as const) ?? 'sqlite',
    gateways: number(flags, 'gateways', { integer: true, min: 1, max: 256 }) ?? 1,
    simsPerShard: number(flags, 'simsPerGateway', { integer: true, min: 1, max: 256 }),
    holdMs: duration(flags, 'hold', false) ?? 20_000,
    steps: numberList(flags, 'steps'),
    stepMs: duration(flags, 'stepDuration') ?? 10_000,
    commandRates: numberList(flags, 'commandRates'),
    sustainable: number(flags, 'sustainable', { above: 0 }),
    cpuProf: flags.cpuProf === true,
    verify: flags.noVerify !== true,
    gatewayFlags: ['--store-sync', storeSync, ...extra],
    simFlags,
    keepaliveS: number(flags, 'keepalive', { integer: true, min: 1, max: 65_535 }) ?? 30,
    ramp: number(flags, 'ramp', { above: 0 }) ?? 2_000,
    versus: targetText(flags, 'versus'),
    pairs: number(flags, 'pairs', { integer: true, min: 1, max: 100 }),
    killEveryMs: duration(flags, 'killEvery'),
    verifyBudgetMs: duration(flags, 'verifyBudget'),
    commandRate: number(flags, 'commandRate'),
    secrets: { jwtSecret: jwtSecret ?? JWT_SECRET, adminToken: adminToken ?? ADMIN_TOKEN },
    resultsDir: text(flags, 'resultsDir'),
  };
  return { scenario, help, opts };
}
