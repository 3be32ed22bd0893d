// Scenario 2, steady uplink: N vehicles × R msgs/s for a duration; send → ack latency (HDR), throughput,
// the target's CPU per acked message, and loss = sent − stored checked against the store (gateway).
// Also the overload check: twice the sustainable rate with the per-vehicle limit at the sustainable one.
import { LatencyHistogram } from '../../src/sim/histogram.js';
import {
  ProcGroup,
  Recorder,
  connectedNow,
  saturatedSide,
  sleep,
  waitFor,
  windowLatency,
  windowRate,
  type SimProc,
} from './common.js';
import { round, withVerdict, type ScenarioContext, type ScenarioResult } from './context.js';
import { openTarget, startFleet, type Target, metricsUrls } from './targets.js';

interface StoreCheck {
  loss: number;
  lostAcked: number;
  disorder: number;
  extra: number;
  records: number;
  /** Vehicles whose check did not finish (the simulators' verify budget, HTTP errors). */
  unchecked: number;
  httpErrors: number;
  /** How long the simulators' checks took, the slowest (ms). */
  elapsedMs: number;
  /** Vehicles whose records were checked (those that connected). */
  vehicles: number;
  /** Some vehicle's records were checked against the store (--no-verify, or none connected: false). */
  checked: boolean;
  /** Every vehicle of every simulator was checked. */
  complete: boolean;
}

export function storeCheck(summaries: Record<string, unknown>[]): StoreCheck {
  const r: StoreCheck = {
    loss: 0,
    lostAcked: 0,
    disorder: 0,
    extra: 0,
    records: 0,
    unchecked: 0,
    httpErrors: 0,
    elapsedMs: 0,
    vehicles: 0,
    checked: false,
    complete: summaries.length > 0,
  };
  for (const s of summaries) {
    const st = s.store as Omit<StoreCheck, 'checked' | 'complete'> | undefined;
    if (st === undefined) {
      r.complete = false;
      continue;
    }
    r.vehicles += st.vehicles ?? 0;
    r.loss += st.loss;
    r.lostAcked += st.lostAcked;
    r.disorder += st.disorder;
    r.extra += st.extra;
    r.records += st.records;
    r.unchecked += st.unchecked;
    r.httpErrors += st.httpErrors;
    r.elapsedMs = Math.max(r.elapsedMs, st.elapsedMs);
  }
  r.checked = r.vehicles > 0;
  if (r.unchecked > 0) r.complete = false;
  return r;
}

/** Vehicle connections accepted (CONNACK), summed over the simulators' summaries. */
export function acceptedConnections(summaries: Record<string, unknown>[]): number {
  let n = 0;
  for (const s of summaries)
    n += (s.connections as { accepted?: number } | undefined)?.accepted ?? 0;
  return n;
}

/**
 * Why a run failed, from its simulators' summaries and the store check: no vehicle connected at
 * all (what did come back is in the errors), acked messages missing from the store (the gateway's
 * core guarantee broken). Empty: not failed.
 */
export function fleetFailures(
  summaries: Record<string, unknown>[],
  vehicles: number,
  check?: StoreCheck,
): string[] {
  const out: string[] = [];
  if (summaries.length > 0 && acceptedConnections(summaries) === 0) {
    const kinds = errorKinds(summaries);
    for (const s of summaries)
      for (const [k, v] of Object.entries(
        ((s.connections as { refused?: Record<string, number> }).refused ?? {}) as Record<
          string,
          number
        >,
      ))
        kinds[k] = (kinds[k] ?? 0) + v;
    const why = Object.entries(kinds)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 4)
      .map(([k, n]) => `${k} ×${n}`);
    out.push(
      `no vehicle connected (0 of ${vehicles})${why.length > 0 ? `: ${why.join(', ')}` : ''}`,
    );
  }
  if (check !== undefined && check.lostAcked > 0)
    out.push(`${check.lostAcked} acked messages missing from the store (lostAcked)`);
  return out;
}

/** Error counts by kind, summed over the simulators. */
export function errorKinds(summaries: Record<string, unknown>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of summaries)
    for (const [k, v] of Object.entries((s.errors ?? {}) as Record<string, number>))
      out[k] = (out[k] ?? 0) + v;
  return out;
}

export function sumUplink(summaries: Record<string, unknown>[], key: string): number {
  let n = 0;
  for (const s of summaries) n += ((s.uplink as Record<string, number>)[key] ?? 0) as number;
  return n;
}

export function mergedHistogram(summaries: Record<string, unknown>[]): LatencyHistogram {
  const h = new LatencyHistogram();
  for (const s of summaries) h.addEncoded(s.histogram as string);
  return h;
}

export interface SteadyRun {
  target: Target;
  rec: Recorder;
  sims: SimProc[];
  summaries: Record<string, unknown>[];
  windowFrom: number;
  windowTo: number;
  figures: Record<string, unknown>;
  curve: [number, number][];
  notes: string[];
  /** fleetFailures of the run (empty: not failed). */
  failures: string[];
}

/** Runs one steady fleet against an open target and measures over the window after the ramp. */
export async function steady(
  ctx: ScenarioContext,
  target: Target,
  vehicles: number,
  rate: number,
  durationMs: number,
  batch: number,
): Promise<SteadyRun> {
  const o = ctx.opts;
  const simGroup = new ProcGroup('sim');
  const rec = new Recorder(target.group, simGroup);
  rec.metricsUrls = metricsUrls(target);
  const notes: string[] = [];
  rec.start();
  const sims = startFleet(
    target,
    {
      vehicles,
      rate,
      durationMs,
      batch,
      keepaliveS: o.keepaliveS,
      ramp: o.ramp,
      verify: o.verify && target.kind === 'vmcp',
      procsPerShard: o.simsPerShard,
      simFlags: o.simFlags,
    },
    simGroup,
    rec.onProgress,
  );
  rec.sims = sims;
  const started = Date.now();
  const all = await waitFor(() => connectedNow(sims) >= vehicles, Math.min(durationMs, 60_000));
  if (!all) notes.push(`only ${connectedNow(sims)} of ${vehicles} connected before the window`);
  await sleep(3_000); // the first samples' acks and the phase spread settle
  const windowFrom = Date.now();
  const sendEnd = started + durationMs;
  const cpu0 = target.group.read();
  const sim0 = simGroup.read();
  await sleep(Math.max(1_000, sendEnd - 1_000 - Date.now()));
  const windowTo = Date.now();
  const cpu1 = target.group.read();
  const sim1 = simGroup.read();
  const summaries = await Promise.all(sims.map((s) => s.done));
  rec.stop();
  const winMs = windowTo - windowFrom;
  const ackedRate = windowRate(sims, windowFrom, windowTo, 'stored');
  const stored = (ackedRate * winMs) / 1000;
  const deliveredRate = windowRate(sims, windowFrom, windowTo, 'delivered');
  const lat = windowLatency(sims, windowFrom, windowTo).summary();
  const all2 = mergedHistogram(summaries);
  const check = storeCheck(summaries);
  const targetCpuMs = cpu1.cpuMs - cpu0.cpuMs;
  const targetSysMs = cpu1.sysMs - cpu0.sysMs;
  const simCpuMs = sim1.cpuMs - sim0.cpuMs;
  const errors = summaries.reduce((a, s) => a + (s.errorsTotal as number), 0);
  const targetCpuPct = round((targetCpuMs / winMs) * 100);
  const simCpuPct = round((simCpuMs / winMs) * 100);
  const figures: Record<string, unknown> = {
    vehicles,
    ratePerVehicle: rate,
    batch,
    offeredPerSec: Math.round(vehicles * rate),
    ackedPerSec: Math.round(ackedRate),
    latencyMs: lat,
    latencyWholeRunMs: all2.summary(),
    // Last transmission → ack (differs from the above only when samples were resent).
    serviceLatencyMs: (() => {
      const h = new LatencyHistogram();
      for (const s of summaries)
        if (typeof s.serviceHistogram === 'string') h.addEncoded(s.serviceHistogram);
      return h.summary();
    })(),
    targetCpuPct,
    simCpuPct,
    saturatedSide: saturatedSide(targetCpuPct, simCpuPct, { simProcesses: sims.length }),
    cpuUsPerAck: stored > 0 ? round((targetCpuMs * 1000) / stored, 2) : null,
    // Its system part: the kernel's work for the target (socket calls, fsync), apart from its own code.
    sysUsPerAck: stored > 0 ? round((targetSysMs * 1000) / stored, 2) : null,
    targetRssMb: round(cpu1.rssKb / 1024),
    simRssMb: round(sim1.rssKb / 1024),
    sent: sumUplink(summaries, 'sent'),
    acked: sumUplink(summaries, 'stored'),
    throttled: sumUplink(summaries, 'throttled'),
    resent: sumUplink(summaries, 'resent'),
    unackedAtEnd: sumUplink(summaries, 'unacked'),
    errors,
    errorKinds: errorKinds(summaries),
    ...rec.loopMax(windowFrom, windowTo),
    windowSeconds: round(winMs / 1000),
  };
  if (target.kind === 'mqtt') {
    figures.deliveredPerSec = Math.round(deliveredRate);
    figures.delivered = sumUplink(summaries, 'delivered');
    figures.cpuUsPerAck = stored > 0 ? round((targetCpuMs * 1000) / stored, 2) : null;
    figures.sysUsPerAck = stored > 0 ? round((targetSysMs * 1000) / stored, 2) : null;
  } else {
    figures.store = check;
  }
  return {
    target,
    rec,
    sims,
    summaries,
    windowFrom,
    windowTo,
    figures,
    curve: all2.curve(),
    notes,
    failures: fleetFailures(summaries, vehicles, target.kind === 'vmcp' ? check : undefined),
  };
}

export async function uplink(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const vehicles = o.vehicles ?? 1_000;
  const rate = o.rate ?? 10;
  const durationMs = o.durationMs ?? 40_000;
  const target = await openTarget({
    target: o.target,
    shards: o.target === undefined ? o.gateways : 1,
    gatewayFlags: o.gatewayFlags,
    store: o.store,
    targetPid: o.targetPid,
    httpUrl: o.httpUrl,
    secrets: o.secrets,
    cpuProfDir: o.cpuProf ? ctx.profileDir : undefined,
  });
  try {
    const run = await steady(ctx, target, vehicles, rate, durationMs, o.batch);
    return withVerdict(
      {
        scenario: 'uplink',
        target: target.name,
        targetId: target.id,
        startedAt: run.rec.startedAt,
        params: { vehicles, rate, batch: o.batch, durationMs, storeSync: o.storeSync },
        figures: run.figures,
        timeline: run.rec.rows,
        latencyCurve: run.curve,
        notes: run.notes,
      },
      run.failures,
    );
  } finally {
    await target.close();
  }
}

/**
 * Overload: the per-vehicle rate limit at the sustainable rate S/N, and every vehicle offering twice
 * that. The gateway must stay up, answer THROTTLED, keep p99 of accepted messages bounded and lose
 * nothing acked.
 */
export async function overload(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const vehicles = o.vehicles ?? 1_000;
  const sustainable = o.sustainable ?? 20_000;
  const limit = Math.max(1, Math.round(sustainable / vehicles));
  const durationMs = o.durationMs ?? 30_000;
  const target = await openTarget({
    target: undefined,
    shards: 1,
    store: o.store,
    secrets: o.secrets,
    gatewayFlags: [
      ...o.gatewayFlags,
      '--uplink-rate-per-sec',
      String(limit),
      '--uplink-burst',
      String(limit * 2),
    ],
  });
  try {
    const run = await steady(ctx, target, vehicles, limit * 2, durationMs, o.batch);
    const gw = target.gateways[0]!;
    let alive = false;
    try {
      const res = await fetch(`${gw.httpUrl}/healthz`);
      alive = res.status === 200;
      await res.arrayBuffer();
    } catch {
      alive = false;
    }
    const throttledPerSec = Math.round(
      (Number(run.figures.throttled) / Math.max(1, (run.windowTo - run.windowFrom) / 1000)) * 1,
    );
    return withVerdict(
      {
        scenario: 'overload',
        target: target.name,
        targetId: target.id,
        startedAt: run.rec.startedAt,
        params: {
          vehicles,
          sustainable,
          perVehicleLimit: limit,
          offeredPerVehicle: limit * 2,
          durationMs,
        },
        figures: { ...run.figures, gatewayAlive: alive, throttledPerSec },
        timeline: run.rec.rows,
        latencyCurve: run.curve,
        notes: [
          ...run.notes,
          `gateway configured with --uplink-rate-per-sec ${limit} --uplink-burst ${limit * 2}; vehicles offer ${limit * 2}/s each`,
        ],
      },
      [
        ...run.failures,
        ...(alive ? [] : ['the gateway did not answer /healthz after the overload']),
      ],
    );
  } finally {
    await target.close();
  }
}
