// Command-line checks shared by `vmcp sim` and the load bench: unknown flags, a value missing or given
// to a switch, and stray arguments are usage errors that name the flag (the callers exit 2).

/** camelCase flag key (as parseFlags gives it) → its command-line spelling, e.g. maxConnecting → --max-connecting. */
export function flagText(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** Edit distance, for "did you mean" (short strings only). */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(up + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

/** The known flag nearest to `key`, if it is a likely typo (a prefix, or two edits at most). */
export function nearestFlag(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = k.startsWith(key) || key.startsWith(k) ? 1 : distance(key, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return bestD <= 2 ? best : undefined;
}

/**
 * Throws an Error naming the first offending flag: one not in `valued` or `switches`, a valued flag
 * without a value, a switch given a value. `positional` arguments are refused unless `positionalOk`.
 */
export function checkFlags(
  parsed: { flags: Record<string, string | true>; positional: readonly string[] },
  valued: readonly string[],
  switches: readonly string[],
  positionalOk = 0,
): void {
  const known = [...valued, ...switches];
  for (const [key, value] of Object.entries(parsed.flags)) {
    if (valued.includes(key)) {
      if (value === true) throw new Error(`${flagText(key)}: expected a value`);
    } else if (switches.includes(key)) {
      if (value !== true) throw new Error(`${flagText(key)} takes no value (got "${value}")`);
    } else {
      const near = nearestFlag(key, known);
      throw new Error(
        `${flagText(key)}: unknown option${near === undefined ? '' : ` (did you mean ${flagText(near)}?)`}`,
      );
    }
  }
  const extra = parsed.positional.slice(positionalOk);
  if (extra.length > 0) throw new Error(`unexpected argument "${extra[0]}"`);
}
