// CRC-32 and the consistent-hash ring (issue 5): fixed vectors pin the slot of a vehicle id across
// processes and versions; adding or removing an owner moves only about 1/N of the slots.
import { describe, expect, it } from 'vitest';
import { crc32, crc32Bytes } from '../../src/cluster/crc32.js';
import {
  DEFAULT_VIRTUAL_NODES,
  HashRing,
  SLOT_COUNT,
  partitionOf,
  ringPosition,
  slotOf,
} from '../../src/cluster/ring.js';

function moved(before: HashRing, after: HashRing): number[] {
  const out: number[] = [];
  for (let s = 0; s < SLOT_COUNT; s++) {
    if (before.ownerOfSlot(s) !== after.ownerOfSlot(s)) out.push(s);
  }
  return out;
}

function shares(ring: HashRing): number[] {
  return [...ring.assignments().values()].map((slots) => slots.length);
}

describe('crc32', () => {
  it('is the IEEE / zlib CRC-32 (check value and known vectors)', () => {
    expect(crc32('123456789')).toBe(0xcbf43926);
    expect(crc32('')).toBe(0);
    expect(crc32('a')).toBe(0xe8b7be43);
    expect(crc32('The quick brown fox jumps over the lazy dog')).toBe(0x414fa339);
    expect(crc32Bytes(new Uint8Array([0, 0, 0, 0]))).toBe(0x2144df1c);
  });

  it('hashes the UTF-8 encoding of the string', () => {
    // 'é' is C3 A9 in UTF-8 (not the Latin-1 byte E9).
    expect(crc32('é')).toBe(crc32Bytes(new Uint8Array([0xc3, 0xa9])));
    expect(crc32('é')).not.toBe(crc32Bytes(new Uint8Array([0xe9])));
    // Values computed once with Python's zlib.crc32(s.encode('utf-8')).
    expect(crc32('Fahrzeug-Müller-ä✓')).toBe(3684205373);
  });
});

describe('slotOf / partitionOf', () => {
  it('pins the slot of fixed ids (stable across processes and versions)', () => {
    // crc32 values from Python's zlib.crc32; slot = crc32 % 4096.
    const vectors: [string, number, number][] = [
      ['LSVAU2180N2183294', 2003714215, 167],
      ['VIN00000000000001', 4098020741, 1413],
      ['', 0, 0],
      ['Fahrzeug-Müller-ä✓', 3684205373, 829],
      ['a', 3904355907, 3651],
    ];
    for (const [id, crc, slot] of vectors) {
      expect(crc32(id), id).toBe(crc);
      expect(slotOf(id), id).toBe(slot);
    }
    expect(SLOT_COUNT).toBe(4096);
  });

  it('maps a slot onto partitions by modulo', () => {
    expect(partitionOf('LSVAU2180N2183294', 16)).toBe(167 % 16);
    expect(partitionOf('VIN00000000000001', 16)).toBe(1413 % 16);
    expect(partitionOf('VIN00000000000001', 1)).toBe(0);
    expect(partitionOf('a', 4096)).toBe(3651);
    expect(() => partitionOf('a', 0)).toThrow(RangeError);
    expect(() => partitionOf('a', 1.5)).toThrow(RangeError);
  });

  it('spreads realistic vehicle ids evenly over 16 partitions', () => {
    const counts = new Array<number>(16).fill(0);
    const n = 16_000;
    for (let i = 0; i < n; i++) {
      const id = `LSVAU2180N${String(2_000_000 + i * 7).padStart(7, '0')}`;
      counts[partitionOf(id, 16)]!++;
    }
    for (const c of counts) {
      expect(c).toBeGreaterThan((n / 16) * 0.85);
      expect(c).toBeLessThan((n / 16) * 1.15);
    }
  });
});

describe('HashRing', () => {
  it('pins ring positions (crc32 then the murmur3 finalizer) and slot owners', () => {
    // Positions computed once in Python: fmix32(zlib.crc32(key.encode())). A change here
    // re-assigns slots between live nodes of a running cluster.
    expect(ringPosition('node-a#0')).toBe(3836611631);
    expect(ringPosition('node-b#127')).toBe(167989558);
    expect(ringPosition('gw-1#5')).toBe(1084744104);
    expect(ringPosition('')).toBe(0);
    const ring = new HashRing(['node-a', 'node-b', 'node-c']);
    expect([0, 1, 167, 1413, 2048, 4095].map((s) => ring.ownerOfSlot(s))).toEqual([
      'node-a',
      'node-a',
      'node-a',
      'node-b',
      'node-a',
      'node-a',
    ]);
    expect([...ring.assignments()].map(([o, slots]) => [o, slots.length])).toEqual([
      ['node-a', 1172],
      ['node-b', 1588],
      ['node-c', 1336],
    ]);
  });

  it('is empty without owners and validates its input', () => {
    const ring = new HashRing();
    expect(ring.size).toBe(0);
    expect(ring.ownerOfSlot(0)).toBeUndefined();
    expect(ring.ownerOfKey('x')).toBeUndefined();
    expect(ring.assignments()).toEqual(new Map());
    expect(() => ring.ownerOfSlot(SLOT_COUNT)).toThrow(RangeError);
    expect(() => ring.ownerOfSlot(-1)).toThrow(RangeError);
    expect(() => new HashRing([], 0)).toThrow(RangeError);
  });

  it('assigns every slot exactly once, the same whatever the order owners were added in', () => {
    const a = new HashRing(['n1', 'n2', 'n3']);
    const b = new HashRing();
    for (const o of ['n3', 'n1', 'n2']) b.add(o);
    const as = a.assignments();
    expect([...as.keys()]).toEqual(['n1', 'n2', 'n3']);
    const all = [...as.values()].flat().sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: SLOT_COUNT }, (_, i) => i));
    expect(b.assignments()).toEqual(as);
    for (const [owner, slots] of as) for (const s of slots) expect(a.ownerOfSlot(s)).toBe(owner);
    expect(a.add('n1')).toBe(false);
    expect(a.remove('nope')).toBe(false);
    expect(a.list()).toEqual(['n1', 'n2', 'n3']);
  });

  it('single owner owns everything', () => {
    const ring = new HashRing(['only']);
    expect(shares(ring)).toEqual([SLOT_COUNT]);
    expect(ring.ownerOfVehicle('LSVAU2180N2183294')).toBe('only');
  });

  for (const owners of [
    ['node-a', 'node-b', 'node-c'],
    ['gw-1', 'gw-2', 'gw-3'],
    ['10.0.0.1:7000', '10.0.0.2:7000', '10.0.0.3:7000'],
  ]) {
    it(`adding a 4th owner to ${owners.join(',')} moves about 1/4 of the slots, all to it`, () => {
      const before = new HashRing(owners);
      const after = new HashRing(owners);
      const newcomer = `${owners[0]}-new`;
      expect(after.add(newcomer)).toBe(true);
      const m = moved(before, after);
      expect(m.length / SLOT_COUNT).toBeGreaterThan(0.15);
      expect(m.length / SLOT_COUNT).toBeLessThan(0.35);
      for (const s of m) expect(after.ownerOfSlot(s)).toBe(newcomer);
      expect(after.assignments().get(newcomer)).toEqual(m);
    });
  }

  it('removing one of 4 owners moves only that owner’s slots', () => {
    const owners = ['node-a', 'node-b', 'node-c', 'node-d'];
    for (const gone of owners) {
      const before = new HashRing(owners);
      const theirs = before.assignments().get(gone)!;
      const after = new HashRing(owners);
      expect(after.remove(gone)).toBe(true);
      expect(moved(before, after)).toEqual(theirs);
      expect(after.assignments().has(gone)).toBe(false);
      expect(theirs.length / SLOT_COUNT).toBeGreaterThan(0.15);
      expect(theirs.length / SLOT_COUNT).toBeLessThan(0.35);
    }
  });

  it('spreads slots reasonably evenly', () => {
    for (const n of [2, 3, 4, 5, 8]) {
      const ring = new HashRing(Array.from({ length: n }, (_, i) => `node-${i}`));
      const fair = SLOT_COUNT / n;
      for (const c of shares(ring)) {
        expect(c, `${n} owners`).toBeGreaterThan(fair * 0.7);
        expect(c, `${n} owners`).toBeLessThan(fair * 1.3);
      }
    }
    expect(DEFAULT_VIRTUAL_NODES).toBe(128);
  });

  it('maps arbitrary keys consistently too', () => {
    const ring = new HashRing(['x', 'y', 'z']);
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const o = ring.ownerOfKey(`key-${i}`)!;
      counts.set(o, (counts.get(o) ?? 0) + 1);
      expect(ring.ownerOfKey(`key-${i}`)).toBe(o);
    }
    for (const c of counts.values()) expect(c).toBeGreaterThan(600);
  });
});
