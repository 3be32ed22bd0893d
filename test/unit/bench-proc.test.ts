// The bench's CPU accounting (/proc/<pid>/stat): CPU time and its system part, per process and per
// group, including processes that exited (they keep their last reading).
import { writeSync, openSync, closeSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ProcGroup, procUsage } from '../../bench/scenarios/common.js';

/** Spends CPU in user space and in the kernel (small writes to /dev/null) for about `ms`. */
function burn(ms: number): void {
  const fd = openSync('/dev/null', 'w');
  const b = Buffer.alloc(16);
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 10_000; i++) x += i % 7;
    for (let i = 0; i < 200; i++) writeSync(fd, b);
  }
  closeSync(fd);
  expect(x).toBeGreaterThan(0);
}

describe('bench CPU accounting', () => {
  it('reads CPU time and its system part, which grow with the work done', () => {
    const before = procUsage(process.pid)!;
    burn(300);
    let after = procUsage(process.pid)!;
    // The kernel part is sampled in clock ticks of 10 ms: on a loaded machine 300 ms of this work
    // can show none, so more work is done (at most 3 s) until a tick lands in it.
    for (let i = 0; i < 18 && after.sysMs === before.sysMs; i++) {
      burn(150);
      after = procUsage(process.pid)!;
    }
    expect(after.sysMs).toBeLessThanOrEqual(after.cpuMs);
    // 300 ms of busy work shows at least 100 ms.
    expect(after.cpuMs - before.cpuMs).toBeGreaterThanOrEqual(100);
    expect(after.sysMs - before.sysMs).toBeGreaterThan(0);
    expect(after.rssKb).toBeGreaterThan(0);
  });

  it('sums a group, keeping the last reading of a process removed from it', () => {
    const g = new ProcGroup('test');
    g.add(process.pid);
    const a = g.read();
    expect(a.sysMs).toBeLessThanOrEqual(a.cpuMs);
    g.remove(process.pid);
    burn(100);
    const b = g.read();
    expect(b.cpuMs).toBeGreaterThanOrEqual(a.cpuMs);
    expect(b.sysMs).toBeGreaterThanOrEqual(a.sysMs);
    // Gone: its CPU stays at the reading taken when it was removed; no RSS.
    expect(g.read()).toEqual(b);
    expect(b.rssKb).toBe(0);
  });

  it('has no reading of a process that does not exist', () => {
    expect(procUsage(2 ** 22 + 12_345)).toBeUndefined();
  });
});
