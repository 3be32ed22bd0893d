// Flame graphs of V8 CPU profiles (`--cpu-prof` of the bench, or `node --cpu-prof` of anything): a
// self-contained SVG, drawn as an icicle (the root at the top, callees below, so the wide frames
// come first on the page), each frame as wide as its share of the busy samples (its own and its
// callees'), hover for the numbers. `vmcp bench --cpu-prof` puts one in the HTML
// report and next to each profile.
//
// CLI: node --import tsx bench/flame.ts PROFILE.cpuprofile [-o OUT.svg] [--title T]
import { readFileSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number };
  hitCount?: number;
  children?: number[];
}

export interface CpuProfile {
  nodes: CpuProfileNode[];
  samples?: number[];
}

/** A merged call-tree frame: `total` samples in it and its callees, `self` in it alone. */
export interface Frame {
  name: string;
  /** "file:line", shortened to the part from src/, dist/ or node_modules/ on. */
  where: string;
  kind: 'ours' | 'node' | 'deps' | 'native';
  self: number;
  total: number;
  children: Frame[];
}

/** Not CPU work of the program: left out of the graph (its share goes in the title). */
const IDLE = '(idle)';

function frameKind(url: string, name: string): Frame['kind'] {
  if (url.startsWith('node:')) return 'node';
  if (url.includes('/node_modules/')) return 'deps';
  if (url === '' || name.startsWith('(')) return 'native';
  return 'ours';
}

/**
 * The profile as a tree of frames, children with the same function and place merged, idle left
 * out. Sample counts come from `samples` when present (V8's own), else from `hitCount`.
 */
export function callTree(profile: CpuProfile): { root: Frame; idle: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const hits = new Map<number, number>();
  if (profile.samples !== undefined && profile.samples.length > 0)
    for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  else for (const n of profile.nodes) hits.set(n.id, n.hitCount ?? 0);
  const childIds = new Set(profile.nodes.flatMap((n) => n.children ?? []));
  const top = profile.nodes.find((n) => !childIds.has(n.id));
  if (top === undefined) throw new Error('profile has no root node');
  let idle = 0;
  const build = (node: CpuProfileNode): Frame => {
    const cf = node.callFrame;
    const name = cf.functionName || '(anonymous)';
    const f: Frame = {
      name,
      where:
        cf.url === ''
          ? ''
          : `${cf.url.replace(/^.*\/(src|dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`,
      kind: frameKind(cf.url, name),
      self: hits.get(node.id) ?? 0,
      total: 0,
      children: [],
    };
    const merged = new Map<string, Frame>();
    for (const id of node.children ?? []) {
      const child = byId.get(id);
      if (child === undefined) continue;
      const c = build(child);
      if (c.name === IDLE) {
        idle += c.total;
        continue;
      }
      const key = `${c.name} ${c.where}`;
      const same = merged.get(key);
      if (same === undefined) merged.set(key, c);
      else mergeInto(same, c);
    }
    f.children = [...merged.values()].sort((a, b) => b.total - a.total);
    f.total = f.self + f.children.reduce((a, c) => a + c.total, 0);
    return f;
  };
  return { root: build(top), idle };
}

function mergeInto(into: Frame, from: Frame): void {
  into.self += from.self;
  into.total += from.total;
  for (const c of from.children) {
    const same = into.children.find((x) => x.name === c.name && x.where === c.where);
    if (same === undefined) into.children.push(c);
    else mergeInto(same, c);
  }
  into.children.sort((a, b) => b.total - a.total);
}

function esc(s: string): string {
  return s.replace(/[&<>"]/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot' }[c]};`);
}

/** Warm colours for the project's code, blue for Node's, green for dependencies, grey for native. */
function colour(f: Frame): string {
  let h = 0;
  for (let i = 0; i < f.name.length; i++) h = (h * 31 + f.name.charCodeAt(i)) >>> 0;
  const j = h % 30;
  switch (f.kind) {
    case 'ours':
      return `hsl(${15 + j},85%,${58 + (h % 10)}%)`;
    case 'node':
      return `hsl(${200 + j},55%,${68 + (h % 8)}%)`;
    case 'deps':
      return `hsl(${95 + j},45%,${60 + (h % 10)}%)`;
    default:
      return `hsl(0,0%,${72 + (h % 10)}%)`;
  }
}

export interface FlameOptions {
  title?: string;
  /** SVG width in px (default 1200). */
  width?: number;
  /** Frames narrower than this many px are not drawn (default 0.4). */
  minWidth?: number;
  /** Call depth drawn at most (default 60); deeper frames are counted in their ancestors. */
  maxDepth?: number;
}

const ROW = 16;
const CHAR_PX = 6.2;

/** The flame graph of a profile as one self-contained SVG element. */
export function flameGraph(profile: CpuProfile, opts: FlameOptions = {}): string {
  const { root, idle } = callTree(profile);
  const width = opts.width ?? 1200;
  const minWidth = opts.minWidth ?? 0.4;
  const depthCap = opts.maxDepth ?? 60;
  const busy = root.total;
  const rects: string[] = [];
  let maxDepth = 0;
  const placed: { f: Frame; x: number; w: number; depth: number }[] = [];
  const walk = (f: Frame, x: number, depth: number): void => {
    const w = busy === 0 ? 0 : (f.total / busy) * width;
    if (w < minWidth || depth > depthCap) return;
    placed.push({ f, x, w, depth });
    if (depth > maxDepth) maxDepth = depth;
    let cx = x;
    for (const c of f.children) {
      walk(c, cx, depth + 1);
      cx += busy === 0 ? 0 : (c.total / busy) * width;
    }
  };
  walk(root, 0, 0);
  const top = 30;
  const height = top + (maxDepth + 1) * ROW + 4;
  for (const { f, x, w, depth } of placed) {
    const y = top + depth * ROW;
    const pct = (n: number): string => (busy === 0 ? '0' : ((n / busy) * 100).toFixed(1));
    const label = depth === 0 ? 'all busy samples' : f.name;
    const tip = `${label}${f.where ? ` ${f.where}` : ''}: ${pct(f.total)} % total, ${pct(f.self)} % self`;
    const fits = Math.floor((w - 4) / CHAR_PX);
    const text =
      fits >= 3
        ? `<text x="${(x + 2).toFixed(1)}" y="${y + 12}">${esc(label.length <= fits ? label : `${label.slice(0, fits - 1)}…`)}</text>`
        : '';
    rects.push(
      `<g><title>${esc(tip)}</title><rect x="${x.toFixed(1)}" y="${y}" width="${Math.max(0.1, w - 0.5).toFixed(1)}" height="${ROW - 1}" fill="${depth === 0 ? '#ddd' : colour(f)}"/>${text}</g>`,
    );
  }
  const all = busy + idle;
  const title = `${opts.title ?? 'CPU profile'}: ${busy} busy samples${all > 0 ? ` (${((busy / all) * 100).toFixed(1)} % of ${all}; idle left out)` : ''}`;
  return `<svg xmlns="http://www.w3.org/2000/svg" class="flame" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="monospace" font-size="11">
<text x="4" y="18" font-size="13" font-weight="600">${esc(title)}</text>
${rects.join('\n')}
</svg>`;
}

async function main(argv: string[]): Promise<void> {
  const input = argv[0];
  if (input === undefined || input.startsWith('-')) {
    process.stderr.write(
      'usage: node --import tsx bench/flame.ts PROFILE [-o OUT.svg] [--title T]\n',
    );
    process.exit(2);
  }
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const out = flag('-o') ?? input.replace(/\.cpuprofile$/, '') + '.svg';
  const profile = JSON.parse(readFileSync(input, 'utf8')) as CpuProfile;
  writeFileSync(out, flameGraph(profile, { title: flag('--title') ?? basename(input) }));
  process.stderr.write(`flame graph: ${out}\n`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1])
  void main(process.argv.slice(2));
