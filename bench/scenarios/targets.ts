// What the bench drives: gateways it starts itself (one, or several for scale-out), a gateway given
// by --target, an MQTT broker given by --target mqtt://host:port (Mosquitto), or an Aedes it starts.
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { DEFAULT_LOOPBACK_SOURCES } from '../../src/sim/fleet.js';
import {
  BUILT_IN_SECRETS,
  GatewayProc,
  ProcGroup,
  ROOT,
  SimProc,
  mosquittoPid,
  owned,
  split,
  startHelperServer,
  type Progress,
  type SimSpec,
} from './common.js';
import type { BenchSecrets } from './context.js';
import { startRedis, type RedisServer } from '../../test/helpers/redis.js';

export interface Target {
  kind: 'vmcp' | 'mqtt';
  /** Human name with version, e.g. "vmcp gateway (store-sync full)", "mosquitto 2.0.11". */
  name: string;
  /** Short id for file names and JSON. */
  id: string;
  /** One vehicle endpoint (host:port) per shard. */
  endpoints: string[];
  /** HTTP API per shard (vmcp targets). */
  http: (string | undefined)[];
  /** The target's processes (CPU and RSS sampled apart from the simulators'). */
  group: ProcGroup;
  /** Gateways this bench started (restartable for the reconnect storm). */
  gateways: GatewayProc[];
  /** The redis-server this bench started for its gateways (--store redis). */
  redis?: RedisServer;
  /** The gateway's JWT secret and admin token (VMCP targets). */
  secrets: BenchSecrets;
  close(): Promise<void>;
}

export interface TargetOptions {
  /** --target: undefined (start gateways), host:port, mqtt://host:port, or "aedes". */
  target: string | undefined;
  /** Gateways to start (scale-out: independent gateway processes, each with its own store). */
  shards: number;
  /** Extra `vmcp serve` flags (e.g. --store-sync normal). */
  gatewayFlags: string[];
  /** The started gateways' store: SQLite each (default), or one Redis they share, started here. */
  store?: 'sqlite' | 'redis' | undefined;
  cpuProfDir?: string | undefined;
  /** --target-pid: the external target's pid for CPU sampling. */
  targetPid?: number | undefined;
  httpUrl?: string | undefined;
  /** Secrets of a --target gateway, or given to the gateways started here (default the built-in ones). */
  secrets?: BenchSecrets | undefined;
}

function pkgVersion(name: string): string {
  try {
    const p = JSON.parse(
      readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8'),
    ) as {
      version: string;
    };
    return p.version;
  } catch {
    return '?';
  }
}

function mosquittoVersion(): string {
  const r = spawnSync('mosquitto', ['-h'], { encoding: 'utf8' });
  return /mosquitto version (\S+)/.exec(`${r.stdout}${r.stderr}`)?.[1] ?? '?';
}

/** A target of one helper process the bench started (Aedes, a floor). */
function helperTarget(
  group: ProcGroup,
  kind: Target['kind'],
  id: string,
  name: string,
  helper: Awaited<ReturnType<typeof startHelperServer>>,
): Target {
  group.add(helper.child.pid);
  return {
    kind,
    name,
    id,
    endpoints: [`127.0.0.1:${helper.port}`],
    http: [undefined],
    group,
    gateways: [],
    secrets: BUILT_IN_SECRETS,
    close: () => helper.stop(),
  };
}

export async function openTarget(o: TargetOptions): Promise<Target> {
  const group = new ProcGroup('target');
  const t = o.target;
  const secrets = o.secrets ?? BUILT_IN_SECRETS;
  if (t === 'aedes') {
    const aedes = await startHelperServer('aedes-broker.ts', ['0'], 'AEDES_PORT');
    return helperTarget(
      group,
      'mqtt',
      'aedes',
      `aedes ${pkgVersion('aedes')} (in-memory, defaults)`,
      aedes,
    );
  }
  // The floors are not gateways: the least any server does per message, for the CPU comparison.
  if (t === 'node-floor' || t === 'node-floor-onread') {
    const io = t === 'node-floor' ? 'stream' : 'onread';
    const floor = await startHelperServer('node-floor.ts', ['0', io], 'FLOOR_PORT');
    return helperTarget(
      group,
      'vmcp',
      t,
      `node floor (${io} reads; acks unstored, no auth, no session)`,
      floor,
    );
  }
  if (t === 'c-floor') {
    const exe = join(tmpdir(), `vmcp-c-floor-${process.pid}`);
    const releaseExe = owned.path(exe, 'c-floor executable');
    const cc = spawnSync('cc', ['-O2', '-o', exe, join(ROOT, 'bench', 'c-floor.c')], {
      encoding: 'utf8',
    });
    if (cc.status !== 0)
      throw new Error(`--target c-floor needs a C compiler (cc): ${cc.stderr || cc.error}`);
    const floor = await startHelperServer(exe, ['0'], 'FLOOR_PORT');
    return helperTarget(group, 'vmcp', t, 'C floor (epoll; acks unstored, no auth, no session)', {
      child: floor.child,
      port: floor.port,
      async stop() {
        await floor.stop();
        rmSync(exe, { force: true });
        releaseExe();
      },
    });
  }
  if (t !== undefined && t.startsWith('mqtt://')) {
    const hp = t.slice('mqtt://'.length).replace(/\/.*$/, '');
    const pid = o.targetPid ?? (hp.endsWith(':1883') ? mosquittoPid() : undefined);
    group.add(pid);
    return {
      kind: 'mqtt',
      name: hp.endsWith(':1883')
        ? `mosquitto ${mosquittoVersion()} (system service)`
        : `mqtt ${hp}`,
      id: hp.endsWith(':1883') ? 'mosquitto' : 'mqtt',
      endpoints: [hp],
      http: [undefined],
      group,
      gateways: [],
      secrets,
      close: async () => undefined,
    };
  }
  if (t !== undefined) {
    group.add(o.targetPid);
    return {
      kind: 'vmcp',
      name: `vmcp gateway at ${t}`,
      id: 'gateway-external',
      endpoints: [t],
      http: [o.httpUrl],
      group,
      gateways: [],
      secrets,
      close: async () => undefined,
    };
  }
  const gateways: GatewayProc[] = [];
  let redis: RedisServer | undefined;
  let releaseRedis = (): void => undefined;
  try {
    let flags = o.gatewayFlags;
    if (o.store === 'redis') {
      // AOF with fsync always (what acks rely on); a restart may load a big AOF: up to 5 minutes.
      const r = await startRedis({ startTimeoutMs: 300_000 });
      redis = r;
      releaseRedis = owned.add({
        name: `redis-server ${r.url}`,
        tier: 'store',
        stop: () => r.stop(),
        kill: () => {
          const pid = r.pid();
          try {
            if (pid !== undefined) process.kill(pid, 'SIGKILL');
          } catch {
            // gone already
          }
          rmSync(r.dir, { recursive: true, force: true });
        },
      });
      group.add(redis.pid());
      flags = [...flags, '--store', 'redis', '--redis-url', redis.url];
    }
    for (let i = 0; i < o.shards; i++) {
      const g = new GatewayProc({ flags, cpuProfDir: o.cpuProfDir, secrets });
      gateways.push(g);
      await g.start();
      group.add(g.pid);
    }
  } catch (err) {
    for (const g of gateways) {
      await g.stop();
      g.cleanup();
    }
    await redis?.stop();
    releaseRedis();
    throw err;
  }
  const sync = o.gatewayFlags.includes('normal') ? 'normal' : 'full';
  const store = redis === undefined ? `store-sync ${sync}` : 'redis, AOF fsync always';
  const id =
    redis === undefined
      ? o.shards > 1
        ? `gateway-x${o.shards}`
        : `gateway-${sync}`
      : `gateway-x${o.shards}-redis`;
  return {
    kind: 'vmcp',
    name: `vmcp gateway ×${o.shards} (${store})`,
    id,
    endpoints: gateways.map((g) => `127.0.0.1:${g.port}`),
    http: gateways.map((g) => g.httpUrl),
    group,
    gateways,
    ...(redis === undefined ? {} : { redis }),
    secrets,
    async close() {
      for (const g of gateways) {
        await g.stop();
        g.cleanup();
      }
      await redis?.stop();
      releaseRedis();
    },
  };
}

export interface FleetSpec {
  vehicles: number;
  rate: number;
  durationMs: number;
  batch?: number;
  keepaliveS?: number;
  /** Simulator processes per shard (default: enough for ≤ 19,000 vehicles each). */
  procsPerShard?: number;
  verify?: boolean;
  commandTtlMs?: number;
  verifyBudgetMs?: number;
  ramp?: number;
  /** Extra flags of every simulator; `simFlags` (--sim-flag) only of the VMCP ones. */
  extra?: string[];
  simFlags?: string[];
  prefix?: string;
}

/** At most this many vehicles per simulator process (20,000 open files per process). */
export const MAX_PER_PROCESS = 19_000;

/** Starts the simulators for a fleet spread over the target's shards. */
export function startFleet(
  target: Target,
  spec: FleetSpec,
  simGroup: ProcGroup,
  onProgress: (p: Progress) => void,
): SimProc[] {
  const shards = target.endpoints.length;
  const perShard = split(spec.vehicles, shards);
  const sims: SimProc[] = [];
  let n = 0;
  perShard.forEach((count, shard) => {
    const procs = spec.procsPerShard ?? Math.max(1, Math.ceil(count / MAX_PER_PROCESS));
    for (const c of split(count, procs)) {
      if (c === 0) continue;
      const s: SimSpec = {
        kind: target.kind,
        target: target.endpoints[shard]!,
        vehicles: c,
        rate: spec.rate,
        durationMs: spec.durationMs,
        idPrefix: `${spec.prefix ?? 'B'}${n}-`,
        batch: spec.batch,
        keepaliveS: spec.keepaliveS,
        // Source addresses 127.0.0.1–50: past the ~28k ephemeral ports of one address.
        sources: target.kind === 'vmcp' ? DEFAULT_LOOPBACK_SOURCES : undefined,
        ramp: spec.ramp,
        verifyHttp: spec.verify === true ? target.http[shard] : undefined,
        subscriber: target.kind === 'mqtt' && n === 0,
        commandTtlMs: spec.commandTtlMs,
        verifyBudgetMs: spec.verifyBudgetMs,
        secrets: target.secrets,
        extra: [...(spec.extra ?? []), ...(target.kind === 'vmcp' ? (spec.simFlags ?? []) : [])],
      };
      const sim = new SimProc(s, onProgress);
      simGroup.add(sim.pid);
      sims.push(sim);
      n++;
    }
  });
  return sims;
}

/** The gateways' /metrics URLs (their event-loop lag is sampled every second). */
export function metricsUrls(t: Target): string[] {
  return t.http.filter((u): u is string => u !== undefined).map((u) => `${u}/metrics`);
}

/** A crash: SIGKILLs one of the target's gateways (every connection drops) and starts it again on the
 * same ports and data directory; its CPU is then read from the new process. */
export async function crashAndRestart(target: Target, gw: GatewayProc): Promise<void> {
  const oldPid = gw.pid;
  await gw.kill();
  target.group.remove(oldPid);
  await gw.start();
  target.group.add(gw.pid);
}

/** A crash of the Redis the target's gateways share (--store redis): SIGKILL, then a restart on the
 * same port and AOF, where everything acked must still be. */
export async function crashAndRestartRedis(target: Target): Promise<void> {
  const redis = target.redis;
  if (redis === undefined) throw new Error('this target has no Redis of its own');
  const oldPid = redis.pid();
  await redis.kill();
  target.group.remove(oldPid);
  await redis.restart();
  target.group.add(redis.pid());
}
