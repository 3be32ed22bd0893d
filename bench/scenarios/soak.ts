// Soak: a long run of uplink and downlink together, with crashes at an interval if asked (SIGKILL, then a
// restart on the same data: each gateway in turn, then the Redis they share with --store redis). At the
// end it checks the guarantees over the whole run: nothing acked lost, no disorder (the store check),
// every command the API accepted reached its result; and it samples each gateway's memory every 10 s
// to show whether the heap grows while the fleet stays the same (a leak).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ProcGroup, Recorder, connectedNow, sleep, waitFor } from './common.js';
import { round, type ScenarioContext, type ScenarioResult } from './context.js';
import {
  crashAndRestart,
  crashAndRestartRedis,
  openTarget,
  startFleet,
  metricsUrls,
} from './targets.js';
import { errorKinds, storeCheck, sumUplink } from './uplink.js';

/** One memory sample of a gateway process. A segment is one lifetime of one gateway: "g0.0" is gateway 0
 * until its first restart, "g0.1" after it. */
export interface MemorySample {
  /** ms since the segment's gateway became ready. */
  sinceStartMs: number;
  segment: string;
  heapUsedMb: number;
  rssMb: number;
}

export interface SegmentTrend {
  segment: string;
  /** Minutes covered by the windows compared (after the warm-up). */
  minutes: number;
  /** Least heap in use in the first and in the last window: the live heap, near enough, after a GC. */
  firstHeapMb: number;
  lastHeapMb: number;
  heapGrowthMbPerHour: number;
  firstRssMb: number;
  lastRssMb: number;
  maxRssMb: number;
}

/**
 * The heap's trend per segment. Heap in use saw-tooths between collections, so each window keeps its
 * least value (what was live at the window's lowest point); the trend compares the first and the last
 * window after the warm-up. Segments too short for two windows are left out.
 */
export function memoryTrend(
  samples: readonly MemorySample[],
  o: { warmupMs: number; windowMs: number },
): SegmentTrend[] {
  const bySegment = new Map<string, MemorySample[]>();
  for (const s of samples) {
    if (s.sinceStartMs < o.warmupMs) continue;
    const list = bySegment.get(s.segment) ?? [];
    list.push(s);
    bySegment.set(s.segment, list);
  }
  const out: SegmentTrend[] = [];
  for (const [segment, list] of bySegment) {
    const windows = new Map<number, MemorySample[]>();
    for (const s of list) {
      const w = Math.floor((s.sinceStartMs - o.warmupMs) / o.windowMs);
      const ws = windows.get(w) ?? [];
      ws.push(s);
      windows.set(w, ws);
    }
    const keys = [...windows.keys()].sort((a, b) => a - b);
    if (keys.length < 2) continue;
    const first = windows.get(keys[0]!)!;
    const last = windows.get(keys[keys.length - 1]!)!;
    const minOf = (ws: MemorySample[], k: 'heapUsedMb' | 'rssMb'): number =>
      Math.min(...ws.map((s) => s[k]));
    const hours = ((keys[keys.length - 1]! - keys[0]!) * o.windowMs) / 3_600_000;
    const firstHeapMb = minOf(first, 'heapUsedMb');
    const lastHeapMb = minOf(last, 'heapUsedMb');
    out.push({
      segment,
      minutes: round(hours * 60, 1),
      firstHeapMb: round(firstHeapMb),
      lastHeapMb: round(lastHeapMb),
      heapGrowthMbPerHour: round((lastHeapMb - firstHeapMb) / hours),
      firstRssMb: round(minOf(first, 'rssMb')),
      lastRssMb: round(minOf(last, 'rssMb')),
      maxRssMb: round(Math.max(...list.map((s) => s.rssMb))),
    });
  }
  return out;
}

/** Heap growth above this (MB per hour, a segment of ≥ 10 minutes) fails the soak. */
export const HEAP_GROWTH_LIMIT_MB_PER_HOUR = 20;

/** The soak's pass/fail reasons, from its figures (empty: passed). */
export function soakFailures(f: {
  lostAcked: number;
  disorder: number;
  storeChecked: boolean;
  /** Vehicles the store check could not finish (its time budget, HTTP errors). */
  storeUnchecked: number;
  commandsNotSucceeded: number;
  trends: readonly SegmentTrend[];
  recovered: boolean;
}): string[] {
  const out: string[] = [];
  if (!f.storeChecked) out.push('store not checked');
  else if (f.storeUnchecked > 0)
    out.push(`store check incomplete: ${f.storeUnchecked} vehicles not checked`);
  if (f.lostAcked > 0) out.push(`${f.lostAcked} acked messages missing from the store`);
  if (f.disorder > 0) out.push(`${f.disorder} records out of order`);
  if (f.commandsNotSucceeded > 0)
    out.push(`${f.commandsNotSucceeded} accepted commands without a succeeded result`);
  if (!f.recovered) out.push('the fleet did not come back after a restart');
  for (const t of f.trends)
    if (t.minutes >= 10 && t.heapGrowthMbPerHour > HEAP_GROWTH_LIMIT_MB_PER_HOUR)
      out.push(
        `heap grew ${t.heapGrowthMbPerHour} MB/h in segment ${t.segment} (limit ${HEAP_GROWTH_LIMIT_MB_PER_HOUR})`,
      );
  return out;
}

const COMMAND_TTL_MS = 15 * 60_000;
const SAMPLE_MS = 10_000;

function metricValue(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
}

/** Whether every gateway answers /readyz 200 (its store reachable again). */
async function allReady(gws: readonly { httpUrl: string }[]): Promise<boolean> {
  try {
    const codes = await Promise.all(
      gws.map(async (g) => {
        const res = await fetch(`${g.httpUrl}/readyz`);
        await res.arrayBuffer();
        return res.status;
      }),
    );
    return codes.every((c) => c === 200);
  } catch {
    return false;
  }
}

/** Bytes of the files under a data directory (SQLite and its WAL; Redis's appendonlydir/). */
function dataDirBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, f.name);
    try {
      if (f.isDirectory()) n += dataDirBytes(path);
      else if (f.isFile()) n += statSync(path).size;
    } catch {
      // removed meanwhile (a checkpoint, an AOF rewrite)
    }
  }
  return n;
}

export async function soak(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const vehicles = o.vehicles ?? 2_000;
  const rate = o.rate ?? 1;
  const durationMs = o.durationMs ?? 30 * 60_000;
  const killEveryMs = o.killEveryMs ?? 0;
  const commandRate = o.commandRate ?? 10;
  const notes: string[] = [];
  if (o.target !== undefined)
    throw new Error('soak starts its own gateway (it checks its memory and may restart it)');
  const target = await openTarget({
    target: undefined,
    shards: o.gateways,
    gatewayFlags: o.gatewayFlags,
    store: o.store,
    secrets: o.secrets,
  });
  const gws = target.gateways;
  const redis = target.redis;
  const simGroup = new ProcGroup('sim');
  simGroup.add(process.pid); // the API client (this process) is on the simulator's side
  const rec = new Recorder(target.group, simGroup);
  rec.metricsUrls = metricsUrls(target);
  const memory: MemorySample[] = [];
  const disk: { t: number; mb: number }[] = [];
  const lifetimes = gws.map(() => ({ n: 0, since: Date.now() })); // restarts and last start, per gateway
  const dataDirs = [...gws.map((g) => g.dataDir), ...(redis === undefined ? [] : [redis.dir])];
  let sampler: NodeJS.Timeout | undefined;
  const startedAt = Date.now();
  try {
    rec.start();
    sampler = setInterval(() => {
      gws.forEach((g, i) => {
        const life = lifetimes[i]!;
        const segment = `g${i}.${life.n}`;
        const since = Date.now() - life.since;
        fetch(`${g.httpUrl}/metrics`)
          .then((res) => res.text())
          .then((text) => {
            const heap = metricValue(text, 'nodejs_heap_size_used_bytes');
            const rss = metricValue(text, 'process_resident_memory_bytes');
            // A sample that straddles a restart belongs to neither lifetime.
            if (heap === undefined || rss === undefined || segment !== `g${i}.${life.n}`) return;
            memory.push({
              sinceStartMs: since,
              segment,
              heapUsedMb: heap / 2 ** 20,
              rssMb: rss / 2 ** 20,
            });
          })
          .catch(() => undefined); // down for a restart
      });
      const bytes = dataDirs.reduce((a, d) => a + dataDirBytes(d), 0);
      disk.push({ t: round((Date.now() - startedAt) / 1000), mb: bytes / 2 ** 20 });
    }, SAMPLE_MS);
    const sims = startFleet(
      target,
      {
        vehicles,
        rate,
        durationMs: durationMs + 10 * 60_000, // stopped by us; the margin covers the final checks
        keepaliveS: o.keepaliveS,
        ramp: o.ramp,
        verify: o.verify,
        commandTtlMs: COMMAND_TTL_MS,
        verifyBudgetMs: o.verifyBudgetMs ?? 20 * 60_000,
        simFlags: o.simFlags,
      },
      simGroup,
      rec.onProgress,
    );
    rec.sims = sims;
    const up = await waitFor(() => connectedNow(sims) >= vehicles, 120_000);
    if (!up) notes.push(`only ${connectedNow(sims)} of ${vehicles} connected after 2 minutes`);

    // Commands at commandRate/s to vehicles spread over the fleet, for the whole run.
    const perSim = sims.map((s) => s.spec.vehicles);
    // Each vehicle's commands go to its own gateway's API (with separate SQLite stores, only it knows them).
    const apiOf = sims.map((s) => gws[target.endpoints.indexOf(s.spec.target)]!);
    /** Accepted command ids (202), in order, each with the gateway that accepted it. */
    const accepted = new Map<string, (typeof gws)[number]>();
    let refused = 0;
    let posts = 0;
    let inflight = 0;
    const post = (): void => {
      const simIdx = posts % sims.length;
      const n = Math.floor(posts / sims.length) % perSim[simIdx]!;
      const vehicle = `B${simIdx}-${String(n).padStart(6, '0')}`;
      posts++;
      inflight++;
      const api = apiOf[simIdx]!;
      fetch(`${api.httpUrl}/api/v1/vehicles/${vehicle}/commands`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${target.secrets.adminToken}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ name: 'door.lock', params: { n: posts }, ttlMs: COMMAND_TTL_MS }),
      })
        .then(async (res) => {
          const body = (await res.json()) as { id?: string };
          if (res.status === 202 && body.id !== undefined) accepted.set(body.id, api);
          else refused++;
        })
        .catch(() => refused++) // the gateway is restarting: not accepted, so nothing to check
        .finally(() => inflight--);
    };

    // Crashes go round: each gateway in turn, then the Redis they share (--store redis).
    const victims = [...gws.map((_, i) => i), ...(redis === undefined ? [] : ['redis' as const])];
    const kills: {
      victim: string;
      atSeconds: number;
      restartSeconds: number;
      allBackSeconds: number | null;
    }[] = [];
    let recovered = true;
    const runStart = Date.now();
    let nextKill = killEveryMs > 0 ? runStart + killEveryMs : Infinity;
    let nextLog = runStart + 60_000;
    let due = 0;
    while (Date.now() - runStart < durationMs) {
      const elapsed = Date.now() - runStart;
      const want = Math.floor((elapsed / 1000) * commandRate);
      while (due < want && inflight < 256) {
        post();
        due++;
      }
      if (Date.now() >= nextKill && durationMs - elapsed > 60_000) {
        const victim = victims[kills.length % victims.length]!;
        const killAt = Date.now();
        if (victim === 'redis') await crashAndRestartRedis(target);
        else {
          await crashAndRestart(target, gws[victim]!);
          lifetimes[victim] = { n: lifetimes[victim]!.n + 1, since: Date.now() };
        }
        const readyAt = Date.now();
        let ready = false;
        const back = await waitFor(() => {
          if (!ready) {
            void allReady(gws).then((r) => (ready = r));
            return false;
          }
          const latest = sims.map((s) => s.progress[s.progress.length - 1]);
          return (
            latest.every((p) => (p?.at ?? 0) > readyAt) &&
            latest.reduce((a, p) => a + (p?.connected ?? 0), 0) >= vehicles
          );
        }, 120_000);
        if (!back) recovered = false;
        kills.push({
          victim: victim === 'redis' ? 'redis' : `gateway ${victim}`,
          atSeconds: round((killAt - startedAt) / 1000),
          restartSeconds: round((readyAt - killAt) / 1000, 2),
          allBackSeconds: back ? round((Date.now() - killAt) / 1000, 1) : null,
        });
        ctx.emit({ type: 'soak-kill', ...kills[kills.length - 1]! });
        nextKill = Date.now() + killEveryMs;
      }
      if (Date.now() >= nextLog) {
        nextLog += 60_000;
        const m = memory[memory.length - 1];
        const row = rec.rows[rec.rows.length - 1];
        ctx.emit({
          type: 'soak-progress',
          minutes: round((Date.now() - runStart) / 60_000),
          connected: connectedNow(sims),
          storedPerSec: row?.storedPerSec,
          p99: row?.p99,
          commandsAccepted: accepted.size,
          commandsRefused: refused,
          heapUsedMb: m === undefined ? null : round(m.heapUsedMb),
          rssMb: m === undefined ? null : round(m.rssMb),
          dataMb: round(disk[disk.length - 1]?.mb ?? 0),
          kills: kills.length,
        });
      }
      await sleep(50);
    }
    await waitFor(() => inflight === 0, 10_000);

    // Every accepted command must reach its result (the vehicles answer SUCCEEDED); bounded wait.
    const statuses = new Map<string, string>();
    const unresolved = (): string[] =>
      [...accepted.keys()].filter((id) => {
        const s = statuses.get(id);
        return s === undefined || s === 'pending' || s === 'delivered';
      });
    const settleUntil = Date.now() + 120_000;
    for (;;) {
      const ids = unresolved();
      for (let i = 0; i < ids.length; i += 32)
        await Promise.all(
          ids.slice(i, i + 32).map(async (id) => {
            try {
              const r = await accepted.get(id)!.api('GET', `/api/v1/commands/${id}`);
              statuses.set(id, r.status === 200 ? (r.body as { status: string }).status : 'lost');
            } catch {
              // retried next round
            }
          }),
        );
      if (unresolved().length === 0 || Date.now() > settleUntil) break;
      await sleep(2_000);
    }
    const byStatus: Record<string, number> = {};
    for (const id of accepted.keys()) {
      const s = statuses.get(id) ?? 'unknown';
      byStatus[s] = (byStatus[s] ?? 0) + 1;
    }

    for (const s of sims) s.stop();
    const summaries = await Promise.all(sims.map((s) => s.done));
    rec.stop();
    clearInterval(sampler);
    const check = storeCheck(summaries);
    const trends = memoryTrend(memory, { warmupMs: 120_000, windowMs: 5 * 60_000 });
    const failures = soakFailures({
      lostAcked: check.lostAcked,
      disorder: check.disorder,
      storeChecked: check.checked,
      storeUnchecked: check.unchecked,
      commandsNotSucceeded: accepted.size - (byStatus.succeeded ?? 0),
      trends,
      recovered,
    });
    const figures = {
      vehicles,
      ratePerVehicle: rate,
      minutes: round(durationMs / 60_000),
      passed: failures.length === 0,
      failures,
      sent: sumUplink(summaries, 'sent'),
      acked: sumUplink(summaries, 'stored'),
      resent: sumUplink(summaries, 'resent'),
      store: check,
      kills,
      commands: { posted: posts, accepted: accepted.size, refused, byStatus },
      commandsReceivedByVehicles: summaries.reduce(
        (a, s) => a + (s.downlink as { commands: number }).commands,
        0,
      ),
      memory: trends,
      dataMbFirstLast: [round(disk[0]?.mb ?? 0), round(disk[disk.length - 1]?.mb ?? 0)],
      errors: summaries.reduce((a, s) => a + (s.errorsTotal as number), 0),
      errorKinds: errorKinds(summaries),
    };
    notes.push(
      `memory windows: 5 min after a 2 min warm-up, least heap in use per window; a segment of ≥ 10 min growing over ${HEAP_GROWTH_LIMIT_MB_PER_HOUR} MB/h fails`,
    );
    return {
      scenario: 'soak',
      target: target.name,
      targetId: target.id,
      startedAt: rec.startedAt,
      params: {
        vehicles,
        gateways: gws.length,
        store: redis === undefined ? 'sqlite' : 'redis',
        rate,
        durationMs,
        killEveryMs,
        commandRate,
        commandTtlMs: COMMAND_TTL_MS,
        storeSync: o.storeSync,
      },
      figures,
      timeline: rec.rows,
      steps: trends as unknown as Record<string, unknown>[],
      notes,
      failed: failures.length > 0,
      failures,
    };
  } finally {
    clearInterval(sampler);
    rec.stop();
    await target.close();
  }
}
