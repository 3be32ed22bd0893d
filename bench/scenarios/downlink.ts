// Scenario 5, downlink: idle vehicles, commands posted through the API at rising rates; measures
// commands/s delivered and acked, and POST → succeeded latency (from the event stream), per step and
// per second in the timeline (commandsPerSec from the vehicles, commandsAckedPerSec and cmdP50/cmdP99
// from the stream).
import { LatencyHistogram } from '../../src/sim/histogram.js';
import { ProcGroup, Recorder, connectedNow, saturatedSide, sleep, waitFor } from './common.js';
import { round, withVerdict, type ScenarioContext, type ScenarioResult } from './context.js';
import { openTarget, startFleet, metricsUrls } from './targets.js';
import { fleetFailures } from './uplink.js';

const TTL_MS = 600_000;

/** Follows GET /api/v1/stream and reports each command event (id, status) as it arrives. */
async function follow(
  httpUrl: string,
  adminToken: string,
  onCommand: (id: string, status: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const res = await fetch(`${httpUrl}/api/v1/stream`, {
    headers: { authorization: `Bearer ${adminToken}` },
    signal,
  });
  if (res.body === null) return;
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!ev.startsWith('event: command')) continue;
        const data = ev.slice(ev.indexOf('data: ') + 6);
        const c = JSON.parse(data) as { id: string; status: string };
        onCommand(c.id, c.status);
      }
    }
  } catch {
    // aborted
  }
}

export async function downlink(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const vehicles = o.vehicles ?? 1_000;
  const rates = o.commandRates ?? [250, 500, 1000, 2000];
  const stepMs = o.stepMs;
  if (o.target !== undefined && o.httpUrl === undefined)
    throw new Error('downlink against --target needs --http');
  const target = await openTarget({
    target: o.target,
    shards: 1,
    gatewayFlags: o.gatewayFlags,
    store: o.store,
    targetPid: o.targetPid,
    httpUrl: o.httpUrl,
    secrets: o.secrets,
  });
  if (target.kind !== 'vmcp') {
    await target.close();
    throw new Error('downlink needs a VMCP gateway');
  }
  const http = target.http[0]!;
  const adminToken = target.secrets.adminToken;
  const simGroup = new ProcGroup('sim');
  simGroup.add(process.pid); // the API client (this process) is on the simulator's side too
  const rec = new Recorder(target.group, simGroup);
  rec.metricsUrls = metricsUrls(target);
  const notes: string[] = [];
  const abort = new AbortController();
  try {
    rec.start();
    const sims = startFleet(
      target,
      {
        vehicles,
        rate: 0,
        durationMs: 170_000,
        keepaliveS: o.keepaliveS,
        ramp: o.ramp,
        commandTtlMs: TTL_MS,
        simFlags: o.simFlags,
      },
      simGroup,
      rec.onProgress,
    );
    rec.sims = sims;
    await waitFor(() => connectedNow(sims) >= vehicles, 60_000);
    const posted = new Map<string, number>();
    /** Events that beat their POST's response (the vehicle can answer before fetch resolves). */
    const early = new Map<string, { status: string; at: number }[]>();
    const e2e = new LatencyHistogram();
    let succeeded = 0;
    let delivered = 0;
    let lastSucceededAt = 0;
    void follow(
      http,
      adminToken,
      (id, status) => {
        const t0 = posted.get(id);
        if (t0 === undefined) {
          if (status === 'delivered' || status === 'succeeded') {
            const list = early.get(id) ?? [];
            list.push({ status, at: performance.now() });
            early.set(id, list);
          }
          return;
        }
        if (status === 'delivered') delivered++;
        else if (status === 'succeeded') {
          succeeded++;
          lastSucceededAt = performance.now();
          e2e.recordMs(lastSucceededAt - t0);
          rec.commandSucceeded(lastSucceededAt - t0);
          posted.delete(id);
        }
      },
      abort.signal,
    );
    await sleep(500);
    const steps: Record<string, unknown>[] = [];
    let n = 0;
    for (const rate of rates) {
      const postLat = new LatencyHistogram();
      const s0 = succeeded;
      const d0 = delivered;
      const cpu0 = target.group.read();
      const sim0 = simGroup.read();
      const t0 = performance.now();
      let inflight = 0;
      let sentCount = 0;
      let failures = 0;
      e2e.reset();
      // Posts at `rate`/s for stepMs, at most 256 requests in flight.
      while (performance.now() - t0 < stepMs) {
        const due = Math.floor(((performance.now() - t0) / 1000) * rate);
        while (sentCount < due && inflight < 256) {
          const vehicle = `B${n % sims.length}-${String(Math.floor(n / sims.length) % Math.ceil(vehicles / sims.length)).padStart(6, '0')}`;
          n++;
          sentCount++;
          inflight++;
          const start = performance.now();
          fetch(`${http}/api/v1/vehicles/${vehicle}/commands`, {
            method: 'POST',
            headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
            body: JSON.stringify({ name: 'door.lock', params: { n }, ttlMs: TTL_MS }),
          })
            .then(async (res) => {
              const body = (await res.json()) as { id?: string };
              postLat.recordMs(performance.now() - start);
              if (res.status === 202 && body.id !== undefined) {
                const seen = early.get(body.id);
                early.delete(body.id);
                let done = false;
                for (const e of seen ?? []) {
                  if (e.status === 'delivered') delivered++;
                  else {
                    succeeded++;
                    lastSucceededAt = Math.max(lastSucceededAt, e.at);
                    e2e.recordMs(e.at - start);
                    rec.commandSucceeded(e.at - start);
                    done = true;
                  }
                }
                if (!done) posted.set(body.id, start);
              } else failures++;
            })
            .catch(() => failures++)
            .finally(() => inflight--);
        }
        await sleep(5);
      }
      const postedIn = performance.now() - t0;
      // Let the step's tail finish (bounded), then measure.
      await waitFor(() => inflight === 0 && succeeded - s0 >= sentCount - failures, 5_000);
      const ms = performance.now() - t0;
      const cpu1 = target.group.read();
      const sim1 = simGroup.read();
      const done = succeeded - s0;
      const lat = e2e.summary();
      const row = {
        commandsPerSecOffered: rate,
        posted: sentCount,
        postedPerSec: Math.round((sentCount / postedIn) * 1000),
        succeeded: done,
        delivered: delivered - d0,
        // Acked per second from the first POST to the last success of the step.
        ackedPerSec: Math.round((done / Math.max(1, Math.min(ms, lastSucceededAt - t0))) * 1000),
        failures,
        postMs: postLat.summary(),
        endToEndMs: lat,
        targetCpuPct: round(((cpu1.cpuMs - cpu0.cpuMs) / ms) * 100),
        simCpuPct: round(((sim1.cpuMs - sim0.cpuMs) / ms) * 100),
        cpuUsPerCommand: done > 0 ? round(((cpu1.cpuMs - cpu0.cpuMs) * 1000) / done, 1) : null,
      };
      steps.push(row);
      ctx.emit({ type: 'step', scenario: 'downlink', target: target.id, ...row });
      if (done < sentCount * 0.95 || lat.p99 > 1000) {
        notes.push(`stopped after ${rate}/s: ${done} of ${sentCount} acked, p99 ${lat.p99} ms`);
        break;
      }
    }
    abort.abort();
    for (const s of sims) s.stop();
    const summaries = await Promise.all(sims.map((s) => s.done));
    rec.stop();
    const best = steps.reduce((a, r) => Math.max(a, Number(r.ackedPerSec)), 0);
    const last = steps[steps.length - 1] ?? {};
    return withVerdict(
      {
        scenario: 'downlink',
        target: target.name,
        targetId: target.id,
        startedAt: rec.startedAt,
        params: { vehicles, rates, stepMs },
        figures: {
          vehicles,
          maxAckedCommandsPerSec: best,
          commandsReceivedByVehicles: summaries.reduce(
            (a, s) => a + (s.downlink as { commands: number }).commands,
            0,
          ),
          deliveryMsPerSim: summaries.map(
            (s) => (s.downlink as { deliveryMs: unknown }).deliveryMs,
          ),
          // Over the last step; this process (the API client) counts on the simulators' side.
          saturatedSide: saturatedSide(
            Number(last.targetCpuPct ?? 0),
            Number(last.simCpuPct ?? 0),
            {
              simProcesses: sims.length + 1,
            },
          ),
        },
        timeline: rec.rows,
        steps,
        notes,
      },
      fleetFailures(summaries, vehicles),
    );
  } finally {
    abort.abort();
    rec.stop();
    await target.close();
  }
}
