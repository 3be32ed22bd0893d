// The load-bench driver behind `vmcp bench <scenario>`: runs bounded scenarios against a gateway it
// starts (or --target), or an MQTT broker (--target mqtt://127.0.0.1:1883, --target aedes); writes JSON
// lines to stdout and bench/results/<stamp>-<scenario>-<target>.{jsonl,html}.
// Run: node --import tsx bench/fleet.ts <scenario> [options]   (npm run build first: the gateway and
// the simulators run from dist/)
import { appendFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDuration, parseFlags } from '../src/config/index.js';
import { ROOT, machine, topFunctions } from './scenarios/common.js';
import { compare } from './scenarios/compare.js';
import { connections } from './scenarios/connections.js';
import type { BenchOptions, ScenarioContext, ScenarioResult } from './scenarios/context.js';
import { downlink } from './scenarios/downlink.js';
import { saturation } from './scenarios/saturation.js';
import { soak } from './scenarios/soak.js';
import { storm } from './scenarios/storm.js';
import { overload, uplink } from './scenarios/uplink.js';
import { renderReport } from './report.js';
import { flameGraph, type CpuProfile } from './flame.js';

const HELP = `Usage: vmcp bench <scenario> [options]      (node --import tsx bench/fleet.ts …)

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

Options:
  --target T            host:port (a running gateway; give --http and --target-pid), mqtt://host:port
                        (a broker; Mosquitto's pid is found with pgrep), or "aedes" (started here),
                        or "node-floor" / "node-floor-onread" / "c-floor" (bench/node-floor.ts,
                        bench/c-floor.c: the least per message in Node and in C, for comparison).
                        Default: start the gateway (node bin/vmcp.js serve, temp data dir).
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
  --versus T --pairs K  compare: the peer target (as --target) and the number of pairs
  --kill-every D --command-rate C   soak: crash interval (default none), commands/s (default 10)
  --verify-budget D     how long the simulators' store check may take (default 3m; soak 20m):
                        a long history read from a cold page cache costs a disk read per record
`;

const SCENARIOS: Record<string, (ctx: ScenarioContext) => Promise<ScenarioResult>> = {
  connections,
  uplink,
  saturation,
  overload,
  storm,
  downlink,
  compare,
  soak,
};

function list(v: string | true | undefined): number[] | undefined {
  return typeof v === 'string'
    ? v
        .split(',')
        .map(Number)
        .filter((n) => Number.isFinite(n))
    : undefined;
}

function options(flags: Record<string, string | true>): BenchOptions {
  const s = (k: string): string | undefined =>
    typeof flags[k] === 'string' ? (flags[k] as string) : undefined;
  const n = (k: string): number | undefined => (s(k) === undefined ? undefined : Number(s(k)));
  const d = (k: string): number | undefined =>
    s(k) === undefined ? undefined : parseDuration(s(k)!);
  const storeSync = s('storeSync') === 'normal' ? 'normal' : 'full';
  const extra = s('gatewayFlag')?.split(',') ?? [];
  return {
    target: s('target'),
    targetPid: n('targetPid'),
    httpUrl: s('http'),
    vehicles: n('vehicles'),
    rate: n('rate'),
    durationMs: d('duration'),
    batch: n('batch') ?? 1,
    storeSync,
    store: s('store') === 'redis' ? 'redis' : 'sqlite',
    gateways: n('gateways') ?? 1,
    simsPerShard: n('simsPerGateway'),
    holdMs: d('hold') ?? 20_000,
    steps: list(flags.steps),
    stepMs: d('stepDuration') ?? 10_000,
    commandRates: list(flags.commandRates),
    sustainable: n('sustainable'),
    cpuProf: flags.cpuProf === true,
    verify: flags.noVerify !== true,
    gatewayFlags: ['--store-sync', storeSync, ...extra],
    keepaliveS: n('keepalive') ?? 30,
    ramp: n('ramp') ?? 2_000,
    versus: s('versus'),
    pairs: n('pairs'),
    killEveryMs: d('killEvery'),
    verifyBudgetMs: d('verifyBudget'),
    commandRate: n('commandRate'),
  };
}

async function main(): Promise<number> {
  const { flags, positional } = parseFlags(process.argv.slice(2));
  const scenario = positional[0];
  if (scenario === undefined || flags.help === true || SCENARIOS[scenario] === undefined) {
    process.stdout.write(HELP);
    return scenario === undefined || flags.help === true ? 0 : 2;
  }
  const opts = options(flags);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const targetId =
    scenario === 'compare'
      ? 'pairs'
      : opts.target === undefined
        ? opts.store === 'redis'
          ? `gateway-redis`
          : `gateway-${opts.storeSync}`
        : opts.target.startsWith('mqtt://')
          ? 'mosquitto'
          : ['aedes', 'node-floor', 'node-floor-onread', 'c-floor'].includes(opts.target)
            ? opts.target
            : 'external';
  const base = join(dir, `${stamp}-${scenario}-${targetId}`);
  const jsonl = `${base}.jsonl`;
  const emit = (rec: Record<string, unknown>): void => {
    const line = JSON.stringify(rec);
    process.stdout.write(`${line}\n`);
    appendFileSync(jsonl, `${line}\n`);
  };
  const m = { type: 'machine', ...(await machine()) };
  emit(m);
  const profileDir = `${base}-prof`;
  const ctx: ScenarioContext = { opts, emit, profileDir };
  const result = await SCENARIOS[scenario]!(ctx);
  const flames: { name: string; svg: string }[] = [];
  if (opts.cpuProf) {
    try {
      const files = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
      for (const f of files) {
        const file = join(profileDir, f);
        const top = topFunctions(file, 20);
        result.notes.push(
          `CPU profile ${f}: ${top.map((t) => `${t.fn} ${t.selfPct}%`).join('; ')}`,
        );
        const svg = flameGraph(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, {
          title: `${scenario}, ${f}`,
        });
        const svgFile = file.replace(/\.cpuprofile$/, '.svg');
        writeFileSync(svgFile, svg);
        flames.push({ name: f, svg });
        emit({ type: 'profile', scenario, file, flameGraph: svgFile, top });
      }
    } catch (err) {
      result.notes.push(`no CPU profile: ${(err as Error).message}`);
    }
  }
  for (const row of result.timeline)
    emit({ type: 'timeline', scenario, target: result.targetId, ...row });
  const { timeline: _t, parts = [], ...brief } = result;
  for (const part of parts) emit({ type: 'result', result: part });
  emit({ type: 'summary', ...brief });
  emit({ type: 'result', result: { ...result, parts: undefined } });
  writeFileSync(`${base}.html`, renderReport([...parts, { ...result, flames }], m));
  process.stderr.write(`bench: report ${base}.html\n`);
  return result.failed === true ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Child processes are stopped by the scenarios; nothing should keep the loop alive for long.
    setTimeout(() => process.exit(code), 2_000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
