// Scenario 4, reconnect storm: N vehicles sending, then the gateway process is killed (SIGKILL: every
// connection drops at once) and restarted on the same store; measures the time until every vehicle is
// back and has resent its backlog, and checks against the store that nothing acked was lost.
import { ProcGroup, Recorder, connectedNow, saturatedSide, sleep, waitFor } from './common.js';
import { round, withVerdict, type ScenarioContext, type ScenarioResult } from './context.js';
import { crashAndRestart, openTarget, startFleet, metricsUrls } from './targets.js';
import { errorKinds, fleetFailures, storeCheck, sumUplink } from './uplink.js';

export async function storm(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const vehicles = o.vehicles ?? 19_000;
  const rate = o.rate ?? 0.5;
  const notes: string[] = [];
  if (o.target !== undefined)
    throw new Error('storm restarts the gateway: run it without --target');
  const target = await openTarget({
    target: undefined,
    shards: 1,
    gatewayFlags: o.gatewayFlags,
    store: o.store,
    secrets: o.secrets,
  });
  const gw = target.gateways[0]!;
  const simGroup = new ProcGroup('sim');
  const rec = new Recorder(target.group, simGroup);
  rec.metricsUrls = metricsUrls(target);
  try {
    rec.start();
    const sims = startFleet(
      target,
      {
        vehicles,
        rate,
        durationMs: 170_000,
        keepaliveS: o.keepaliveS,
        ramp: o.ramp,
        verify: o.verify,
        simFlags: o.simFlags,
      },
      simGroup,
      rec.onProgress,
    );
    rec.sims = sims;
    const up = await waitFor(() => connectedNow(sims) >= vehicles, 60_000);
    if (!up) notes.push(`only ${connectedNow(sims)} of ${vehicles} connected before the storm`);
    await sleep(10_000);
    const backlogBefore = sims.reduce(
      (a, s) => a + (s.progress[s.progress.length - 1]?.backlog ?? 0),
      0,
    );
    const killAt = Date.now();
    await crashAndRestart(target, gw);
    const readyAt = Date.now();
    // Recovered: every vehicle connected again and the outbox back to its pre-storm size.
    const recovered = await waitFor(() => {
      const latest = sims.map((s) => s.progress[s.progress.length - 1]);
      const connected = latest.reduce((a, p) => a + (p?.connected ?? 0), 0);
      const backlog = latest.reduce((a, p) => a + (p?.backlog ?? 0), 0);
      return (
        (latest[0]?.at ?? 0) > readyAt &&
        connected >= vehicles &&
        backlog <= backlogBefore * 1.5 + 50
      );
    }, 90_000);
    const recoveredAt = Date.now();
    if (!recovered) notes.push('not recovered within 90 s');
    await sleep(5_000);
    for (const s of sims) s.stop();
    const summaries = await Promise.all(sims.map((s) => s.done));
    rec.stop();
    let lastReconnect = 0;
    let lastResync = 0;
    let busy = 0;
    let reconnects = 0;
    for (const s of summaries) {
      const c = s.connections as {
        lastReconnectAt: number;
        lastResyncAt: number;
        refused: Record<string, number>;
        reconnects: number;
      };
      lastReconnect = Math.max(lastReconnect, c.lastReconnectAt);
      lastResync = Math.max(lastResync, c.lastResyncAt);
      busy += c.refused.SERVER_BUSY ?? 0;
      reconnects += c.reconnects;
    }
    const check = storeCheck(summaries);
    // CPU over the storm itself: from the kill until the fleet was back.
    const stormCpu = rec.cpuBetween(killAt, recoveredAt);
    const figures = {
      vehicles,
      ratePerVehicle: rate,
      restartSeconds: round((readyAt - killAt) / 1000, 2),
      allBackSeconds: round((lastReconnect - killAt) / 1000, 2),
      resentSeconds: round((Math.max(lastResync, lastReconnect) - killAt) / 1000, 2),
      recoveredByProgressSeconds: round((recoveredAt - killAt) / 1000, 1),
      recovered,
      reconnects,
      serverBusyRefusals: busy,
      sent: sumUplink(summaries, 'sent'),
      acked: sumUplink(summaries, 'stored'),
      consumedOnResume: sumUplink(summaries, 'storedOnResume'),
      resent: sumUplink(summaries, 'resent'),
      store: check,
      errors: summaries.reduce((a, s) => a + (s.errorsTotal as number), 0),
      errorKinds: errorKinds(summaries),
      stormTargetCpuPct: stormCpu.targetCpuPct,
      stormSimCpuPct: stormCpu.simCpuPct,
      saturatedSide: saturatedSide(stormCpu.targetCpuPct, stormCpu.simCpuPct, {
        simProcesses: sims.length,
      }),
    };
    if (!check.checked) notes.push('store not checked (--no-verify)');
    else if (!check.complete)
      notes.push(`store check incomplete: ${check.unchecked} vehicles not checked`);
    notes.push(
      `gateway printed ${gw.outputLines} lines; last: ${gw.outputTail.slice(-3).join(' | ').slice(0, 600)}`,
    );
    return withVerdict(
      {
        scenario: 'storm',
        target: target.name,
        targetId: target.id,
        startedAt: rec.startedAt,
        params: {
          vehicles,
          rate,
          kill: 'SIGKILL',
          keepaliveS: o.keepaliveS,
          storeSync: o.storeSync,
        },
        figures,
        timeline: rec.rows,
        notes,
      },
      fleetFailures(summaries, vehicles, check),
    );
  } finally {
    rec.stop();
    await target.close();
  }
}
