// Keeps the error catalogue (src/errors.ts) and docs/errors.md in step, and checks VmcpError's mapping.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS, VmcpError, isVmcpError, type VmcpErrorCode } from '../../src/errors.js';
import { ErrorCode } from '../../src/protocol/constants.js';

const DOC_PATH = new URL('../../docs/errors.md', import.meta.url);
const DASH = '—';

interface DocRow {
  code: string;
  protocol: string;
  http: string;
  meaning: string;
}

/** Splits a markdown table row on unescaped pipes and trims each cell (and the backticks around it). */
function cells(line: string): string[] {
  const inner = line.trim().replace(/^\|/, '').replace(/\|$/, '');
  return inner.split(/(?<!\\)\|/).map((c) => c.trim());
}

const unquote = (cell: string): string => cell.replace(/^`(.*)`$/, '$1');

/** The rows of the one table in docs/errors.md whose header is `code | protocol | http | meaning`. */
function parseDocTable(markdown: string): DocRow[] {
  const lines = markdown.split(/\r?\n/);
  const header = lines.findIndex((l) => {
    const c = l.trim().startsWith('|') ? cells(l) : [];
    return c.join(',') === 'code,protocol,http,meaning';
  });
  if (header < 0)
    throw new Error('docs/errors.md: no `| code | protocol | http | meaning |` table');
  const separator = lines[header + 1] ?? '';
  if (!/^\|(\s*:?-+:?\s*\|)+\s*$/.test(separator.trim()))
    throw new Error('docs/errors.md: the catalogue header is not followed by a separator row');
  const rows: DocRow[] = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.trim().startsWith('|')) break;
    const c = cells(line);
    if (c.length !== 4) throw new Error(`docs/errors.md: expected 4 cells in: ${line}`);
    rows.push({
      code: unquote(c[0]!),
      protocol: unquote(c[1]!),
      http: unquote(c[2]!),
      meaning: c[3]!,
    });
  }
  return rows;
}

const PROTOCOL_NAMES = new Map<number, string>(Object.entries(ErrorCode).map(([k, v]) => [v, k]));

/** A catalogue entry as seen through its optional fields. */
interface Entry {
  readonly protocol?: number;
  readonly http?: readonly [number, string];
  readonly message: string;
}

interface Expected {
  protocol: string;
  http: string;
}

/** How a catalogue entry should read in the doc. */
function expected(code: VmcpErrorCode): Expected {
  const entry: Entry = ERRORS[code];
  return {
    protocol: entry.protocol === undefined ? DASH : (PROTOCOL_NAMES.get(entry.protocol) ?? '?'),
    http: entry.http === undefined ? DASH : `${entry.http[0]} ${entry.http[1]}`,
  };
}

const codes = Object.keys(ERRORS) as VmcpErrorCode[];
const rows = parseDocTable(readFileSync(DOC_PATH, 'utf8'));
const rowByCode = new Map(rows.map((r) => [r.code, r]));

describe('docs/errors.md', () => {
  it('lists every catalogue code exactly once, and nothing else', () => {
    const listed = rows.map((r) => r.code);
    expect(new Set(listed).size, 'a code is listed twice').toBe(listed.length);
    expect([...listed].sort()).toEqual([...codes].sort());
  });

  it.each(codes)('%s has the catalogue protocol code and HTTP mapping', (code) => {
    const row = rowByCode.get(code);
    expect(row, `${code} is missing from docs/errors.md`).toBeDefined();
    expect({ protocol: row!.protocol, http: row!.http }).toEqual(expected(code));
    expect(row!.meaning.length, `${code} has no meaning`).toBeGreaterThan(0);
  });

  it('uses only ERROR code names of PROTOCOL.md 6 in the protocol column', () => {
    const names = new Set([...PROTOCOL_NAMES.values(), DASH]);
    for (const r of rows) expect(names, r.code).toContain(r.protocol);
  });
});

describe('the ERRORS catalogue', () => {
  it('has well-formed stable codes', () => {
    expect(codes.length).toBeGreaterThan(0);
    for (const code of codes) expect(code).toMatch(/^VMCP_ERR_[A-Z0-9_]+$/);
  });

  it('maps to known protocol codes and snake_case HTTP codes with error statuses', () => {
    const known = new Set<number>(Object.values(ErrorCode));
    for (const code of codes) {
      const entry: Entry = ERRORS[code];
      expect(entry.message.length, code).toBeGreaterThan(0);
      if (entry.protocol !== undefined) expect(known, code).toContain(entry.protocol);
      if (entry.http !== undefined) {
        const [status, httpCode] = entry.http;
        expect(Number.isInteger(status) && status >= 400 && status <= 599, code).toBe(true);
        expect(httpCode, code).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
      }
    }
  });
});

describe('VmcpError', () => {
  it('exposes code, protocolCode and http for every catalogue entry', () => {
    for (const code of codes) {
      const err = new VmcpError(code);
      const entry: Entry = ERRORS[code];
      expect(err).toBeInstanceOf(Error);
      expect(err.name).toBe('VmcpError');
      expect(err.code).toBe(code);
      expect(err.message).toBe(entry.message);
      expect(err.protocolCode).toBe(entry.protocol ?? ErrorCode.INTERNAL);
      expect(err.http).toEqual(entry.http ?? [500, 'internal']);
    }
  });

  it('maps a wire error and an HTTP error as the doc says', () => {
    const crc = new VmcpError('VMCP_ERR_BAD_CRC');
    expect(crc.protocolCode).toBe(ErrorCode.INVALID_FRAME);
    expect(crc.http).toEqual([500, 'internal']);
    const missing = new VmcpError('VMCP_ERR_VEHICLE_NOT_FOUND');
    expect(missing.protocolCode).toBe(ErrorCode.INTERNAL);
    expect(missing.http).toEqual([404, 'vehicle_not_found']);
  });

  it('keeps detail, cause, seq and field', () => {
    const cause = new Error('disk full');
    const err = new VmcpError('VMCP_ERR_VALUE_RANGE', 'heading 3600 > 3599', {
      cause,
      seq: 42,
      field: 0x05,
    });
    expect(err.message).toBe('heading 3600 > 3599');
    expect(err.cause).toBe(cause);
    expect(err.seq).toBe(42);
    expect(err.field).toBe(0x05);
    const plain = new VmcpError('VMCP_ERR_UTF8');
    expect(plain.seq).toBeUndefined();
    expect(plain.field).toBeUndefined();
    expect('cause' in plain).toBe(false);
  });

  it('is recognised by isVmcpError, optionally by code', () => {
    const err = new VmcpError('VMCP_ERR_TIMEOUT');
    expect(isVmcpError(err)).toBe(true);
    expect(isVmcpError(err, 'VMCP_ERR_TIMEOUT')).toBe(true);
    expect(isVmcpError(err, 'VMCP_ERR_INTERNAL')).toBe(false);
    expect(isVmcpError(new Error('x'))).toBe(false);
    expect(isVmcpError(undefined)).toBe(false);
  });
});

describe('the table parser', () => {
  it('reads cells, backticks and dashes', () => {
    const md = [
      'intro',
      '| code | protocol | http | meaning |',
      '| --- | --- | --- | --- |',
      '| `VMCP_ERR_A` | INVALID_DATA | — | a \\| b |',
      '| `VMCP_ERR_B` | — | `404 not_found` | c |',
      '',
      '| other | table |',
    ].join('\n');
    expect(parseDocTable(md)).toEqual([
      { code: 'VMCP_ERR_A', protocol: 'INVALID_DATA', http: DASH, meaning: 'a \\| b' },
      { code: 'VMCP_ERR_B', protocol: DASH, http: '404 not_found', meaning: 'c' },
    ]);
  });
});
