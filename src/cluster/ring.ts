// Vehicle placement for scale-out (issue 5): CRC-32 of the vehicle id onto a fixed ring of virtual
// slots, slots onto partitions, and a consistent-hash ring assigning slots (or any key) to owners.
// slotOf() is part of the data layout: it must never change, or stored vehicles move partitions.
import { crc32 } from './crc32.js';

/** Fixed number of virtual slots. Changing it re-maps every vehicle. */
export const SLOT_COUNT = 4096;

/** The vehicle's virtual slot: crc32(UTF-8 of the id) mod SLOT_COUNT, stable across processes and versions. */
export function slotOf(vehicleId: string): number {
  return crc32(vehicleId) % SLOT_COUNT;
}

/** The vehicle's partition among `partitions` (≥ 1): its slot mod the partition count. */
export function partitionOf(vehicleId: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions must be a positive integer, got ${partitions}`);
  }
  return slotOf(vehicleId) % partitions;
}

export const DEFAULT_VIRTUAL_NODES = 128;

const RING_SIZE = 2 ** 32;

/**
 * A ring position: crc32 of the UTF-8, passed through MurmurHash3's 32-bit finalizer. CRC-32 alone is
 * linear, so the points of `${owner}#0` … `${owner}#127` cluster and owners get up to 2× unequal
 * shares; the finalizer spreads them like a cryptographic hash would, and stays as stable as crc32.
 */
export function ringPosition(key: string): number {
  let h = crc32(key);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

interface Point {
  pos: number;
  owner: string;
}

/**
 * Consistent hashing: each owner (a node id, a partition consumer…) gets `virtualNodes` points at
 * ringPosition(`${owner}#${i}`); a key belongs to the first point at or after its own position
 * (wrapping). Adding or removing one owner of N moves only about 1/N of the keys, all to or from that
 * owner.
 */
export class HashRing {
  private readonly owners = new Set<string>();
  private points: Point[] = [];

  constructor(
    owners: Iterable<string> = [],
    private readonly virtualNodes = DEFAULT_VIRTUAL_NODES,
  ) {
    if (!Number.isInteger(virtualNodes) || virtualNodes < 1) {
      throw new RangeError(`virtualNodes must be a positive integer, got ${virtualNodes}`);
    }
    for (const o of owners) this.owners.add(o);
    this.rebuild();
  }

  get size(): number {
    return this.owners.size;
  }

  has(owner: string): boolean {
    return this.owners.has(owner);
  }

  /** The owners, sorted. */
  list(): string[] {
    return [...this.owners].sort();
  }

  /** Adds an owner; false when it was already there. */
  add(owner: string): boolean {
    if (this.owners.has(owner)) return false;
    this.owners.add(owner);
    this.rebuild();
    return true;
  }

  /** Removes an owner; false when it was not there. */
  remove(owner: string): boolean {
    if (!this.owners.delete(owner)) return false;
    this.rebuild();
    return true;
  }

  /** The owner of a ring position (0 … 2^32-1), or undefined when the ring has no owner. */
  ownerAt(position: number): string | undefined {
    const pts = this.points;
    if (pts.length === 0) return undefined;
    // First point with pos >= position (binary search), wrapping to the first point.
    let lo = 0;
    let hi = pts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (pts[mid]!.pos < position) lo = mid + 1;
      else hi = mid;
    }
    return (pts[lo] ?? pts[0]!).owner;
  }

  /** The owner of a slot (0 … SLOT_COUNT-1); slots sit evenly spaced on the ring. */
  ownerOfSlot(slot: number): string | undefined {
    if (!Number.isInteger(slot) || slot < 0 || slot >= SLOT_COUNT) {
      throw new RangeError(`slot must be an integer in 0..${SLOT_COUNT - 1}, got ${slot}`);
    }
    return this.ownerAt(Math.floor(((slot + 0.5) * RING_SIZE) / SLOT_COUNT));
  }

  /** The owner of an arbitrary key, placed at ringPosition(key). */
  ownerOfKey(key: string): string | undefined {
    return this.ownerAt(ringPosition(key));
  }

  /** The owner of a vehicle: the owner of its slot. */
  ownerOfVehicle(vehicleId: string): string | undefined {
    return this.ownerOfSlot(slotOf(vehicleId));
  }

  /** Every slot by owner (each owner listed, possibly with no slot), slots ascending. */
  assignments(): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const o of this.list()) out.set(o, []);
    if (this.points.length === 0) return out;
    for (let slot = 0; slot < SLOT_COUNT; slot++) out.get(this.ownerOfSlot(slot)!)!.push(slot);
    return out;
  }

  private rebuild(): void {
    const pts: Point[] = [];
    for (const owner of this.owners) {
      for (let i = 0; i < this.virtualNodes; i++)
        pts.push({ pos: ringPosition(`${owner}#${i}`), owner });
    }
    // Ties (two owners on one position) break by owner name, so every process builds the same ring.
    pts.sort((a, b) => a.pos - b.pos || (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0));
    this.points = pts;
  }
}
