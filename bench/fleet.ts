// The load-bench driver behind `vmcp bench <scenario>`: runs bounded scenarios against a gateway it
// starts (or --target), or an MQTT broker (--target mqtt://127.0.0.1:1883, --target aedes); writes JSON
// lines to stdout and bench/results/<stamp>-<scenario>-<target>.{jsonl,html}.
// Run: node --import tsx bench/fleet.ts <scenario> [options]   (npm run build first: the gateway and
// the simulators run from dist/)
import { appendFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, machine, owned, topFunctions } from './scenarios/common.js';
import { compare } from './scenarios/compare.js';
import { connections } from './scenarios/connections.js';
import type { ScenarioContext, ScenarioResult } from './scenarios/context.js';
import { downlink } from './scenarios/downlink.js';
import {
  HELP,
  SCENARIO_NAMES,
  UsageError,
  benchArgs,
  externalGateway,
} from './scenarios/options.js';
import { saturation } from './scenarios/saturation.js';
import { soak } from './scenarios/soak.js';
import { storm } from './scenarios/storm.js';
import { overload, uplink } from './scenarios/uplink.js';
import { renderReport } from './report.js';
import { flameGraph, type CpuProfile } from './flame.js';

const SCENARIOS: Record<
  (typeof SCENARIO_NAMES)[number],
  (ctx: ScenarioContext) => Promise<ScenarioResult>
> = {
  connections,
  uplink,
  saturation,
  overload,
  storm,
  downlink,
  compare,
  soak,
};

async function main(): Promise<number> {
  let args: ReturnType<typeof benchArgs>;
  try {
    args = benchArgs(process.argv.slice(2), process.env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message} (options: --help)\n`);
    return 2;
  }
  const { scenario, opts } = args;
  if (args.help || scenario === undefined) {
    process.stdout.write(HELP);
    return 0;
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const dir = opts.resultsDir ?? join(ROOT, 'bench', 'results');
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
          : externalGateway(opts.target)
            ? 'external'
            : opts.target;
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
  const result = await SCENARIOS[scenario as keyof typeof SCENARIOS](ctx);
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
  if (result.failed === true)
    process.stderr.write(`bench: FAILED: ${(result.failures ?? ['see the notes']).join('; ')}\n`);
  return result.failed === true ? 1 : 0;
}

// Every exit path ends what the bench started (owned: gateways, simulators, Redis, brokers, temp
// dirs): the normal end, a thrown error, SIGINT (exit 130), SIGTERM (143); a second signal kills at
// once, and process exit kills whatever is still left.
let ending = false;

function end(code: number): void {
  if (ending) return;
  ending = true;
  void owned.stopAll().finally(() => process.exit(code));
}

function failed(err: unknown): void {
  if (ending) return; // a consequence of the shutdown under way (a simulator killed, …)
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  end(1);
}

function interrupted(signal: NodeJS.Signals, code: number): void {
  if (ending) {
    owned.killAll();
    process.exit(code);
  }
  const left = owned.pending;
  process.stderr.write(
    `bench: ${signal}: stopping what the bench started (${left.length})${left.length > 0 ? `: ${left.join(', ')}` : ''}\n`,
  );
  end(code);
}

process.on('SIGINT', () => interrupted('SIGINT', 130));
process.on('SIGTERM', () => interrupted('SIGTERM', 143));
process.on('uncaughtException', failed);
process.on('unhandledRejection', failed);
process.on('exit', () => owned.killAll());

main().then(async (code) => {
  if (ending) return;
  ending = true;
  // The scenarios stop what they started; anything left (a failure path) is ended here.
  await owned.stopAll();
  process.exitCode = code;
  // Nothing should keep the loop alive for long.
  setTimeout(() => process.exit(code), 2_000).unref();
}, failed);
