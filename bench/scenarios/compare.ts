// Interleaved pairs of the steady uplink scenario: the gateway, then a peer (Mosquitto by default),
// the same fleet each time, K times; the ratio of their CPU per acked message per pair. One machine's
// speed drifts by ±15–40 % within an hour, so only runs made in the same minutes compare.
import type { ScenarioContext, ScenarioResult } from './context.js';
import { round } from './context.js';
import { uplink } from './uplink.js';

export interface PairRatios {
  /** gateway ÷ peer CPU per acked message, per pair, in the order run. */
  ratios: number[];
  median: number;
  min: number;
  max: number;
}

/** gateway ÷ peer, to three decimals. */
const ratio = (gateway: number, peer: number): number => round(gateway / peer, 3);

/** The per-pair ratios of two lists of CPU µs per ack (same length, paired by index). */
export function pairRatios(gateway: readonly number[], peer: readonly number[]): PairRatios {
  if (gateway.length === 0 || gateway.length !== peer.length)
    throw new Error('pairRatios: two non-empty lists of the same length');
  const ratios = gateway.map((g, i) => ratio(g, peer[i]!));
  const sorted = [...ratios].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median =
    sorted.length % 2 === 1 ? sorted[mid]! : round((sorted[mid - 1]! + sorted[mid]!) / 2, 3);
  return { ratios, median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

const cpuPerAck = (r: ScenarioResult): number => Number(r.figures.cpuUsPerAck);
const sysPerAck = (r: ScenarioResult): number => Number(r.figures.sysUsPerAck);

export async function compare(ctx: ScenarioContext): Promise<ScenarioResult> {
  const o = ctx.opts;
  const peer = o.versus ?? 'mqtt://127.0.0.1:1883';
  const pairs = Math.max(1, o.pairs ?? 3);
  const startedAt = Date.now();
  const runs: ScenarioResult[] = [];
  const gateway: number[] = [];
  const other: number[] = [];
  const gatewaySys: number[] = [];
  const otherSys: number[] = [];
  let lostAcked = 0;
  for (let i = 0; i < pairs; i++) {
    const g = await uplink({ ...ctx, opts: { ...o, target: undefined, cpuProf: false } });
    const p = await uplink({ ...ctx, opts: { ...o, target: peer, cpuProf: false } });
    runs.push(g, p);
    gateway.push(cpuPerAck(g));
    other.push(cpuPerAck(p));
    gatewaySys.push(sysPerAck(g));
    otherSys.push(sysPerAck(p));
    lostAcked += (g.figures.store as { lostAcked?: number } | undefined)?.lostAcked ?? 0;
    ctx.emit({
      type: 'pair',
      scenario: 'compare',
      pair: i + 1,
      gateway: {
        target: g.target,
        cpuUsPerAck: gateway[i],
        sysUsPerAck: gatewaySys[i],
        latencyMs: g.figures.latencyMs,
      },
      peer: {
        target: p.target,
        cpuUsPerAck: other[i],
        sysUsPerAck: otherSys[i],
        latencyMs: p.figures.latencyMs,
      },
      ratio: ratio(gateway[i]!, other[i]!),
    });
  }
  const r = pairRatios(gateway, other);
  // A failed run (nothing connected, acked messages lost) fails the comparison.
  const failures = runs.flatMap((run) => (run.failures ?? []).map((f) => `${run.target}: ${f}`));
  return {
    scenario: 'compare',
    target: `${runs[0]!.target} vs ${runs[1]!.target}`,
    targetId: 'compare',
    startedAt,
    params: {
      vehicles: o.vehicles ?? 1_000,
      rate: o.rate ?? 10,
      durationMs: o.durationMs ?? 40_000,
      batch: o.batch,
      storeSync: o.storeSync,
      pairs,
      versus: peer,
    },
    figures: {
      pairs,
      gatewayCpuUsPerAck: gateway,
      peerCpuUsPerAck: other,
      // The system part of each (the kernel's work: socket calls, fsync): what moves with the day.
      gatewaySysUsPerAck: gatewaySys,
      peerSysUsPerAck: otherSys,
      ratios: r.ratios,
      ratioMedian: r.median,
      ratioMin: r.min,
      ratioMax: r.max,
      gatewayLostAcked: lostAcked,
    },
    timeline: [],
    notes: [
      `gateway ÷ peer CPU per acked message, pair by pair: ${r.ratios.join(', ')} (median ${r.median})`,
    ],
    parts: runs,
    ...(failures.length > 0 ? { failed: true, failures } : {}),
  };
}
