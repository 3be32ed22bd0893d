// Soak: a long run of uplink and downlink together, with the gateway killed (SIGKILL) and restarted at
// an interval if asked. At the end it checks the guarantees over the whole run: nothing acked lost, no
// disorder (the store check), every command the API accepted reached its result; and it samples the
// gateway's memory every 10 s to show whether the heap grows while the fleet stays the same (a leak).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_TOKEN, ProcGroup, Recorder, connectedNow, sleep, waitFor } from './common.js';
import { round, type ScenarioContext, type ScenarioResult } from './context.js';
import { crashAndRestart, openTarget, startFleet, metricsUrls } from './targets.js';
import { errorKinds, storeCheck, sumUplink } from './uplink.js';

/** One memory sample of a gateway process. `segment` counts restarts (0 until the first kill). */
export interface MemorySample {
  /** ms since the segment's gateway became ready. */
  sinceStartMs: number;
  segment: number;
  heapUsedMb: number;
  rssMb: number;
}

export interface SegmentTrend {
  segment: number;
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
  const bySegment = new Map<number, MemorySample[]>();
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
  return out.sort((a, b) => a.segment - b.segment);
}

/** Heap growth above this (MB per hour, a segment of ≥ 10 minutes) fails the soak. */
export const HEAP_GROWTH_LIMIT_MB_PER_HOUR = 20;

/** The soak's pass/fail reasons, from its figures (empty: passed). */
export function soakFailures(f: {
  lostAcked: number;
  disorder: number;
  storeChecked: boolean;
  commandsNotSucceeded: number;
  trends: readonly SegmentTrend[];
  recovered: boolean;
}): string[] {
  const out: string[] = [];
  if (!f.storeChecked) out.push('store not checked');
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

/** Bytes of the files in the gateway's data directory (store, WAL). */
function dataDirBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) {
    try {
      const st = statSync(join(dir, f));
      if (st.isFile()) n += st.size;
    } catch {
      // removed meanwhile (a checkpoint)
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
  const target = await openTarget({ target: undefined, shards: 1, gatewayFlags: o.gatewayFlags });
  const gw = target.gateways[0]!;
  const http = target.http[0]!;
  const simGroup = new ProcGroup('sim');
  simGroup.add(process.pid); // the API client (this process) is on the simulator's side
  const rec = new Recorder(target.group, simGroup);
  rec.metricsUrls = metricsUrls(target);
  const memory: MemorySample[] = [];
  const disk: { t: number; mb: number }[] = [];
  let segment = 0;
  let segmentStart = Date.now();
  let sampler: NodeJS.Timeout | undefined;
  const startedAt = Date.now();
  try {
    rec.start();
    sampler = setInterval(() => {
      const seg = segment;
      const since = Date.now() - segmentStart;
      fetch(`${http}/metrics`)
        .then((res) => res.text())
        .then((text) => {
          const heap = metricValue(text, 'nodejs_heap_size_used_bytes');
          const rss = metricValue(text, 'process_resident_memory_bytes');
          if (heap === undefined || rss === undefined || seg !== segment) return;
          memory.push({
            sinceStartMs: since,
            segment: seg,
            heapUsedMb: heap / 2 ** 20,
            rssMb: rss / 2 ** 20,
          });
        })
        .catch(() => undefined); // down for a restart
      disk.push({
        t: round((Date.now() - startedAt) / 1000),
        mb: dataDirBytes(gw.dataDir) / 2 ** 20,
      });
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
      },
      simGroup,
      rec.onProgress,
    );
    rec.sims = sims;
    const up = await waitFor(() => connectedNow(sims) >= vehicles, 120_000);
    if (!up) notes.push(`only ${connectedNow(sims)} of ${vehicles} connected after 2 minutes`);

    // Commands at commandRate/s to vehicles spread over the fleet, for the whole run.
    const perSim = sims.map((s) => s.spec.vehicles);
    const accepted: string[] = [];
    let refused = 0;
    let posts = 0;
    let inflight = 0;
    const post = (): void => {
      const simIdx = posts % sims.length;
      const n = Math.floor(posts / sims.length) % perSim[simIdx]!;
      const vehicle = `B${simIdx}-${String(n).padStart(6, '0')}`;
      posts++;
      inflight++;
      fetch(`${http}/api/v1/vehicles/${vehicle}/commands`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'door.lock', params: { n: posts }, ttlMs: COMMAND_TTL_MS }),
      })
        .then(async (res) => {
          const body = (await res.json()) as { id?: string };
          if (res.status === 202 && body.id !== undefined) accepted.push(body.id);
          else refused++;
        })
        .catch(() => refused++) // the gateway is restarting: not accepted, so nothing to check
        .finally(() => inflight--);
    };

    const kills: { atSeconds: number; restartSeconds: number; allBackSeconds: number | null }[] =
      [];
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
        const killAt = Date.now();
        await crashAndRestart(target, gw);
        segment++;
        segmentStart = Date.now();
        const readyAt = Date.now();
        const back = await waitFor(() => {
          const latest = sims.map((s) => s.progress[s.progress.length - 1]);
          return (
            latest.every((p) => (p?.at ?? 0) > readyAt) &&
            latest.reduce((a, p) => a + (p?.connected ?? 0), 0) >= vehicles
          );
        }, 90_000);
        if (!back) recovered = false;
        kills.push({
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
          commandsAccepted: accepted.length,
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
      accepted.filter((id) => {
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
              const r = await gw.api('GET', `/api/v1/commands/${id}`);
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
    for (const id of accepted) {
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
      commandsNotSucceeded: accepted.length - (byStatus.succeeded ?? 0),
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
      commands: { posted: posts, accepted: accepted.length, refused, byStatus },
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
    };
  } finally {
    clearInterval(sampler);
    rec.stop();
    await target.close();
  }
}
