// What every scenario gets (options, output) and gives back (one result for the report).
import type { TimelineRow } from './common.js';

export interface BenchOptions {
  target: string | undefined;
  targetPid: number | undefined;
  httpUrl: string | undefined;
  vehicles: number | undefined;
  rate: number | undefined;
  durationMs: number | undefined;
  batch: number;
  storeSync: 'full' | 'normal';
  /** The started gateways' store: SQLite (default) or a Redis the bench starts and they share. */
  store: 'sqlite' | 'redis';
  gateways: number;
  simsPerShard: number | undefined;
  holdMs: number;
  steps: number[] | undefined;
  stepMs: number;
  commandRates: number[] | undefined;
  sustainable: number | undefined;
  cpuProf: boolean;
  verify: boolean;
  gatewayFlags: string[];
  /** Extra `vmcp sim` flags (--sim-flag), for the VMCP simulators. */
  simFlags: string[];
  /** What the simulators mint tokens with and the API bearer token (--jwt-secret, --admin-token). */
  secrets: BenchSecrets;
  /** Where the .jsonl and .html go (default bench/results). */
  resultsDir?: string | undefined;
  keepaliveS: number;
  ramp: number;
  /** compare: the peer target (default mqtt://127.0.0.1:1883) and the number of pairs (default 3). */
  versus?: string | undefined;
  pairs?: number | undefined;
  /** soak: SIGKILL and restart the gateway this often (0: never), and commands posted per second. */
  killEveryMs?: number | undefined;
  /** The simulators' store check may take this long (--verify-budget; soak default 20 minutes). */
  verifyBudgetMs?: number | undefined;
  commandRate?: number | undefined;
}

/** The gateway's secrets as the bench uses them: given, from the environment, or the built-in ones. */
export interface BenchSecrets {
  jwtSecret: string;
  adminToken: string;
}

export interface ScenarioResult {
  scenario: string;
  target: string;
  targetId: string;
  startedAt: number;
  params: Record<string, unknown>;
  figures: Record<string, unknown>;
  timeline: TimelineRow[];
  steps?: Record<string, unknown>[];
  /** [percentile, ms] of send → ack over the measured window. */
  latencyCurve?: [number, number][];
  notes: string[];
  /** Flame graphs (SVG) of the target's CPU profiles, for the HTML report only (not in the JSON). */
  flames?: { name: string; svg: string }[];
  /** The runs a compound scenario (compare) is made of: reported and written with it. */
  parts?: ScenarioResult[];
  /**
   * The run failed: nothing connected, acked messages missing from the store, the scenario's own
   * thresholds (soak). The bench exits 1; `failures` says why (also in the notes and the HTML headline).
   */
  failed?: boolean;
  failures?: string[];
}

export type Emit = (record: Record<string, unknown>) => void;

export interface ScenarioContext {
  opts: BenchOptions;
  emit: Emit;
  /** Where a gateway CPU profile goes when --cpu-prof is given. */
  profileDir: string;
}

export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Marks a result failed for each of `failures` (the bench then exits 1): they go first in the notes,
 * into `failures`, and into the HTML report's headline. No failures: the result as it is.
 */
export function withVerdict(result: ScenarioResult, failures: readonly string[]): ScenarioResult {
  if (failures.length === 0) return result;
  const all = [...(result.failures ?? []), ...failures];
  return {
    ...result,
    failed: true,
    failures: all,
    notes: [...failures.map((f) => `FAILED: ${f}`), ...result.notes],
  };
}
