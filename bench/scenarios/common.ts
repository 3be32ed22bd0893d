// Shared machinery of the load bench: child processes (gateway, simulators, brokers), each registered
// with `owned` so that it is stopped on any exit, /proc sampling of CPU and RSS per process group,
// progress aggregation, and the JSON-lines output.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import type { BenchSecrets } from './context.js';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { LatencyHistogram } from '../../src/sim/histogram.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const JWT_SECRET = 'bench-jwt-secret-0123456789abcdef';
export const ADMIN_TOKEN = 'bench-admin-token';
/** CLK_TCK: /proc/<pid>/stat counts CPU time in these. */
const TICKS_PER_SEC = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** The built-in secrets, for the gateways the bench starts (unless --jwt-secret / --admin-token). */
export const BUILT_IN_SECRETS: BenchSecrets = { jwtSecret: JWT_SECRET, adminToken: ADMIN_TOKEN };

// ---- what the bench started: every child process and temp path, ended on any exit path ----

/**
 * In which order things are ended: the clients first (simulators: SIGKILL, they hold nothing), then
 * the servers (gateways, brokers: SIGTERM, then SIGKILL after a grace period), the stores (Redis) and
 * last the temp paths (a gateway's data dir once it is down).
 */
export type OwnedTier = 'client' | 'server' | 'store' | 'path';
const TIERS: readonly OwnedTier[] = ['client', 'server', 'store', 'path'];

export interface OwnedResource {
  name: string;
  tier: OwnedTier;
  /** Orderly end, bounded in time. */
  stop(): Promise<void>;
  /** Last resort, synchronous (process exit): SIGKILL, rm. */
  kill(): void;
}

/** Flags whose value the "started" lines do not show. */
const SECRET_FLAGS = new Set(['--jwt-secret', '--admin-token']);

function alive(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

/** SIGTERM, SIGKILL after `graceMs` (at once when 0); resolves when the process is gone (bounded). */
export async function endChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (!alive(child)) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
  const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const giveUp = new Promise<void>((r) => setTimeout(r, graceMs + 5_000).unref());
  await Promise.race([exited, giveUp]);
  clearTimeout(kill);
}

/**
 * The one registry of what the bench started and must end: every child process (registered when
 * spawned, released when it exits) and every temp path (released when removed). The driver ends
 * whatever is left on every exit path: normal end, a thrown error, SIGINT, SIGTERM (stopAll), and
 * as a last resort synchronously on process exit (killAll).
 */
export class Owned {
  private readonly items = new Set<OwnedResource>();

  /** Registers a resource; the returned function releases it (ended elsewhere). */
  add(r: OwnedResource): () => void {
    this.items.add(r);
    return () => {
      this.items.delete(r);
    };
  }

  /** A child process, released when it exits. Servers get `graceMs` after SIGTERM. */
  process(
    child: ChildProcess,
    name: string,
    tier: Exclude<OwnedTier, 'path'>,
    graceMs = 10_000,
  ): void {
    const r: OwnedResource = {
      name: `${name} (pid ${child.pid ?? '?'})`,
      tier,
      stop: () => endChild(child, tier === 'client' ? 0 : graceMs),
      kill: () => {
        if (alive(child)) child.kill('SIGKILL');
      },
    };
    const release = this.add(r);
    // One line per process, written as it starts: which pid to profile or watch, and a record a
    // wrapper can rely on even when the process lives only a moment.
    if (child.pid !== undefined) {
      const shown = child.spawnargs.map((a, i, all) =>
        SECRET_FLAGS.has(all[i - 1] ?? '') ? '***' : a,
      );
      process.stderr.write(`bench: started ${r.name}: ${shown.join(' ')}\n`);
    }
    child.once('exit', release);
    child.once('error', () => {
      if (child.pid === undefined) release(); // never started
    });
  }

  /** A temp file or directory, removed at the end unless released first (returns the release). */
  path(path: string, name: string): () => void {
    const rm = (): void => rmSync(path, { recursive: true, force: true });
    return this.add({ name: `${name} ${path}`, tier: 'path', stop: async () => rm(), kill: rm });
  }

  /** What is still registered (names). */
  get pending(): string[] {
    return [...this.items].map((r) => r.name);
  }

  /** Ends everything registered, tier by tier (each tier at once), bounded. Never throws. */
  async stopAll(): Promise<void> {
    for (const tier of TIERS) {
      const batch = [...this.items].filter((r) => r.tier === tier);
      await Promise.all(
        batch.map(async (r) => {
          try {
            await r.stop();
          } catch {
            // best effort: the last resort below still runs for it
            r.kill();
          }
          this.items.delete(r);
        }),
      );
    }
  }

  /** Synchronous last resort (process exit, a second signal): SIGKILL every process, remove paths. */
  killAll(): void {
    for (const tier of TIERS)
      for (const r of [...this.items].filter((x) => x.tier === tier)) {
        try {
          r.kill();
        } catch {
          // nothing more to do
        }
        this.items.delete(r);
      }
  }
}

/** Everything this bench process started. */
export const owned = new Owned();

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Quick readings of how fast this machine is today, so figures from different sessions can be
 * compared: the same 2-core VM has measured the same peer (Mosquitto) at 14.5 and at 40 µs per ack
 * on different days. `loopbackRttUs`: one 8-byte ping-pong between two sockets of this process over
 * 127.0.0.1 (two writes, two reads and the wake-ups: the kernel work each message costs the
 * gateway); `jsLoopMs`: a fixed pure-JS loop. Best of five rounds, so a busy neighbour counts less.
 */
export async function calibrate(): Promise<{ loopbackRttUs: number; jsLoopMs: number }> {
  let jsLoopMs = Infinity;
  for (let round = 0; round < 5; round++) {
    const t = performance.now();
    let x = 0;
    for (let i = 0; i < 10_000_000; i++) x = (x + i * 31) % 1_000_003;
    if (x < 0) throw new Error('unreachable'); // keeps the loop
    jsLoopMs = Math.min(jsLoopMs, performance.now() - t);
  }
  const server = createServer((sock) => sock.on('data', (b) => sock.write(b)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const client = connect(port, '127.0.0.1');
  client.setNoDelay(true);
  await new Promise<void>((r) => client.once('connect', r));
  let rtt = Infinity;
  const ping = Buffer.alloc(8);
  try {
    for (let round = 0; round < 5; round++) {
      const n = 2_000;
      const t = performance.now();
      await new Promise<void>((resolve) => {
        let left = n;
        const onData = (): void => {
          if (--left === 0) {
            client.off('data', onData);
            resolve();
          } else client.write(ping);
        };
        client.on('data', onData);
        client.write(ping);
      });
      rtt = Math.min(rtt, ((performance.now() - t) * 1000) / n);
    }
  } finally {
    client.destroy();
    await new Promise((r) => server.close(r));
  }
  return { loopbackRttUs: Math.round(rtt * 10) / 10, jsLoopMs: Math.round(jsLoopMs * 10) / 10 };
}

export async function machine(): Promise<Record<string, unknown>> {
  return {
    calibration: await calibrate(),
    nproc: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    kernel: spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim(),
    commit: spawnSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: ROOT,
      encoding: 'utf8',
    }).stdout.trim(),
    // The newest file of dist/: tsc leaves a file it would write unchanged alone.
    distBuiltAt: (() => {
      try {
        let newest = 0;
        for (const f of readdirSync(join(ROOT, 'dist'), { recursive: true, encoding: 'utf8' }))
          newest = Math.max(newest, statSync(join(ROOT, 'dist', f)).mtimeMs);
        return newest > 0 ? new Date(newest).toISOString() : null;
      } catch {
        return null;
      }
    })(),
    memTotalGb: Math.round(
      Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1048576,
    ),
  };
}

/** A free TCP port on 127.0.0.1 (bound and released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

// ---- /proc sampling ----

export interface ProcUsage {
  /** CPU time (user + system), ms. */
  cpuMs: number;
  /** Its system part (in the kernel on the process's behalf), ms. */
  sysMs: number;
  rssKb: number;
}

export function procUsage(pid: number): ProcUsage | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const sysTicks = Number(rest[12]);
    const ticks = Number(rest[11]) + sysTicks;
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return {
      cpuMs: (ticks * 1000) / TICKS_PER_SEC,
      sysMs: (sysTicks * 1000) / TICKS_PER_SEC,
      rssKb: rss,
    };
  } catch {
    return undefined;
  }
}

/** CPU and RSS of a named group of processes, summed (a process that exited keeps its last CPU). */
export class ProcGroup {
  private readonly last = new Map<number, ProcUsage>();
  private readonly gone = new Map<number, ProcUsage>();

  constructor(readonly name: string) {}

  pids: number[] = [];

  add(pid: number | undefined): void {
    if (pid !== undefined && !this.pids.includes(pid)) this.pids.push(pid);
  }

  remove(pid: number | undefined): void {
    if (pid === undefined) return;
    this.read();
    const u = this.last.get(pid);
    if (u !== undefined) this.gone.set(pid, u);
    this.pids = this.pids.filter((p) => p !== pid);
    this.last.delete(pid);
  }

  /** Current totals: CPU ms and its system part (processes of this group ever), RSS kB (those alive). */
  read(): ProcUsage {
    let cpuMs = 0;
    let sysMs = 0;
    let rssKb = 0;
    for (const pid of this.pids) {
      const u = procUsage(pid) ?? this.last.get(pid);
      if (u === undefined) continue;
      this.last.set(pid, u);
      cpuMs += u.cpuMs;
      sysMs += u.sysMs;
      rssKb += u.rssKb;
    }
    for (const g of this.gone.values()) {
      cpuMs += g.cpuMs;
      sysMs += g.sysMs;
    }
    return { cpuMs, sysMs, rssKb };
  }
}

// ---- output ----

export type Emit = (record: Record<string, unknown>) => void;

// ---- the gateway as a child process ----

export interface GatewayOptions {
  flags?: string[];
  /** Write a V8 CPU profile of the gateway into this directory. */
  cpuProfDir?: string;
  dataDir?: string;
  port?: number;
  httpPort?: number;
  /** The secrets it runs with (default the built-in ones). */
  secrets?: BenchSecrets;
}

export class GatewayProc {
  child: ChildProcess | undefined;
  readonly dataDir: string;
  readonly ownDir: boolean;
  port = 0;
  httpPort = 0;
  private stderrTail: string[] = [];
  private releaseDir: () => void = () => undefined;
  readonly secrets: BenchSecrets;
  /** Lines the gateway printed (stdout and stderr), counted, and the last 20 of them. */
  outputLines = 0;

  get outputTail(): string[] {
    return [...this.stderrTail];
  }

  constructor(private readonly opts: GatewayOptions = {}) {
    this.ownDir = opts.dataDir === undefined;
    this.dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'vmcp-bench-'));
    if (this.ownDir) this.releaseDir = owned.path(this.dataDir, 'gateway data dir');
    this.secrets = opts.secrets ?? BUILT_IN_SECRETS;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  async start(): Promise<void> {
    this.port ||= this.opts.port ?? (await freePort());
    this.httpPort ||= this.opts.httpPort ?? (await freePort());
    const args = [
      ...(this.opts.cpuProfDir !== undefined
        ? ['--cpu-prof', '--cpu-prof-dir', this.opts.cpuProfDir]
        : []),
      join(ROOT, 'bin', 'vmcp.js'),
      'serve',
      '--listen',
      `127.0.0.1:${this.port}`,
      '--http',
      `127.0.0.1:${this.httpPort}`,
      '--data-dir',
      this.dataDir,
      '--log-level',
      'warn',
      ...(this.opts.flags ?? []),
    ];
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: {
        ...process.env,
        VMCP_JWT_SECRET: this.secrets.jwtSecret,
        VMCP_ADMIN_TOKEN: this.secrets.adminToken,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    owned.process(child, 'gateway', 'server');
    const keep = (line: string): void => {
      this.outputLines++;
      this.stderrTail.push(line);
      if (this.stderrTail.length > 20) this.stderrTail.shift();
    };
    createInterface({ input: child.stdout! }).on('line', keep);
    createInterface({ input: child.stderr! }).on('line', keep);
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      if (child.exitCode !== null) break;
      try {
        const res = await fetch(`${this.httpUrl}/readyz`);
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`gateway did not become ready: ${this.stderrTail.join('\n')}`);
  }

  /** Graceful stop (SIGTERM: drain), bounded; SIGKILL after `ms`. */
  async stop(ms = 20_000): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), ms);
    await exited;
    clearTimeout(t);
  }

  /** Crash: SIGKILL, every connection drops at once. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await exited;
  }

  cleanup(): void {
    if (this.ownDir) rmSync(this.dataDir, { recursive: true, force: true });
    this.releaseDir();
  }

  async api(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${this.httpUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.secrets.adminToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
  }
}

// ---- simulators as child processes ----

export interface Progress {
  t: number;
  at: number;
  connected: number;
  connecting: number;
  sent: number;
  stored: number;
  delivered?: number;
  throttled: number;
  resent: number;
  backlog: number;
  reconnects: number;
  errors: number;
  commands: number;
  sentPerSec: number;
  storedPerSec: number;
  deliveredPerSec?: number;
  /** Commands received by the vehicles over the interval, per second (vmcp sim). */
  commandsPerSec?: number;
  p50: number;
  p99: number;
  max: number;
  loopMaxMs?: number;
  h: string;
}

export interface SimSpec {
  kind: 'vmcp' | 'mqtt';
  target: string; // host:port
  vehicles: number;
  rate: number;
  durationMs: number;
  idPrefix: string;
  batch?: number;
  keepaliveS?: number;
  sources?: string;
  ramp?: number;
  verifyHttp?: string;
  subscriber?: boolean;
  commandTtlMs?: number;
  /** The simulator's --verify-budget (ms); its default (3 minutes) when undefined. */
  verifyBudgetMs?: number;
  /** What the VMCP simulator mints tokens with (--jwt-secret) and checks the store with (--admin-token). */
  secrets?: BenchSecrets;
  extra?: string[];
}

/** One simulator process: progress lines in, rate changes out, summary at the end. */
export class SimProc {
  readonly child: ChildProcess;
  readonly progress: Progress[] = [];
  readonly done: Promise<Record<string, unknown>>;
  /** Set when the process exited without a summary (a bad argument, a crash). */
  failure: Error | undefined;
  private readonly stderrTail: string[] = [];

  constructor(
    readonly spec: SimSpec,
    onProgress?: (p: Progress) => void,
  ) {
    const common = [
      '--target',
      spec.target,
      '--vehicles',
      String(spec.vehicles),
      '--rate',
      String(spec.rate),
      '--duration',
      `${spec.durationMs}ms`,
      '--id-prefix',
      spec.idPrefix,
      '--keepalive',
      String(spec.keepaliveS ?? 30),
      '--ramp',
      String(spec.ramp ?? 2000),
      '--progress',
      'json',
      '--control',
      'stdin',
    ];
    let args: string[];
    const secrets = spec.secrets ?? BUILT_IN_SECRETS;
    if (spec.kind === 'vmcp') {
      args = [
        join(ROOT, 'bin', 'vmcp.js'),
        'sim',
        ...common,
        '--jwt-secret',
        secrets.jwtSecret,
        ...(spec.batch !== undefined && spec.batch > 1 ? ['--batch', String(spec.batch)] : []),
        ...(spec.sources !== undefined ? ['--sources', spec.sources] : []),
        ...(spec.verifyHttp !== undefined
          ? ['--verify', '--http', spec.verifyHttp, '--admin-token', secrets.adminToken]
          : []),
        ...(spec.verifyBudgetMs !== undefined
          ? ['--verify-budget', `${spec.verifyBudgetMs}ms`]
          : []),
        ...(spec.commandTtlMs !== undefined ? ['--command-ttl', `${spec.commandTtlMs}ms`] : []),
        ...(spec.extra ?? []),
      ];
    } else {
      args = [
        '--import',
        'tsx',
        join(ROOT, 'bench', 'scenarios', 'mqtt-sim.ts'),
        ...common,
        ...(spec.subscriber === true ? ['--subscriber'] : []),
        ...(spec.extra ?? []),
      ];
    }
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    owned.process(child, `simulator ${spec.idPrefix}`, 'client');
    createInterface({ input: child.stderr! }).on('line', (line) => {
      if (line.startsWith('{"kind":"vmcp-sim-progress"')) {
        const p = JSON.parse(line) as Progress;
        this.progress.push(p);
        onProgress?.(p);
      } else {
        this.stderrTail.push(line);
        if (this.stderrTail.length > 20) this.stderrTail.shift();
        process.stderr.write(`[${spec.idPrefix}] ${line}\n`);
      }
    });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (t: string) => (out += t));
    this.done = new Promise((resolve, reject) => {
      child.on('close', (code) => {
        const last = out.trim().split('\n').pop() ?? '';
        try {
          resolve(JSON.parse(last) as Record<string, unknown>);
        } catch {
          this.failure = new Error(
            `simulator ${spec.idPrefix} exited ${code} without a summary: ${this.stderrTail.join('\n')}`,
          );
          reject(this.failure);
        }
      });
    });
    // Awaited later (or never, when the scenario ends on another error): not an unhandled rejection.
    this.done.catch(() => undefined);
    // A closed stdin pipe (process gone) must not crash the driver.
    child.stdin!.on('error', () => undefined);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  setRate(rate: number): void {
    this.child.stdin!.write(`${JSON.stringify({ rate })}\n`);
  }

  stop(): void {
    this.child.stdin!.write(`${JSON.stringify({ stop: true })}\n`);
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** Splits `total` vehicles over `parts` processes (as even as possible). */
export function split(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < total % parts ? 1 : 0));
}

// ---- the timeline: one row per second, all simulators and process groups merged ----

export interface TimelineRow {
  t: number; // s since the scenario started
  connected: number;
  sentPerSec: number;
  storedPerSec: number;
  /** Deliveries to the receiving side: the MQTT subscriber's, or commands received by VMCP vehicles. */
  deliveredPerSec: number;
  /** Commands received by the vehicles (VMCP simulators), and commands reported succeeded to the bench
   * with the POST → succeeded latency of those (downlink: Recorder.commandSucceeded). */
  commandsPerSec: number;
  commandsAckedPerSec: number;
  cmdP50: number;
  cmdP99: number;
  p50: number;
  p99: number;
  backlog: number;
  throttled: number;
  gwCpuPct: number;
  gwRssMb: number;
  simCpuPct: number;
  simRssMb: number;
  /** Event-loop delay, max over the second (ms): the target's (gateway /metrics) and the simulators'. */
  gwLoopMaxMs: number | null;
  simLoopMaxMs: number;
  /** Cumulative stored (all simulators) and CPU ms of the target at this row. */
  stored: number;
  gwCpuMs: number;
}

/**
 * Samples the process groups every second and merges the simulators' latest progress lines into a
 * timeline. Per-second latency percentiles come from the simulators' interval histograms, merged.
 */
export class Recorder {
  readonly rows: TimelineRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly started = Date.now();
  private prev: { at: number; gw: number; sim: number } | undefined;
  private readonly pending: Progress[] = [];
  private readonly latest = new Map<SimProc, Progress>();
  sims: SimProc[] = [];
  /** Gateway metrics URLs: their nodejs_eventloop_lag_max_seconds is read (and reset) every second. */
  metricsUrls: string[] = [];
  private gwLoopMaxMs: number | null = null;
  /** Commands the scenario saw succeed since the last row, with their latency. */
  private readonly cmdLatency = new LatencyHistogram();
  private cmdAcked = 0;

  constructor(
    readonly gateway: ProcGroup,
    readonly simGroup: ProcGroup,
  ) {}

  private scrape(): void {
    for (const url of this.metricsUrls) {
      fetch(url)
        .then((res) => res.text())
        .then((text) => {
          const m = /^nodejs_eventloop_lag_max_seconds (\S+)/m.exec(text);
          if (m) {
            const ms = Number(m[1]) * 1000;
            this.gwLoopMaxMs = Math.max(this.gwLoopMaxMs ?? 0, Math.round(ms * 10) / 10);
          }
        })
        .catch(() => undefined);
    }
  }

  onProgress = (p: Progress): void => {
    this.pending.push(p);
  };

  /** A command reported succeeded `ms` after it was posted (the downlink's event stream). */
  commandSucceeded(ms: number): void {
    this.cmdAcked++;
    this.cmdLatency.recordMs(ms);
  }

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), 1000);
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }

  private sample(): void {
    const now = Date.now();
    const gw = this.gateway.read();
    const sim = this.simGroup.read();
    const prev = this.prev;
    this.prev = { at: now, gw: gw.cpuMs, sim: sim.cpuMs };
    const gwLoop = this.gwLoopMaxMs;
    this.gwLoopMaxMs = null;
    this.scrape();
    if (prev === undefined) return;
    const dt = Math.max(1, now - prev.at);
    const h = new LatencyHistogram();
    let sentPerSec = 0;
    let storedPerSec = 0;
    let deliveredPerSec = 0;
    let commandsPerSec = 0;
    let simLoopMaxMs = 0;
    for (const p of this.pending.splice(0)) {
      simLoopMaxMs = Math.max(simLoopMaxMs, p.loopMaxMs ?? 0);
      h.addEncoded(p.h);
      sentPerSec += p.sentPerSec;
      storedPerSec += p.storedPerSec;
      deliveredPerSec += p.deliveredPerSec ?? 0;
      commandsPerSec += p.commandsPerSec ?? 0;
    }
    const cmd = this.cmdLatency;
    const commandsAckedPerSec = Math.round((this.cmdAcked * 1000) / dt);
    const cmdP50 = cmd.percentileMs(50);
    const cmdP99 = cmd.percentileMs(99);
    cmd.reset();
    this.cmdAcked = 0;
    for (const s of this.sims) {
      const last = s.progress[s.progress.length - 1];
      if (last !== undefined) this.latest.set(s, last);
    }
    let connected = 0;
    let backlog = 0;
    let throttled = 0;
    let stored = 0;
    for (const p of this.latest.values()) {
      connected += p.connected;
      backlog += p.backlog;
      throttled += p.throttled;
      stored += p.stored;
    }
    this.rows.push({
      t: Math.round((now - this.started) / 100) / 10,
      connected,
      sentPerSec,
      storedPerSec,
      deliveredPerSec,
      commandsPerSec,
      commandsAckedPerSec,
      cmdP50,
      cmdP99,
      p50: h.percentileMs(50),
      p99: h.percentileMs(99),
      backlog,
      throttled,
      gwCpuPct: Math.round(((gw.cpuMs - prev.gw) / dt) * 1000) / 10,
      gwRssMb: Math.round(gw.rssKb / 102.4) / 10,
      simCpuPct: Math.round(((sim.cpuMs - prev.sim) / dt) * 1000) / 10,
      simRssMb: Math.round(sim.rssKb / 102.4) / 10,
      gwLoopMaxMs: gwLoop,
      simLoopMaxMs,
      stored,
      gwCpuMs: gw.cpuMs,
    });
  }

  /** Max event-loop delay of the target and of the simulators over epoch [from, to]. */
  loopMax(from: number, to: number): { gwLoopMaxMs: number | null; simLoopMaxMs: number } {
    let gw: number | null = null;
    let sim = 0;
    for (const r of this.rows) {
      const at = this.started + r.t * 1000;
      if (at <= from || at > to + 1000) continue;
      if (r.gwLoopMaxMs !== null) gw = Math.max(gw ?? 0, r.gwLoopMaxMs);
      sim = Math.max(sim, r.simLoopMaxMs);
    }
    return { gwLoopMaxMs: gw, simLoopMaxMs: sim };
  }

  /** Mean CPU of the target and of the simulators (100 = one core) over the rows in epoch [from, to]. */
  cpuBetween(from: number, to: number): { targetCpuPct: number; simCpuPct: number } {
    let n = 0;
    let gw = 0;
    let sim = 0;
    for (const r of this.rows) {
      const at = this.started + r.t * 1000;
      if (at <= from || at > to + 1000) continue;
      n++;
      gw += r.gwCpuPct;
      sim += r.simCpuPct;
    }
    const mean = (x: number): number => (n === 0 ? 0 : Math.round((x / n) * 10) / 10);
    return { targetCpuPct: mean(gw), simCpuPct: mean(sim) };
  }

  /** Epoch ms of the scenario start (row t = 0). */
  get startedAt(): number {
    return this.started;
  }
}

/** Merged latency of all simulators' progress lines whose epoch `at` lies in [from, to]. */
export function windowLatency(
  sims: readonly SimProc[],
  from: number,
  to: number,
): LatencyHistogram {
  const h = new LatencyHistogram();
  for (const s of sims)
    for (const p of s.progress) if (p.at > from && p.at <= to) h.addEncoded(p.h);
  return h;
}

/**
 * Rate per second of a cumulative progress counter (stored, delivered) over epoch [from, to], summed
 * over the simulators: each from its own progress lines nearest inside the window, so the rate is
 * exact over the span those lines cover.
 */
export function windowRate(
  sims: readonly SimProc[],
  from: number,
  to: number,
  key: 'stored' | 'delivered' | 'sent',
): number {
  let rate = 0;
  for (const s of sims) {
    let a: Progress | undefined;
    let b: Progress | undefined;
    for (const p of s.progress) {
      if (p.at >= from && a === undefined) a = p;
      if (p.at <= to) b = p;
    }
    if (a === undefined || b === undefined || b.at <= a.at) continue;
    rate += (((b[key] ?? 0) - (a[key] ?? 0)) / (b.at - a.at)) * 1000;
  }
  return rate;
}

/** Waits until `cond` holds (polled every 200 ms) or `ms` passes; returns whether it held. */
export async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (cond()) return true;
    await sleep(200);
  }
  return cond();
}

/**
 * Vehicles connected now, over the simulators. Throws the failure of a simulator that exited without
 * its summary (a bad argument, a crash): a scenario waiting for vehicles ends at once instead.
 */
export function connectedNow(sims: readonly SimProc[]): number {
  let n = 0;
  for (const s of sims) {
    if (s.failure !== undefined) throw s.failure;
    n += s.progress[s.progress.length - 1]?.connected ?? 0;
  }
  return n;
}

/**
 * Which side ran out of CPU, from the target's and the simulators' CPU shares (100 = one core) over
 * the same window: the target (its event loop at ~100 %), the simulators (every simulator process at
 * ~100 %), the machine (all cores busy between them), or neither.
 */
export function saturatedSide(
  targetCpuPct: number,
  simCpuPct: number,
  o: { simProcesses: number; cores?: number },
): string {
  const cores = o.cores ?? cpus().length;
  if (targetCpuPct >= 90) return 'target (one event loop at ~100% CPU)';
  if (simCpuPct >= 90 * Math.max(1, o.simProcesses))
    return 'simulators (every simulator process at ~100% CPU)';
  if (targetCpuPct + simCpuPct >= 90 * cores)
    return `machine (all ${cores} cores busy: target + simulators)`;
  return `neither (target ${Math.round(targetCpuPct)}%, simulators ${Math.round(simCpuPct)}% of one core; ${cores} cores)`;
}

/** The pid of a running Mosquitto, if any. */
export function mosquittoPid(): number | undefined {
  const r = spawnSync('pgrep', ['-x', 'mosquitto'], { encoding: 'utf8' });
  const pid = Number(r.stdout.trim().split('\n')[0]);
  return Number.isFinite(pid) && pid > 0 ? pid : undefined;
}

/**
 * Starts a helper server of bench/ that prints `<marker> <port>` once it listens: the Aedes broker
 * and the Node floor (`script`: a .ts file of bench/, run by tsx), or the C floor (`script`: the
 * path of an executable).
 */
export async function startHelperServer(
  script: string,
  args: string[],
  marker: string,
): Promise<{
  child: ChildProcess;
  port: number;
  stop(): Promise<void>;
}> {
  const argv = script.endsWith('.ts')
    ? [process.execPath, '--import', 'tsx', join(ROOT, 'bench', script), ...args]
    : [script, ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  owned.process(child, script, 'server', 5_000);
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${script} did not start in 20 s`)), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith(`${marker} `)) {
        clearTimeout(t);
        resolve(Number(line.slice(marker.length + 1)));
      }
    });
    child.on('exit', () => reject(new Error(`${script} exited`)));
  });
  return {
    child,
    port,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The hottest functions (self time) of a V8 .cpuprofile. */
export function topFunctions(
  profilePath: string,
  n = 15,
): { fn: string; url: string; selfPct: number }[] {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    hitCount?: number;
  }
  const prof = JSON.parse(readFileSync(profilePath, 'utf8')) as {
    nodes: Node[];
    samples?: number[];
  };
  const byId = new Map(prof.nodes.map((x) => [x.id, x]));
  const self = new Map<string, { url: string; hits: number }>();
  let total = 0;
  const count = (node: Node, hits: number): void => {
    const cf = node.callFrame;
    const key = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(src|dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`;
    const e = self.get(key) ?? { url: cf.url, hits: 0 };
    e.hits += hits;
    self.set(key, e);
    total += hits;
  };
  if (prof.samples !== undefined && prof.samples.length > 0) {
    const hits = new Map<number, number>();
    for (const id of prof.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
    for (const [id, h] of hits) count(byId.get(id)!, h);
  } else for (const node of prof.nodes) count(node, node.hitCount ?? 0);
  return [...self.entries()]
    .sort((a, b) => b[1].hits - a[1].hits)
    .slice(0, n)
    .map(([fn, e]) => ({
      fn,
      url: e.url,
      selfPct: Math.round((e.hits / Math.max(1, total)) * 1000) / 10,
    }));
}
