// SQLite files for tests of crashes: what a process killed between two calls leaves behind.
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Copies a database in WAL mode (its file and its -wal) from `from` to `to`: opened at `to`, it is
 * what the next process would find if the one using `from` were killed now. Consistent only while
 * nothing writes to `from` (no background work between the caller's calls).
 */
export function copyCrashImage(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  if (existsSync(`${from}-wal`)) copyFileSync(`${from}-wal`, `${to}-wal`);
}
