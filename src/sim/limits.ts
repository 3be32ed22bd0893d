// The simulator's own file-descriptor limit: read it, try to raise it (prlimit), say what it allows.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface FdLimit {
  soft: number;
  hard: number;
  /** The soft limit before we tried to raise it. */
  before: number;
  /** The limit asked for. */
  wanted: number;
  /** Whether the soft limit now covers `wanted`. */
  enough: boolean;
  note: string;
}

/** Parses "Max open files" of a /proc/<pid>/limits text; unlimited → Infinity. */
export function parseNofile(limits: string): { soft: number; hard: number } | undefined {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  if (!m) return undefined;
  const n = (v: string): number => (v === 'unlimited' ? Infinity : Number(v));
  return { soft: n(m[1]!), hard: n(m[2]!) };
}

function read(): { soft: number; hard: number } | undefined {
  try {
    return parseNofile(readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    return undefined;
  }
}

/** File descriptors a process needs besides its sockets (stdio, libuv, the event loop, timers). */
export const FD_RESERVE = 64;

/**
 * Makes sure this process may open `wanted` files: Node already raises the soft limit to the hard
 * limit at start; beyond the hard limit we try `prlimit` on ourselves (works as root where the
 * container allows it). Never throws; `note` says what happened.
 */
export function ensureFdLimit(wanted: number): FdLimit {
  const first = read();
  if (first === undefined) {
    return {
      soft: Infinity,
      hard: Infinity,
      before: Infinity,
      wanted,
      enough: true,
      note: 'no /proc/self/limits: limit unknown',
    };
  }
  if (first.soft >= wanted) {
    return { ...first, before: first.soft, wanted, enough: true, note: 'limit sufficient' };
  }
  const target = Math.max(wanted, first.soft);
  const r = spawnSync('prlimit', [`--pid=${process.pid}`, `--nofile=${target}:${target}`], {
    encoding: 'utf8',
    timeout: 5_000,
  });
  const after = read() ?? first;
  const enough = after.soft >= wanted;
  let note: string;
  if (enough) note = `raised from ${first.soft} to ${after.soft}`;
  else {
    const why =
      r.error !== undefined
        ? r.error.message
        : (r.stderr || `prlimit exited ${String(r.status)}`).trim();
    note =
      `cannot raise the open-files limit to ${wanted} (soft ${after.soft}, hard ${after.hard}): ${why}; ` +
      `this process holds at most ~${Math.max(0, after.soft - FD_RESERVE)} connections: run several sim processes`;
  }
  return { ...after, before: first.soft, wanted, enough, note };
}
