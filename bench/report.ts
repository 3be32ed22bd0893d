// The bench's HTML report: one self-contained file (inline CSS and SVG charts, no external assets).
// As a script it combines result files: node --import tsx bench/report.ts bench/results/*.jsonl -o out.html
import { readFileSync, writeFileSync } from 'node:fs';
import type { ScenarioResult } from './scenarios/context.js';

interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf'];

function esc(s: string): string {
  return s.replace(
    /[&<>"]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!,
  );
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v: number): string {
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (Math.abs(v) >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(v < 1 ? 3 : 1);
}

/** A line chart as inline SVG. `logY` plots log10 of y (for latency). */
export function lineChart(
  title: string,
  series: Series[],
  xLabel: string,
  yLabel: string,
  opts: { logY?: boolean; width?: number; height?: number } = {},
): string {
  const W = opts.width ?? 640;
  const H = opts.height ?? 240;
  const L = 60;
  const R = 16;
  const T = 28;
  const B = 40;
  const pts = series
    .flatMap((s) => s.points)
    .filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  if (pts.length === 0) return `<p class="empty">${esc(title)}: no data</p>`;
  const xMin = Math.min(...pts.map((p) => p[0]));
  const xMax = Math.max(...pts.map((p) => p[0]), xMin + 1e-9);
  const ty = (y: number): number => (opts.logY ? Math.log10(Math.max(y, 0.01)) : y);
  let yMin = 0;
  let yMax: number;
  if (opts.logY) {
    yMin = Math.floor(Math.min(...pts.map((p) => ty(p[1]))));
    yMax = Math.ceil(Math.max(...pts.map((p) => ty(p[1]))));
    if (yMax <= yMin) yMax = yMin + 1;
  } else yMax = niceMax(Math.max(...pts.map((p) => p[1])));
  const sx = (x: number): number => L + ((x - xMin) / (xMax - xMin)) * (W - L - R);
  const sy = (y: number): number => T + (1 - (ty(y) - yMin) / (yMax - yMin)) * (H - T - B);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img">`,
  );
  parts.push(`<text x="${L}" y="16" class="t">${esc(title)}</text>`);
  // y grid and labels
  const yTicks: number[] = [];
  if (opts.logY) for (let e = yMin; e <= yMax; e++) yTicks.push(10 ** e);
  else for (let i = 0; i <= 4; i++) yTicks.push((yMax * i) / 4);
  for (const v of yTicks) {
    const y = sy(v);
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" class="g"/>`);
    parts.push(`<text x="${L - 6}" y="${y + 4}" text-anchor="end" class="a">${fmt(v)}</text>`);
  }
  for (let i = 0; i <= 5; i++) {
    const v = xMin + ((xMax - xMin) * i) / 5;
    const x = sx(v);
    parts.push(
      `<text x="${x}" y="${H - B + 16}" text-anchor="middle" class="a">${fmt(Math.round(v * 10) / 10)}</text>`,
    );
  }
  parts.push(
    `<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle" class="a">${esc(xLabel)}</text>`,
  );
  parts.push(
    `<text x="12" y="${(T + H - B) / 2}" transform="rotate(-90 12 ${(T + H - B) / 2})" text-anchor="middle" class="a">${esc(yLabel)}</text>`,
  );
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" class="f"/>`);
  series.forEach((s, i) => {
    const p = s.points.filter((q) => Number.isFinite(q[0]) && Number.isFinite(q[1]));
    if (p.length === 0) return;
    const d = p
      .map((q, j) => `${j === 0 ? 'M' : 'L'}${sx(q[0]).toFixed(1)},${sy(q[1]).toFixed(1)}`)
      .join('');
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"/>`);
    if (p.length <= 20)
      for (const q of p)
        parts.push(
          `<circle cx="${sx(q[0]).toFixed(1)}" cy="${sy(q[1]).toFixed(1)}" r="2.5" fill="${s.color}"/>`,
        );
    const lx = L + 8 + i * 150;
    parts.push(`<rect x="${lx}" y="${T + 6}" width="10" height="10" fill="${s.color}"/>`);
    parts.push(`<text x="${lx + 14}" y="${T + 15}" class="a">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

function flatten(obj: unknown, prefix = '', out: [string, string][] = []): [string, string][] {
  if (obj !== null && typeof obj === 'object' && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix === '' ? k : `${prefix}.${k}`, out);
  } else if (Array.isArray(obj)) out.push([prefix, JSON.stringify(obj)]);
  else out.push([prefix, String(obj)]);
  return out;
}

function table(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return '';
  const flat = rows.map((r) => Object.fromEntries(flatten(r)));
  const keys = [...new Set(flat.flatMap((r) => Object.keys(r)))];
  return `<table><tr>${keys.map((k) => `<th>${esc(k)}</th>`).join('')}</tr>${flat
    .map((r) => `<tr>${keys.map((k) => `<td>${esc(r[k] ?? '')}</td>`).join('')}</tr>`)
    .join('')}</table>`;
}

/** The failure line of a failed result (empty when it did not fail). */
function failureText(r: ScenarioResult): string {
  if (r.failed !== true) return '';
  return `FAILED: ${(r.failures ?? ['see the notes']).join('; ')}`;
}

function section(r: ScenarioResult, i: number): string {
  const tl = r.timeline;
  const x = (f: (row: (typeof tl)[number]) => number): [number, number][] =>
    tl.map((row) => [row.t, f(row)]);
  const charts: string[] = [];
  // Uplink deliveries (an MQTT subscriber's); commands delivered to vehicles are charted apart.
  const upDelivered = (row: (typeof tl)[number]): number =>
    Math.max(0, row.deliveredPerSec - (row.commandsPerSec ?? 0));
  const commands =
    r.scenario === 'downlink' ||
    tl.some((row) => (row.commandsAckedPerSec ?? 0) > 0 || (row.commandsPerSec ?? 0) > 0);
  const uplink =
    !commands ||
    tl.some((row) => row.sentPerSec > 0 || row.storedPerSec > 0 || upDelivered(row) > 0);
  if (uplink) {
    charts.push(
      lineChart(
        'Throughput',
        [
          { name: 'sent/s', color: COLORS[0]!, points: x((row) => row.sentPerSec) },
          { name: 'acked/s', color: COLORS[2]!, points: x((row) => row.storedPerSec) },
          ...(tl.some((row) => upDelivered(row) > 0)
            ? [{ name: 'delivered/s', color: COLORS[3]!, points: x(upDelivered) }]
            : []),
        ],
        's',
        'msgs/s',
      ),
    );
    charts.push(
      lineChart(
        'Send → ack latency (per second, all simulators merged)',
        [
          { name: 'p50', color: COLORS[0]!, points: x((row) => row.p50).filter((p) => p[1] > 0) },
          { name: 'p99', color: COLORS[1]!, points: x((row) => row.p99).filter((p) => p[1] > 0) },
        ],
        's',
        'ms (log)',
        { logY: true },
      ),
    );
  }
  if (commands) {
    charts.push(
      lineChart(
        'Command throughput',
        [
          {
            name: 'delivered to vehicles/s',
            color: COLORS[3]!,
            points: x((row) => row.commandsPerSec ?? 0),
          },
          {
            name: 'succeeded/s',
            color: COLORS[2]!,
            points: x((row) => row.commandsAckedPerSec ?? 0),
          },
        ],
        's',
        'commands/s',
      ),
    );
    // Latency only where the bench followed the commands (downlink), not where it only posted them.
    if (r.scenario === 'downlink' || tl.some((row) => (row.cmdP99 ?? 0) > 0))
      charts.push(
        lineChart(
          'Command latency, POST → succeeded (per second)',
          [
            {
              name: 'p50',
              color: COLORS[0]!,
              points: x((row) => row.cmdP50 ?? 0).filter((p) => p[1] > 0),
            },
            {
              name: 'p99',
              color: COLORS[1]!,
              points: x((row) => row.cmdP99 ?? 0).filter((p) => p[1] > 0),
            },
          ],
          's',
          'ms (log)',
          { logY: true },
        ),
      );
  }
  charts.push(
    lineChart(
      'Connected vehicles',
      [{ name: 'connected', color: COLORS[4]!, points: x((row) => row.connected) }],
      's',
      'connections',
    ),
  );
  charts.push(
    lineChart(
      'CPU (100% = one core)',
      [
        { name: 'target', color: COLORS[1]!, points: x((row) => row.gwCpuPct) },
        { name: 'simulators', color: COLORS[0]!, points: x((row) => row.simCpuPct) },
      ],
      's',
      '%',
    ),
  );
  charts.push(
    lineChart(
      'RSS',
      [
        { name: 'target', color: COLORS[1]!, points: x((row) => row.gwRssMb) },
        { name: 'simulators', color: COLORS[0]!, points: x((row) => row.simRssMb) },
      ],
      's',
      'MB',
    ),
  );
  if (r.steps !== undefined && r.steps.length > 0 && r.steps[0]!.offeredPerSec !== undefined) {
    charts.push(
      lineChart(
        'Saturation: acked vs offered',
        [
          {
            name: 'acked/s',
            color: COLORS[2]!,
            points: r.steps.map((s) => [Number(s.offeredPerSec), Number(s.ackedPerSec)]),
          },
          {
            name: 'offered/s',
            color: COLORS[0]!,
            points: r.steps.map((s) => [Number(s.offeredPerSec), Number(s.offeredPerSec)]),
          },
        ],
        'offered msgs/s',
        'msgs/s',
      ),
    );
    charts.push(
      lineChart(
        'Saturation: latency vs offered',
        [
          {
            name: 'p50',
            color: COLORS[0]!,
            points: r.steps.map((s) => [Number(s.offeredPerSec), Number(s.p50)]),
          },
          {
            name: 'p99',
            color: COLORS[1]!,
            points: r.steps.map((s) => [Number(s.offeredPerSec), Number(s.p99)]),
          },
        ],
        'offered msgs/s',
        'ms (log)',
        { logY: true },
      ),
    );
  }
  if (
    r.steps !== undefined &&
    r.steps.length > 0 &&
    r.steps[0]!.commandsPerSecOffered !== undefined
  ) {
    charts.push(
      lineChart(
        'Downlink: commands acked vs offered',
        [
          {
            name: 'acked/s',
            color: COLORS[2]!,
            points: r.steps.map((s) => [Number(s.commandsPerSecOffered), Number(s.ackedPerSec)]),
          },
          {
            name: 'offered/s',
            color: COLORS[0]!,
            points: r.steps.map((s) => [
              Number(s.commandsPerSecOffered),
              Number(s.commandsPerSecOffered),
            ]),
          },
        ],
        'offered commands/s',
        'commands/s',
      ),
    );
  }
  if (r.latencyCurve !== undefined && r.latencyCurve.length > 0) {
    charts.push(
      lineChart(
        'Latency by percentile (whole run)',
        [
          {
            name: 'send → ack',
            color: COLORS[1]!,
            points: r.latencyCurve.map(([p, ms]) => [
              Math.log10(1 / Math.max(1e-6, 1 - Math.min(p, 99.9999) / 100)),
              ms,
            ]),
          },
        ],
        'percentile (log: 1 = 90%, 2 = 99%, 3 = 99.9%)',
        'ms (log)',
        { logY: true },
      ),
    );
  }
  const fail = failureText(r);
  return `<section id="r${i}"><h2>${esc(r.scenario)} — ${esc(r.target)}</h2>
${fail === '' ? '' : `<p class="fail">${esc(fail)}</p>`}
<p class="meta">started ${new Date(r.startedAt).toISOString()} · params ${esc(JSON.stringify(r.params))}</p>
${r.notes.length > 0 ? `<ul>${r.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : ''}
${table([r.figures])}
${r.steps !== undefined ? `<h3>Steps</h3>${table(r.steps)}` : ''}
<div class="charts">${charts.join('\n')}</div>
${(r.flames ?? []).map((f) => `<h3>Flame graph: ${esc(f.name)}</h3><div class="flame">${f.svg}</div>`).join('\n')}</section>`;
}

export function renderReport(results: ScenarioResult[], machine: Record<string, unknown>): string {
  const summary = results.map((r, i) => {
    const f = r.figures as Record<string, unknown>;
    const lat = f.latencyMs as { p50?: number; p99?: number } | undefined;
    const fail = failureText(r);
    return {
      '#': `<a href="#r${i}">${i + 1}</a>`,
      scenario: r.scenario,
      target: r.target,
      key: `${fail === '' ? '' : `<span class="fail">${esc(fail)}</span><br>`}${esc(
        r.scenario === 'connections'
          ? `${f.connected} connected in ${f.connectSeconds} s, ${f.rssPerConnKb} KB/conn`
          : r.scenario === 'saturation'
            ? f.limitReached === false
              ? `at least ${f.atLeastPerSec}/s at p99 ≤ 100 ms (limit not reached at the last step)`
              : `max ${f.maxSustainablePerSec}/s at p99 ≤ 100 ms`
            : r.scenario === 'storm'
              ? `back in ${f.allBackSeconds} s, resent in ${f.resentSeconds} s, lost acked ${(f.store as { lostAcked?: number } | undefined)?.lostAcked}`
              : r.scenario === 'downlink'
                ? `max ${f.maxAckedCommandsPerSec} commands/s acked`
                : r.scenario === 'compare'
                  ? `CPU per ack, gateway ÷ peer: median ${f.ratioMedian} (${f.ratioMin}–${f.ratioMax}) over ${f.pairs} pairs`
                  : `${f.ackedPerSec}/s acked, p50 ${lat?.p50} ms, p99 ${lat?.p99} ms, ${f.cpuUsPerAck} µs CPU/ack`,
      )}${typeof f.saturatedSide === 'string' ? `<br><span class="meta">saturated: ${esc(f.saturatedSide)}</span>` : ''}`,
    };
  });
  const css = `body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0;font-size:12px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}
.charts{display:flex;flex-wrap:wrap;gap:8px}svg{background:#fff;border:1px solid #ddd}
svg .t{font-size:13px;font-weight:600}svg .a{font-size:11px;fill:#444}svg .g{stroke:#eee}svg .f{fill:none;stroke:#bbb}
.meta{color:#666;font-size:12px}.fail{color:#b00;font-weight:600}section{margin-top:28px}.flame{overflow-x:auto}svg.flame text{fill:#111;pointer-events:none}`;
  return `<!doctype html><html><head><meta charset="utf-8"><title>VMCP load bench</title><style>${css}</style></head><body>
<h1>VMCP load bench</h1>
<p class="meta">${esc(JSON.stringify(machine))} · generated ${new Date().toISOString()}</p>
<table><tr><th>#</th><th>scenario</th><th>target</th><th>result</th></tr>${summary
    .map(
      (s) =>
        `<tr><td>${s['#']}</td><td>${esc(s.scenario)}</td><td>${esc(s.target)}</td><td>${s.key}</td></tr>`,
    )
    .join('')}</table>
${results.map(section).join('\n')}
</body></html>`;
}

/** Reads `{"type":"result"}` and `{"type":"machine"}` lines of bench JSONL files. */
export function readResults(paths: string[]): {
  results: ScenarioResult[];
  machine: Record<string, unknown>;
} {
  const results: ScenarioResult[] = [];
  let machine: Record<string, unknown> = {};
  for (const p of paths) {
    for (const line of readFileSync(p, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      const rec = JSON.parse(line) as { type?: string; result?: ScenarioResult } & Record<
        string,
        unknown
      >;
      if (rec.type === 'machine') machine = rec;
      if (rec.type === 'result' && rec.result !== undefined) results.push(rec.result);
    }
  }
  results.sort((a, b) => a.startedAt - b.startedAt);
  return { results, machine };
}

if (process.argv[1]?.endsWith('report.ts')) {
  const args = process.argv.slice(2);
  const o = args.indexOf('-o');
  const out = o >= 0 ? args[o + 1]! : 'bench/results/report.html';
  const inputs = args.filter((_, i) => i !== o && i !== o + 1);
  const { results, machine } = readResults(inputs);
  writeFileSync(out, renderReport(results, machine));
  process.stdout.write(`${out}: ${results.length} results\n`);
}
