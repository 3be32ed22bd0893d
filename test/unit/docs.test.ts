// The configuration reference in docs/operations.md lists every setting with its flag, env name and default.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, SETTINGS, envName, flagName } from '../../src/config/index.js';

const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
const rows = new Map(
  doc
    .split('\n')
    .filter((l) => l.startsWith('| `--'))
    .map((l) => {
      const cells = l.split('|').map((c) => c.trim());
      return [cells[1]!.replace(/`/g, ''), cells] as const;
    }),
);

describe('docs/operations.md configuration table', () => {
  it('has a row for every setting, and no row for a setting that does not exist', () => {
    expect([...rows.keys()].sort()).toEqual(SETTINGS.map((s) => `--${flagName(s.key)}`).sort());
  });

  it.each(SETTINGS.map((s) => [s.key] as const))(
    '%s: env name and default match the code',
    (key) => {
      const cells = rows.get(`--${flagName(key)}`)!;
      expect(cells[2]).toBe(`\`${envName(key)}\``);
      const def = (DEFAULTS as unknown as Record<string, unknown>)[key];
      if (typeof def === 'number') expect(cells[4]).toBe(String(def));
    },
  );
});
