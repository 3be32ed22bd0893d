// The bench driver (bench/fleet.ts) as a process, on tiny runs: it ends every gateway, simulator and
// temp dir it started on every exit path (SIGINT, SIGTERM, a simulator failing), fails a run where no
// vehicle connected, works against a --target gateway with other secrets (--jwt-secret,
// --admin-token), refuses bad arguments before starting anything, and records the downlink's
// commands per second. Needs dist/ (npm run build): the gateway and the simulators run from it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, JWT_SECRET, startGateway, type TestGateway } from '../helpers/gateway.js';

const ROOT = join(import.meta.dirname, '..', '..');

interface Proc {
  pid: number;
  cmd: string;
}

/** The live child processes of `pid` (from /proc), zombies left out. */
function childrenOf(pid: number): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) !== pid || rest[0] === 'Z') continue;
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ');
      out.push({ pid: Number(name), cmd });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Whether a process is alive (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

interface Bench {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<number | null>;
  /** Every child process seen so far (polled every 25 ms while it runs). */
  seen: Map<number, string>;
}

const started: Bench[] = [];
let results = '';

function bench(args: string[], env: NodeJS.ProcessEnv = {}): Bench {
  const base = { ...process.env };
  delete base.VMCP_JWT_SECRET;
  delete base.VMCP_ADMIN_TOKEN;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench', 'fleet.ts'), ...args, '--results-dir', results],
    { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (t: string) => (out += t));
  const seen = new Map<number, string>();
  child.stderr!.setEncoding('utf8').on('data', (t: string) => {
    err += t;
    // The bench names every process it starts as it starts it: a process too short-lived for the
    // poll below (the test's loop busy under load) is still known.
    for (const m of t.matchAll(/^bench: started .*\(pid (\d+)\): (.*)$/gm))
      seen.set(Number(m[1]), m[2]!);
  });
  const poll = setInterval(() => {
    for (const c of childrenOf(child.pid!)) seen.set(c.pid, c.cmd);
  }, 25);
  const exit = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      clearInterval(poll);
      resolve(code);
    }),
  );
  const b = { child, out: () => out, err: () => err, exit, seen };
  started.push(b);
  return b;
}

/** Resolves with `get()` once it is defined (polled every 50 ms), or throws after `ms`. */
async function until<T>(get: () => T | undefined, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function exited(b: Bench, ms = 25_000): Promise<number | null> {
  return Promise.race([
    b.exit,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`bench still running: ${b.err()}`)), ms),
    ),
  ]);
}

const dataDirOf = (cmd: string): string | undefined => /--data-dir (\S+)/.exec(cmd)?.[1];

/** What the bench starts (gateways, simulators, brokers, Redis), not helpers like getconf. */
const STARTED = /vmcp\.js (serve|sim) |redis-server|mqtt-sim|aedes-broker|node-floor|c-floor/;
const startedBy = (b: Bench): string[] => [...b.seen.values()].filter((c) => STARTED.test(c));

/** Every process the bench started is gone and every gateway data dir it made is removed. */
function nothingLeft(b: Bench): void {
  for (const [pid, cmd] of b.seen) {
    expect(alive(pid), `left running: ${cmd}`).toBe(false);
    const dir = dataDirOf(cmd);
    if (dir !== undefined) expect(existsSync(dir), `left behind: ${dir}`).toBe(false);
  }
}

function resultLines(b: Bench, type: string): Record<string, unknown>[] {
  return b
    .out()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r.type === type);
}

beforeAll(() => {
  results = mkdtempSync(join(tmpdir(), 'vmcp-bench-results-'));
});

afterEach(async () => {
  // A failed test must not leave its bench (or what it started) running.
  for (const b of started.splice(0)) {
    if (b.child.exitCode === null && b.child.signalCode === null) b.child.kill('SIGKILL');
    for (const pid of b.seen.keys()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    for (const cmd of b.seen.values()) {
      const dir = dataDirOf(cmd);
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    }
  }
});

afterAll(() => {
  rmSync(results, { recursive: true, force: true });
});

describe('bench: every exit path ends what it started', () => {
  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)(
    'on %s stops the gateway and the simulator, removes the data dir and exits %i',
    async (signal, code) => {
      const b = bench(['uplink', '--vehicles', '5', '--rate', '1', '--duration', '60s']);
      const kids = await until(
        () => {
          const c = childrenOf(b.child.pid!);
          const gw = c.find((p) => p.cmd.includes(' serve '));
          return gw !== undefined && c.some((p) => p.cmd.includes(' sim ')) ? c : undefined;
        },
        20_000,
        'the gateway and the simulator',
      );
      const dir = dataDirOf(kids.find((p) => p.cmd.includes(' serve '))!.cmd)!;
      expect(existsSync(dir)).toBe(true);
      b.child.kill(signal);
      expect(await exited(b)).toBe(code);
      expect(b.err()).toContain(`bench: ${signal}: stopping`);
      nothingLeft(b);
      expect(existsSync(dir)).toBe(false);
    },
    40_000,
  );

  it('when a simulator exits on a bad argument: exit 1 at once, naming it, nothing left', async () => {
    const b = bench([
      'uplink',
      '--vehicles',
      '3',
      '--rate',
      '1',
      '--duration',
      '60s',
      '--sim-flag=--bogus-flag,1',
    ]);
    expect(await exited(b)).toBe(1);
    expect(b.err()).toMatch(
      /simulator B0- exited 2 without a summary.*--bogus-flag: unknown option/s,
    );
    expect(startedBy(b).some((c) => c.includes(' serve '))).toBe(true);
    nothingLeft(b);
  }, 40_000);

  it.each([
    ['uplink --vehicles abc', '--vehicles'],
    ['saturation --vehicles 10 --steps a,b', '--steps'],
    ['uplink --vehicle 5', '--vehicle: unknown option (did you mean --vehicles?)'],
  ])('refuses "%s" with exit 2 before starting anything', async (line, flag) => {
    const b = bench(line.split(' '));
    expect(await exited(b)).toBe(2);
    expect(b.err()).toContain(`bench: ${flag}`);
    expect(startedBy(b)).toEqual([]);
  });
});

describe('bench against a --target gateway with its own secrets', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway();
  });
  afterAll(async () => {
    await gw.stop();
  });

  const run = ['uplink', '--vehicles', '3', '--rate', '2', '--duration', '3s'];
  const target = () => ['--target', `127.0.0.1:${gw.port}`, '--http', gw.httpUrl];

  it('fails (exit 1) when no vehicle connected, and says so', async () => {
    // The built-in secrets are not this gateway's: every CONNECT is refused.
    const b = bench([...run, ...target()]);
    expect(await exited(b)).toBe(1);
    const [summary] = resultLines(b, 'summary');
    expect(summary).toMatchObject({ failed: true });
    expect((summary!.failures as string[])[0]).toMatch(
      /^no vehicle connected \(0 of 3\): BAD_CREDENTIALS/,
    );
    expect((summary!.figures as { store: { checked: boolean } }).store.checked).toBe(false);
    expect(b.err()).toContain('bench: FAILED: no vehicle connected');
    nothingLeft(b);
  }, 40_000);

  it('connects and checks the store with --jwt-secret and --admin-token (or the environment)', async () => {
    const b = bench([...run, ...target(), '--jwt-secret', JWT_SECRET], {
      VMCP_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    expect(await exited(b)).toBe(0);
    const [summary] = resultLines(b, 'summary');
    const f = summary!.figures as { store: { checked: boolean; vehicles: number }; acked: number };
    expect(f.acked).toBeGreaterThan(0);
    expect(f.store).toMatchObject({ checked: true, vehicles: 3, lostAcked: 0 });
    expect(summary!.failed).toBeUndefined();
    // Which side saturated, from the target's and the simulators' CPU (neither, on 6 msgs/s).
    expect((summary!.figures as { saturatedSide: string }).saturatedSide).toMatch(/^neither/);
    // Its "started" lines name the simulators, without the secrets they were given.
    expect(b.err()).toMatch(/^bench: started simulator .*--jwt-secret \*\*\*/m);
    expect(b.err()).not.toContain(JWT_SECRET);
  }, 40_000);
});

describe('bench downlink', () => {
  it('records the commands delivered and acked per second, and charts them', async () => {
    const b = bench([
      'downlink',
      '--vehicles',
      '4',
      '--command-rates',
      '20',
      '--step-duration',
      '3s',
    ]);
    expect(await exited(b)).toBe(0);
    const rows = resultLines(b, 'timeline');
    const sum = (k: string): number => rows.reduce((a, r) => a + Number(r[k] ?? 0), 0);
    const [summary] = resultLines(b, 'summary');
    const received = (summary!.figures as { commandsReceivedByVehicles: number })
      .commandsReceivedByVehicles;
    expect(received).toBeGreaterThanOrEqual(40);
    // The per-second rows carry the commands received (the code before showed none). They are rates
    // over each progress interval (about, not exactly, 1 s) and the last moments may fall after the
    // last row, so their sum is near the count, not equal to it.
    expect(sum('deliveredPerSec')).toBeGreaterThan(received * 0.5);
    expect(sum('deliveredPerSec')).toBeLessThan(received * 1.5);
    expect(sum('commandsAckedPerSec')).toBeGreaterThan(0);
    expect(rows.some((r) => Number(r.cmdP99) > 0)).toBe(true);
    expect((summary!.figures as { saturatedSide: string }).saturatedSide).toMatch(/^neither/);
    const html = readFileSync(/bench: report (\S+\.html)/.exec(b.err())![1]!, 'utf8');
    expect(html).toContain('Command throughput');
    expect(html).not.toContain('no data');
    nothingLeft(b);
  }, 40_000);
});

describe('bench saturation', () => {
  it('says the limit was not reached when the last step still met p99 and kept rising', async () => {
    const b = bench([
      'saturation',
      '--vehicles',
      '5',
      '--steps',
      '1,4',
      '--step-duration',
      '3s',
      '--no-verify',
    ]);
    expect(await exited(b)).toBe(0);
    const [summary] = resultLines(b, 'summary');
    const f = summary!.figures as Record<string, unknown>;
    expect(f.limitReached).toBe(false);
    expect(f.maxSustainablePerSec).toBeNull();
    expect(f.atLeastPerSec).toBeGreaterThan(0);
    expect(f.saturatedSide).toMatch(/^neither/);
    expect((summary!.notes as string[]).join('\n')).toMatch(
      /limit not reached: .* the maximum sustainable is at least \d+\/s/,
    );
    nothingLeft(b);
  }, 40_000);
});
