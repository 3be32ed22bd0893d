// The versioned command registry: handlers keyed by (protocol version, command code) (PROTOCOL.md 2).
import { MAX_VERSION, MIN_VERSION } from './constants.js';

/**
 * Handlers registered at start-up. A handler registered for version v serves every version ≥ v
 * unless a later version registers its own (version 2 inherits version 1). Lookup is one array
 * index per message; a pair with nothing registered is UNKNOWN_COMMAND (`undefined`).
 */
export class CommandRegistry<H> {
  /** tables[v][code]: the resolved handler for version v. */
  private readonly tables: (H | undefined)[][] = [];
  /** registrations[code]: handlers by the version they were registered for. */
  private readonly registrations = new Map<number, Map<number, H>>();
  private frozen = false;

  constructor(
    readonly minVersion = MIN_VERSION,
    readonly maxVersion = MAX_VERSION,
  ) {
    for (let v = 0; v <= maxVersion; v++)
      this.tables.push(new Array<H | undefined>(128).fill(undefined));
  }

  /** Registers `handler` for `code` from `sinceVersion` up, until a later version registers its own. */
  register(sinceVersion: number, code: number, handler: H): this {
    if (this.frozen) throw new Error('the command registry is frozen once the server starts');
    if (sinceVersion < this.minVersion || sinceVersion > this.maxVersion) {
      throw new RangeError(`version ${sinceVersion} outside ${this.minVersion}–${this.maxVersion}`);
    }
    if (!Number.isInteger(code) || code < 0 || code > 0x7f)
      throw new RangeError(`command code ${code} outside 0x00–0x7f`);
    let byVersion = this.registrations.get(code);
    if (byVersion === undefined) this.registrations.set(code, (byVersion = new Map()));
    byVersion.set(sinceVersion, handler);
    // Re-resolve this code's column: version v takes the registration of the highest version ≤ v.
    let current: H | undefined;
    for (let v = this.minVersion; v <= this.maxVersion; v++) {
      current = byVersion.get(v) ?? current;
      this.tables[v]![code] = current;
    }
    return this;
  }

  /** The handler for (version, code), or undefined: UNKNOWN_COMMAND. */
  lookup(version: number, code: number): H | undefined {
    return this.tables[version]?.[code];
  }

  /** Command codes registered for a version (for docs and tests). */
  codes(version: number): number[] {
    const out: number[] = [];
    this.tables[version]?.forEach((h, code) => {
      if (h !== undefined) out.push(code);
    });
    return out;
  }

  freeze(): this {
    this.frozen = true;
    return this;
  }
}
