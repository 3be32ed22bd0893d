// Scenario 3, saturation: a fixed fleet whose per-vehicle rate rises step by step until p99 of
// send → ack passes 100 ms or throughput stops rising. Reports the maximum sustainable msgs/s (or, when
// no step met a stop criterion, that the limit was not reached: at least the last step's) and, per
// step, which side was busy (target CPU vs simulator CPU on the shared cores).
import {
  ProcGroup,
  Recorder,
  connectedNow,
  saturatedSide,
  sleep,
  waitFor,
  windowLatency,
  windowRate,
} from './common.js';
import { round, withVerdict, type ScenarioContext, type ScenarioResult } from './context.js';
import { openTarget, startFleet, metricsUrls } from './targets.js';
import { fleetFailures, storeCheck, sumUplink } from './uplink.js';

const P99_LIMIT_MS = 100;
/** Hard bound of one saturation run. */
const MAX_RUN_MS = 170_000;

export async function saturation(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const vehicles = o.vehicles ?? 1_000;
  const steps = o.steps ?? [5, 10, 20, 30, 40, 50, 60, 80, 100];
  const stepMs = o.stepMs;
  const notes: string[] = [];
  // The per-vehicle limit of 3.2 (50/s) would shed the load before the gateway saturates: raise it.
  const maxRate = Math.max(...steps);
  const flags = [
    ...o.gatewayFlags,
    '--uplink-rate-per-sec',
    String(Math.ceil(maxRate * 2)),
    '--uplink-burst',
    String(Math.ceil(maxRate * 4)),
  ];
  const target = await openTarget({
    target: o.target,
    shards: 1,
    gatewayFlags: flags,
    store: o.store,
    targetPid: o.targetPid,
    httpUrl: o.httpUrl,
    secrets: o.secrets,
    cpuProfDir: o.cpuProf ? ctx.profileDir : undefined,
  });
  if (target.kind === 'vmcp' && o.target === undefined)
    notes.push(
      `gateway per-vehicle uplink limit raised to ${Math.ceil(maxRate * 2)}/s (burst ${Math.ceil(maxRate * 4)})`,
    );
  const simGroup = new ProcGroup('sim');
  const rec = new Recorder(target.group, simGroup);
  rec.metricsUrls = metricsUrls(target);
  const stepRows: Record<string, unknown>[] = [];
  try {
    rec.start();
    const sims = startFleet(
      target,
      {
        vehicles,
        rate: steps[0]!,
        durationMs: MAX_RUN_MS,
        batch: o.batch,
        keepaliveS: o.keepaliveS,
        ramp: o.ramp,
        // Two simulator processes: one per core, so the simulator is not limited to one.
        procsPerShard: o.simsPerShard ?? 2,
        verify: o.verify && target.kind === 'vmcp',
        simFlags: o.simFlags,
      },
      simGroup,
      rec.onProgress,
    );
    rec.sims = sims;
    const runStart = Date.now();
    await waitFor(() => connectedNow(sims) >= vehicles, 60_000);
    let best = 0;
    let prevAcked = 0;
    /** Whether a step met a stop criterion (p99 over the limit, throughput no longer rising). */
    let limitReached = false;
    for (const [i, rate] of steps.entries()) {
      if (Date.now() - runStart + stepMs > MAX_RUN_MS - 20_000) {
        notes.push(`stopped before ${rate}/s per vehicle: time bound`);
        break;
      }
      for (const s of sims) s.setRate(rate);
      const stepStart = Date.now();
      await sleep(Math.min(3_000, stepMs / 3));
      const from = Date.now();
      const cpu0 = target.group.read();
      const sim0 = simGroup.read();
      await sleep(stepMs - (from - stepStart));
      const to = Date.now();
      const cpu1 = target.group.read();
      const sim1 = simGroup.read();
      const ms = to - from;
      const ackedPerSec = Math.round(windowRate(sims, from, to, 'stored'));
      const acked = (ackedPerSec * ms) / 1000;
      const lat = windowLatency(sims, from, to).summary();
      const row: Record<string, unknown> = {
        step: i + 1,
        ratePerVehicle: rate,
        offeredPerSec: vehicles * rate,
        ackedPerSec,
        p50: lat.p50,
        p99: lat.p99,
        p999: lat.p999,
        max: lat.max,
        targetCpuPct: round(((cpu1.cpuMs - cpu0.cpuMs) / ms) * 100),
        simCpuPct: round(((sim1.cpuMs - sim0.cpuMs) / ms) * 100),
        cpuUsPerAck: acked > 0 ? round(((cpu1.cpuMs - cpu0.cpuMs) * 1000) / acked, 2) : null,
        targetRssMb: round(cpu1.rssKb / 1024),
        ...rec.loopMax(from, to),
      };
      if (target.kind === 'mqtt')
        row.deliveredPerSec = Math.round(windowRate(sims, from, to, 'delivered'));
      stepRows.push(row);
      ctx.emit({ type: 'step', scenario: 'saturation', target: target.id, ...row });
      const ok = lat.p99 <= P99_LIMIT_MS && lat.count > 0;
      if (ok && ackedPerSec > best) best = ackedPerSec;
      if (!ok) {
        limitReached = true;
        notes.push(
          `step ${i + 1} (${vehicles * rate}/s offered): p99 ${lat.p99} ms > ${P99_LIMIT_MS} ms`,
        );
        break;
      }
      if (i > 0 && ackedPerSec < prevAcked * 1.03) {
        limitReached = true;
        notes.push(`step ${i + 1}: throughput stopped rising (${ackedPerSec}/s vs ${prevAcked}/s)`);
        break;
      }
      prevAcked = ackedPerSec;
    }
    for (const s of sims) s.stop();
    const summaries = await Promise.all(sims.map((s) => s.done));
    rec.stop();
    const last = stepRows[stepRows.length - 1] ?? {};
    if (!limitReached && stepRows.length > 0)
      notes.push(
        `limit not reached: the last step (${Number(last.offeredPerSec)}/s offered) still had p99 ≤ ${P99_LIMIT_MS} ms ` +
          `and rising throughput, so the maximum sustainable is at least ${best}/s; give higher --steps`,
      );
    const figures: Record<string, unknown> = {
      vehicles,
      batch: o.batch,
      // The maximum only when a step met a stop criterion; else the last step's is a lower bound.
      limitReached,
      maxSustainablePerSec: limitReached ? best : null,
      atLeastPerSec: best,
      lastStep: last,
      throttled: sumUplink(summaries, 'throttled'),
      errors: summaries.reduce((a, s) => a + (s.errorsTotal as number), 0),
      saturatedSide: saturatedSide(Number(last.targetCpuPct ?? 0), Number(last.simCpuPct ?? 0), {
        simProcesses: sims.length,
      }),
    };
    const check = target.kind === 'vmcp' ? storeCheck(summaries) : undefined;
    if (check !== undefined) figures.store = check;
    return withVerdict(
      {
        scenario: 'saturation',
        target: target.name,
        targetId: target.id,
        startedAt: rec.startedAt,
        params: { vehicles, steps, stepMs, batch: o.batch, storeSync: o.storeSync },
        figures,
        timeline: rec.rows,
        steps: stepRows,
        notes,
      },
      fleetFailures(summaries, vehicles, check),
    );
  } finally {
    rec.stop();
    await target.close();
  }
}
