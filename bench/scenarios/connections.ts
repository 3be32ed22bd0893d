// Scenario 1, connection scale: ramp to N idle vehicles (keepalive 30 s), hold, and report the
// connect rate, the target's RSS per connection above its idle baseline, and its idle CPU.
import { LatencyHistogram } from '../../src/sim/histogram.js';
import { ProcGroup, Recorder, connectedNow, saturatedSide, sleep, waitFor } from './common.js';
import { round, withVerdict, type ScenarioContext, type ScenarioResult } from './context.js';
import { MAX_PER_PROCESS, openTarget, startFleet, metricsUrls } from './targets.js';
import { fleetFailures } from './uplink.js';

export async function connections(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const vehicles = o.vehicles ?? 19_000;
  const shards =
    o.target === undefined ? Math.max(o.gateways, Math.ceil(vehicles / MAX_PER_PROCESS)) : 1;
  const target = await openTarget({
    target: o.target,
    shards,
    gatewayFlags: o.gatewayFlags,
    store: o.store,
    targetPid: o.targetPid,
    httpUrl: o.httpUrl,
    secrets: o.secrets,
  });
  const simGroup = new ProcGroup('sim');
  const rec = new Recorder(target.group, simGroup);
  rec.metricsUrls = metricsUrls(target);
  const notes: string[] = [];
  try {
    rec.start();
    await sleep(2_000);
    const baseline = target.group.read();
    const rampS = vehicles / (o.ramp * target.endpoints.length);
    const budgetMs = Math.round(rampS * 1000 + 60_000 + o.holdMs);
    const sims = startFleet(
      target,
      {
        vehicles,
        rate: 0,
        durationMs: budgetMs + 30_000,
        keepaliveS: o.keepaliveS,
        ramp: o.ramp,
        procsPerShard: o.simsPerShard,
        simFlags: o.simFlags,
      },
      simGroup,
      rec.onProgress,
    );
    rec.sims = sims;
    const t0 = Date.now();
    const all = await waitFor(() => connectedNow(sims) >= vehicles, rampS * 1000 + 60_000);
    const connectMs = Date.now() - t0;
    if (!all)
      notes.push(`only ${connectedNow(sims)} of ${vehicles} connected within the time bound`);
    const connected = connectedNow(sims);
    const holdStart = target.group.read();
    const holdT0 = Date.now();
    await sleep(o.holdMs);
    const holdEnd = target.group.read();
    const holdMs = Date.now() - holdT0;
    const simUsage = simGroup.read();
    for (const s of sims) s.stop();
    const summaries = await Promise.all(sims.map((s) => s.done));
    rec.stop();
    const connectLatency = new LatencyHistogram();
    let refused = 0;
    let errors = 0;
    let allConnectedMs = 0;
    for (const s of summaries) {
      const c = s.connections as { refused: Record<string, number>; allConnectedMs: number | null };
      refused += Object.values(c.refused).reduce((a, b) => a + b, 0);
      errors += s.errorsTotal as number;
      allConnectedMs = Math.max(allConnectedMs, c.allConnectedMs ?? 0);
      const lat = (s.connections as { connectLatencyMs?: { p50: number } }).connectLatencyMs;
      if (lat !== undefined) connectLatency.recordMs(lat.p50);
    }
    const rssPerConnKb = connected > 0 ? (holdEnd.rssKb - baseline.rssKb) / connected : 0;
    // CPU over the ramp: from the simulators' start until all were connected (or the time bound).
    const rampCpu = rec.cpuBetween(t0, t0 + connectMs);
    const figures = {
      vehicles,
      connected,
      shards: target.endpoints.length,
      simProcesses: sims.length,
      // From the simulators' own start (after token minting) to all connected.
      connectSeconds: round((allConnectedMs || connectMs) / 1000, 1),
      connectRatePerSec: Math.round(
        connected / Math.max(0.001, (allConnectedMs || connectMs) / 1000),
      ),
      rssBaselineMb: round(baseline.rssKb / 1024),
      rssMb: round(holdEnd.rssKb / 1024),
      rssPerConnKb: round(rssPerConnKb, 2),
      idleCpuPct: round(((holdEnd.cpuMs - holdStart.cpuMs) / holdMs) * 100, 2),
      simCpuSeconds: round(simUsage.cpuMs / 1000),
      simRssMb: round(simUsage.rssKb / 1024),
      refused,
      errors,
      rampTargetCpuPct: rampCpu.targetCpuPct,
      rampSimCpuPct: rampCpu.simCpuPct,
      saturatedSide: saturatedSide(rampCpu.targetCpuPct, rampCpu.simCpuPct, {
        simProcesses: sims.length,
      }),
    };
    const result: ScenarioResult = {
      scenario: 'connections',
      target: target.name,
      targetId: target.id,
      startedAt: rec.startedAt,
      params: { vehicles, keepaliveS: o.keepaliveS, ramp: o.ramp, holdMs: o.holdMs },
      figures,
      timeline: rec.rows,
      notes,
    };
    return withVerdict(result, fleetFailures(summaries, vehicles));
  } finally {
    rec.stop();
    await target.close();
  }
}
