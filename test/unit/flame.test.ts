// The bench's flame graphs (bench/flame.ts): the call tree behind them, and a real profile of a
// real Node process rendered to SVG.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { callTree, flameGraph, type CpuProfile } from '../../bench/flame.js';

const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({
  id,
  callFrame: { functionName, url, lineNumber: 0, columnNumber: 0 },
  children,
});

// (root) → (idle), (program), main → [work → leaf, work → leaf (a second node of the same frames)]
const PROFILE: CpuProfile = {
  nodes: [
    frame(1, '(root)', '', [2, 3, 4]),
    frame(2, '(idle)', ''),
    frame(3, '(program)', ''),
    frame(4, 'main', 'file:///app/dist/main.js', [5, 7]),
    frame(5, 'work', 'file:///app/dist/work.js', [6]),
    frame(6, 'leaf', 'node:internal/streams/readable'),
    frame(7, 'work', 'file:///app/dist/work.js', [8]),
    frame(8, 'leaf', 'node:internal/streams/readable'),
  ],
  // idle ×10, program ×2, main ×1, work ×3 (1 + 2), leaf ×6 (4 + 2)
  samples: [...Array<number>(10).fill(2), 3, 3, 4, 5, 7, 7, ...Array<number>(4).fill(6), 8, 8],
};

describe('flame graph call tree', () => {
  it('counts self and total from the samples, merges equal frames, leaves idle out', () => {
    const { root, idle } = callTree(PROFILE);
    expect(idle).toBe(10);
    expect(root.total).toBe(12);
    expect(root.children.map((c) => [c.name, c.total, c.self])).toEqual([
      ['main', 10, 1],
      ['(program)', 2, 2],
    ]);
    const main = root.children[0]!;
    expect(main.where).toBe('dist/main.js:1');
    expect(main.children).toHaveLength(1); // the two `work` nodes are one frame
    const work = main.children[0]!;
    expect([work.total, work.self, work.kind]).toEqual([9, 3, 'ours']);
    expect(work.children.map((c) => [c.name, c.total, c.self, c.kind])).toEqual([
      ['leaf', 6, 6, 'node'],
    ]);
  });

  it('draws each frame as wide as its share of the busy samples', () => {
    const svg = flameGraph(PROFILE, { title: 'test', width: 1200 });
    expect(svg).toContain('12 busy samples (54.5 % of 22; idle left out)');
    const widthOf = (name: string): number => {
      const m = new RegExp(`<title>${name} [^<]*</title><rect [^>]*width="([0-9.]+)"`).exec(svg);
      expect(m, name).not.toBeNull();
      return Number(m![1]) + 0.5; // drawn 0.5 px narrower, for the gap between frames
    };
    expect(widthOf('main')).toBeCloseTo((10 / 12) * 1200, 0);
    expect(widthOf('work')).toBeCloseTo((9 / 12) * 1200, 0);
    expect(widthOf('leaf')).toBeCloseTo((6 / 12) * 1200, 0);
    expect(svg).toContain('main dist/main.js:1: 83.3 % total, 8.3 % self');
    expect(svg).not.toContain('(idle)');
  });

  it('renders the profile of a real Node process, its hot function included', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmcp-flame-'));
    try {
      const script =
        'function spinTheWheel(){let x=0;for(let i=0;i<3e7;i++)x=(x*31+i)|0;return x}' +
        'let t=Date.now();while(Date.now()-t<300)spinTheWheel();';
      const r = spawnSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '-e', script], {
        encoding: 'utf8',
      });
      expect(r.status).toBe(0);
      const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
      expect(file).toBeDefined();
      const profile = JSON.parse(readFileSync(join(dir, file!), 'utf8')) as CpuProfile;
      const hot = callTree(profile).root;
      const find = (f: typeof hot): typeof hot | undefined =>
        f.name === 'spinTheWheel' ? f : f.children.map(find).find((x) => x !== undefined);
      const spin = find(hot);
      expect(spin, 'spinTheWheel in the call tree').toBeDefined();
      expect(spin!.total / hot.total).toBeGreaterThan(0.5);
      expect(flameGraph(profile)).toMatch(/<title>spinTheWheel [^<]*% total/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
