// `vmcp bench`: runs a load-benchmark scenario of bench/fleet.ts (a source checkout with dev dependencies).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_HELP = `Usage: vmcp bench <scenario> [options]

Runs a bounded load-benchmark scenario and writes JSON lines to stdout and an HTML report to
bench/results/. Scenarios: connections, uplink, saturation, overload, storm, downlink, compare,
soak. Exits 1 when the run failed (no vehicle connected, acked messages lost), 2 on a bad argument;
SIGINT / SIGTERM stop what it started (exit 130 / 143).
It runs bench/fleet.ts from a source checkout (npm install; npm run build first). Options:
'vmcp bench <scenario> --help'; figures and commands: docs/benchmarks.md.
`;

type Out = (text: string) => void;

/** The package root: two levels above this file (dist/cli or src/cli). */
function packageRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export async function bench(argv: string[], out: Out, err: Out): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
    out(BENCH_HELP);
    return argv.length === 0 ? 2 : 0;
  }
  const root = packageRoot();
  const script = join(root, 'bench', 'fleet.ts');
  if (!existsSync(script) || !existsSync(join(root, 'node_modules', 'tsx'))) {
    err('vmcp bench: needs a source checkout with dev dependencies (bench/fleet.ts, tsx)\n');
    return 2;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...argv], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.setEncoding('utf8').on('data', (t: string) => out(t));
  child.stderr.setEncoding('utf8').on('data', (t: string) => err(t));
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  const onInt = (): void => forward('SIGINT');
  const onTerm = (): void => forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    return await new Promise<number>((resolve) => {
      // Killed by a signal: 128 + its number, as a shell reports it.
      child.on('close', (code, signal) =>
        resolve(code ?? (signal === null ? 1 : 128 + (constants.signals[signal] ?? 0))),
      );
      child.on('error', (e) => {
        err(`vmcp bench: ${e.message}\n`);
        resolve(1);
      });
    });
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}
