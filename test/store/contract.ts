// The Store port's contract suite (src/store/types.ts): every adapter runs it through storeContract().
// It only uses the Store interface, so the SQLite adapter and any later one (Redis) pass the same tests.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RecordData, UplinkRecord } from '../../src/protocol/record.js';
import type {
  CommandStatus,
  DeviceRow,
  NewCommand,
  Store,
  UplinkWrite,
} from '../../src/store/types.js';

/** One fresh, isolated set of data for one test. */
export interface StoreHarness {
  /** An open store over empty data. */
  store: Store;
  /**
   * Opens and returns a NEW store instance over the same underlying data (file, key prefix, …).
   * The caller closes the previous instance first.
   */
  reopen: () => Promise<Store>;
  /** Closes every store instance this harness opened (closing twice must be harmless) and deletes the data. */
  cleanup: () => Promise<void>;
}

export type MakeStore = () => Promise<StoreHarness>;

const T0 = 1_764_000_000_000;
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/** The record of section 8's example: every telemetry key, decimal floats, vendor hex. */
const FULL_DATA: RecordData = {
  latitude: 31.2304,
  longitude: 121.4737,
  speedKmh: 65.3,
  headingDeg: 90,
  altitudeM: -12,
  odometerKm: 10234.5,
  fuelOrSocPct: 80,
  statusFlags: 3,
  engineRpm: 2100,
  batteryMv: 12600,
  vendor: { '0x80': 'dead', '0xfe': '' },
};

function telemetry(
  vehicleId: string,
  seq: number,
  data: RecordData,
  extra: Partial<UplinkRecord> = {},
): UplinkRecord {
  return {
    vehicleId,
    seq,
    kind: 'telemetry',
    timestamp: T0 + seq * 1000,
    receivedAt: T0 + seq * 1000 + 12,
    data,
    ...extra,
  };
}

function event(
  vehicleId: string,
  seq: number,
  data: RecordData,
  extra: Partial<UplinkRecord> = {},
): UplinkRecord {
  return { ...telemetry(vehicleId, seq, data, extra), kind: 'event', ...extra };
}

function w(record: UplinkRecord): UplinkWrite {
  return { vehicleId: record.vehicleId, seq: record.seq, record };
}

function hole(vehicleId: string, seq: number): UplinkWrite {
  return { vehicleId, seq, record: null };
}

/** Telemetry writes for seqs from..to (inclusive) with distinct data per seq. */
function run(vehicleId: string, from: number, to: number): UplinkWrite[] {
  const out: UplinkWrite[] = [];
  for (let seq = from; seq <= to; seq++) {
    out.push(w(telemetry(vehicleId, seq, { odometerKm: seq / 10, speedKmh: seq % 7 })));
  }
  return out;
}

function seqs(records: readonly UplinkRecord[]): number[] {
  return records.map((r) => r.seq);
}

function cmd(vehicleId: string, id: string, overrides: Partial<NewCommand> = {}): NewCommand {
  return {
    id,
    vehicleId,
    name: 'door.lock',
    params: null,
    createdAt: T0,
    expiresAt: T0 + 86_400_000,
    traceparent: null,
    ...overrides,
  };
}

function device(id: string, overrides: Partial<DeviceRow> = {}): DeviceRow {
  return {
    id,
    secretHash: `hash-of-${id}`,
    scopes: ['telemetry:write', 'command:receive'],
    createdAt: T0,
    revokedAt: null,
    ...overrides,
  };
}

async function expectAppended(store: Store, writes: readonly UplinkWrite[]): Promise<void> {
  const failures = await store.appendUplink(writes);
  expect([...failures.entries()]).toEqual([]);
}

async function seenVehicle(store: Store, vehicleId: string) {
  const v = await store.getVehicle(vehicleId);
  expect(v, `vehicle ${vehicleId} should be seen`).toBeDefined();
  return v!;
}

export function storeContract(name: string, makeStore: MakeStore): void {
  describe(`Store contract: ${name}`, () => {
    let h: StoreHarness;
    let store: Store;

    beforeEach(async () => {
      h = await makeStore();
      store = h.store;
    });

    afterEach(async () => {
      await h.cleanup();
    });

    describe('basics', () => {
      it('names its engine and declares whether appends can fail per vehicle', () => {
        expect(typeof store.capabilities.engine).toBe('string');
        expect(store.capabilities.engine.length).toBeGreaterThan(0);
        expect(typeof store.capabilities.partialAppend).toBe('boolean');
      });

      it('ping resolves on an open store', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });

      it('getMeta is undefined for a missing key; setMeta stores, overwrites, keeps empty strings', async () => {
        expect(await store.getMeta('jwt.kid')).toBeUndefined();
        await store.setMeta('jwt.kid', 'k1');
        await store.setMeta('other', '');
        expect(await store.getMeta('jwt.kid')).toBe('k1');
        await store.setMeta('jwt.kid', 'k2 with spaces & ünïcode');
        expect(await store.getMeta('jwt.kid')).toBe('k2 with spaces & ünïcode');
        expect(await store.getMeta('other')).toBe('');
        expect(await store.getMeta('JWT.KID')).toBeUndefined();
      });
    });

    describe('appendUplink', () => {
      it('requires seq 1 as the first write of a new vehicle', async () => {
        const f = await store.appendUplink(run('V1', 2, 3));
        expect(f.get('V1')).toEqual({ kind: 'conflict', lastSeq: 0 });
        expect(f.size).toBe(1);
        expect(await store.listUplink('V1', 0, 100)).toEqual([]);

        const zero = await store.appendUplink([w(telemetry('V1', 0, {}))]);
        expect(zero.get('V1')).toEqual({ kind: 'conflict', lastSeq: 0 });

        await expectAppended(store, run('V1', 1, 1));
        expect(seqs(await store.listUplink('V1', 0, 100))).toEqual([1]);
      });

      it('accepts contiguous runs within a call and across calls', async () => {
        await expectAppended(store, run('V1', 1, 5));
        await expectAppended(store, run('V1', 6, 6));
        await expectAppended(store, run('V1', 7, 9));
        expect(seqs(await store.listUplink('V1', 0, 100))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
        await store.markSeen('V1', T0);
        expect((await seenVehicle(store, 'V1')).lastUplinkSeq).toBe(9);
      });

      it('reports a gap as a conflict with the last consumed seq and writes nothing of it', async () => {
        await expectAppended(store, run('V1', 1, 3));
        const f = await store.appendUplink(run('V1', 5, 6));
        expect(f.get('V1')).toEqual({ kind: 'conflict', lastSeq: 3 });
        expect(seqs(await store.listUplink('V1', 0, 100))).toEqual([1, 2, 3]);
        // The expected seq is still 4.
        await expectAppended(store, run('V1', 4, 4));
        expect(seqs(await store.listUplink('V1', 0, 100))).toEqual([1, 2, 3, 4]);
      });

      it('reports a repeat as a conflict and keeps the stored record', async () => {
        await expectAppended(store, [w(telemetry('V1', 1, { speedKmh: 10 }))]);
        await expectAppended(store, [w(telemetry('V1', 2, { speedKmh: 20 }))]);

        const again = await store.appendUplink([w(telemetry('V1', 2, { speedKmh: 99 }))]);
        expect(again.get('V1')).toEqual({ kind: 'conflict', lastSeq: 2 });
        const overlap = await store.appendUplink([
          w(telemetry('V1', 1, { speedKmh: 98 })),
          w(telemetry('V1', 2, { speedKmh: 97 })),
          w(telemetry('V1', 3, { speedKmh: 96 })),
        ]);
        expect(overlap.get('V1')).toEqual({ kind: 'conflict', lastSeq: 2 });

        const list = await store.listUplink('V1', 0, 100);
        expect(list.map((r) => r.data.speedKmh)).toEqual([10, 20]);
        await store.markSeen('V1', T0);
        expect((await seenVehicle(store, 'V1')).latest).toEqual({ speedKmh: 20 });
      });

      it('writes the other vehicles of a call when one conflicts', async () => {
        await expectAppended(store, run('B', 1, 2));
        const f = await store.appendUplink([
          ...run('A', 1, 2),
          ...run('B', 4, 5),
          ...run('C', 1, 1),
        ]);
        expect([...f.keys()]).toEqual(['B']);
        expect(f.get('B')).toEqual({ kind: 'conflict', lastSeq: 2 });
        expect(seqs(await store.listUplink('A', 0, 100))).toEqual([1, 2]);
        expect(seqs(await store.listUplink('B', 0, 100))).toEqual([1, 2]);
        expect(seqs(await store.listUplink('C', 0, 100))).toEqual([1]);
        await expectAppended(store, [...run('A', 3, 3), ...run('B', 3, 3), ...run('C', 2, 2)]);
      });

      it('resolves (does not reject) when every vehicle of a call conflicts', async () => {
        await expectAppended(store, run('A', 1, 1));
        const f = await store.appendUplink([...run('A', 1, 1), ...run('B', 2, 2)]);
        expect(f.get('A')).toEqual({ kind: 'conflict', lastSeq: 1 });
        expect(f.get('B')).toEqual({ kind: 'conflict', lastSeq: 0 });
        expect(f.size).toBe(2);
      });

      it('consumes a seq for a hole without listing it', async () => {
        await expectAppended(store, [
          w(telemetry('V1', 1, { speedKmh: 1 })),
          hole('V1', 2),
          w(event('V1', 3, { eventCode: 1 })),
        ]);
        // A call made only of holes.
        await expectAppended(store, [hole('V1', 4), hole('V1', 5)]);
        await expectAppended(store, [w(telemetry('V1', 6, { speedKmh: 6 })), hole('V1', 7)]);
        expect(seqs(await store.listUplink('V1', 0, 100))).toEqual([1, 3, 6]);
        // Holes are consumed: resending them conflicts, the next seq is 8.
        const f = await store.appendUplink([hole('V1', 7)]);
        expect(f.get('V1')).toEqual({ kind: 'conflict', lastSeq: 7 });
        await store.markSeen('V1', T0);
        expect((await seenVehicle(store, 'V1')).lastUplinkSeq).toBe(7);
        await expectAppended(store, run('V1', 8, 8));
      });

      it('consumes a hole as the first write of a new vehicle', async () => {
        await expectAppended(store, [hole('V1', 1)]);
        expect(await store.listUplink('V1', 0, 100)).toEqual([]);
        const v = await store.markSeen('V1', T0);
        expect(v.lastUplinkSeq).toBe(1);
        expect(v.latest).toEqual({});
        expect((await store.appendUplink(run('V1', 1, 1))).get('V1')).toEqual({
          kind: 'conflict',
          lastSeq: 1,
        });
      });

      it('merges telemetry into latest, the highest seq winning per key; events do not touch it', async () => {
        await store.markSeen('V1', T0);
        expect((await seenVehicle(store, 'V1')).latest).toEqual({});
        await expectAppended(store, [
          w(telemetry('V1', 1, { latitude: 31.2304, longitude: 121.4737, speedKmh: 65.3 })),
          w(telemetry('V1', 2, { speedKmh: 12.5, fuelOrSocPct: 80 })),
          w(
            event('V1', 3, {
              latitude: 1.5,
              eventCode: 2,
              severity: 3,
              detail: 'harsh braking',
            }),
          ),
          hole('V1', 4),
        ]);
        expect((await seenVehicle(store, 'V1')).latest).toEqual({
          latitude: 31.2304,
          longitude: 121.4737,
          speedKmh: 12.5,
          fuelOrSocPct: 80,
        });
        // Across calls, and keys set in the same batch twice: the higher seq wins.
        await expectAppended(store, [
          w(telemetry('V1', 5, { longitude: 100.25, batteryMv: 12600 })),
          w(telemetry('V1', 6, { batteryMv: 12500 })),
          w(event('V1', 7, { longitude: -3, eventCode: 5 })),
        ]);
        const v = await seenVehicle(store, 'V1');
        expect(v.latest).toEqual({
          latitude: 31.2304,
          longitude: 100.25,
          speedKmh: 12.5,
          fuelOrSocPct: 80,
          batteryMv: 12500,
        });
        expect(v.lastUplinkSeq).toBe(7);
      });

      it('replaces the vendor object as a whole key', async () => {
        await store.markSeen('V1', T0);
        await expectAppended(store, [
          w(telemetry('V1', 1, { vendor: { '0x80': 'aa', '0x81': 'bb' }, speedKmh: 1 })),
        ]);
        await expectAppended(store, [w(telemetry('V1', 2, { vendor: { '0x82': 'cc' } }))]);
        expect((await seenVehicle(store, 'V1')).latest).toEqual({
          vendor: { '0x82': 'cc' },
          speedKmh: 1,
        });
        // An event's vendor tags do not reach latest; telemetry without vendor keeps it.
        await expectAppended(store, [
          w(event('V1', 3, { vendor: { '0x90': 'ff' }, eventCode: 4 })),
          w(telemetry('V1', 4, { speedKmh: 2 })),
        ]);
        expect((await seenVehicle(store, 'V1')).latest).toEqual({
          vendor: { '0x82': 'cc' },
          speedKmh: 2,
        });
      });

      it('merges only keys a record carries: an undefined value is no key', async () => {
        await store.markSeen('V1', T0);
        await expectAppended(store, [w(telemetry('V1', 1, { speedKmh: 1, engineRpm: 800 }))]);
        await expectAppended(store, [
          w(telemetry('V1', 2, { speedKmh: undefined, batteryMv: 12000 })),
        ]);
        expect((await seenVehicle(store, 'V1')).latest).toStrictEqual({
          speedKmh: 1,
          engineRpm: 800,
          batteryMv: 12000,
        });
        expect((await store.listUplink('V1', 1, 10))[0]?.data).toStrictEqual({ batteryMv: 12000 });
      });

      it('keeps latest per vehicle and untouched by a conflicting write', async () => {
        await store.markSeen('A', T0);
        await expectAppended(store, [
          w(telemetry('A', 1, { speedKmh: 1 })),
          w(telemetry('B', 1, { engineRpm: 900 })),
        ]);
        const f = await store.appendUplink([w(telemetry('A', 3, { speedKmh: 99, altitudeM: 5 }))]);
        expect(f.get('A')).toEqual({ kind: 'conflict', lastSeq: 1 });
        expect((await seenVehicle(store, 'A')).latest).toEqual({ speedKmh: 1 });
        // B had no state before its first append, and was seen only afterwards.
        await store.markSeen('B', T0);
        expect((await seenVehicle(store, 'B')).latest).toEqual({ engineRpm: 900 });
        await expectAppended(store, [w(telemetry('B', 2, { batteryMv: 12000 }))]);
        expect((await seenVehicle(store, 'B')).latest).toEqual({
          engineRpm: 900,
          batteryMv: 12000,
        });
      });
    });

    describe('listUplink', () => {
      it('lists records with seq > afterSeq, in seq order, at most limit', async () => {
        // Interleave another vehicle and several calls.
        await expectAppended(store, [...run('V1', 1, 4), ...run('V2', 1, 3)]);
        await expectAppended(store, [...run('V2', 4, 4), ...run('V1', 5, 10)]);
        expect(seqs(await store.listUplink('V1', 0, 100))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        expect(seqs(await store.listUplink('V1', 3, 4))).toEqual([4, 5, 6, 7]);
        expect(seqs(await store.listUplink('V1', 8, 100))).toEqual([9, 10]);
        expect(seqs(await store.listUplink('V1', 0, 1))).toEqual([1]);
        expect(await store.listUplink('V1', 10, 100)).toEqual([]);
        expect(await store.listUplink('V1', 50, 100)).toEqual([]);
        expect(seqs(await store.listUplink('V2', 0, 100))).toEqual([1, 2, 3, 4]);
        expect(await store.listUplink('nobody', 0, 100)).toEqual([]);
        for (const r of await store.listUplink('V2', 0, 100)) expect(r.vehicleId).toBe('V2');
      });

      it('skips holes when paging with afterSeq', async () => {
        await expectAppended(store, [
          ...run('V1', 1, 2),
          hole('V1', 3),
          hole('V1', 4),
          ...run('V1', 5, 6),
        ]);
        expect(seqs(await store.listUplink('V1', 2, 2))).toEqual([5, 6]);
        expect(seqs(await store.listUplink('V1', 3, 1))).toEqual([5]);
      });

      it('round-trips records exactly: floats, big integers, events, traceparent present or absent', async () => {
        const records: UplinkRecord[] = [
          telemetry('LSVAU2180N2183294', 1, FULL_DATA, { traceparent: TRACEPARENT }),
          telemetry('LSVAU2180N2183294', 2, {
            latitude: -89.9999999,
            longitude: 179.9999999,
            speedKmh: 0.1,
            odometerKm: 429496729.5,
            headingDeg: 359.9,
          }),
          event(
            'LSVAU2180N2183294',
            3,
            {
              latitude: 0.0000001,
              longitude: -0.1,
              eventCode: 0x1234,
              severity: 0,
              detail: 'Tür offen ✓ "quoted" \\ \n',
              vendor: { '0xa0': '00ff' },
            },
            { traceparent: TRACEPARENT, timestamp: 18_446_744_073_709, receivedAt: T0 },
          ),
          event('LSVAU2180N2183294', 4, { eventCode: 1 }),
          telemetry('LSVAU2180N2183294', 5, {}),
        ];
        await expectAppended(store, records.map(w));
        const listed = await store.listUplink('LSVAU2180N2183294', 0, 100);
        expect(listed).toStrictEqual(records);
        // "present only when the gateway has one": no key at all, not `undefined`.
        expect(listed.map((r) => Object.hasOwn(r, 'traceparent'))).toEqual([
          true,
          false,
          true,
          false,
          false,
        ]);
        expect(Object.is(listed[0]!.data.latitude, 31.2304)).toBe(true);
        expect(JSON.stringify(listed[0]!.data)).toBe(JSON.stringify(FULL_DATA));
      });
    });

    describe('pruneUplink', () => {
      it('deletes only records received before the cutoff, in bounded steps, and returns counts', async () => {
        // receivedAt increases with the order of the appends; two vehicles interleaved.
        let at = T0;
        const put = async (vehicleId: string, seq: number) => {
          at += 10;
          await expectAppended(store, [
            w(telemetry(vehicleId, seq, { odometerKm: seq }, { receivedAt: at })),
          ]);
          return at;
        };
        const receivedAt = new Map<string, number>();
        for (let seq = 1; seq <= 6; seq++) {
          receivedAt.set(`A${seq}`, await put('A', seq));
          receivedAt.set(`B${seq}`, await put('B', seq));
        }
        const cutoff = receivedAt.get('B4')!; // A1..A4, B1..B3 are older: 7 records
        expect(await store.pruneUplink(T0, 100)).toBe(0);

        let deleted = 0;
        let steps = 0;
        for (;;) {
          const before = [
            ...(await store.listUplink('A', 0, 100)),
            ...(await store.listUplink('B', 0, 100)),
          ].length;
          const n = await store.pruneUplink(cutoff, 3);
          const after = [
            ...(await store.listUplink('A', 0, 100)),
            ...(await store.listUplink('B', 0, 100)),
          ].length;
          expect(n).toBeGreaterThanOrEqual(0);
          expect(n).toBeLessThanOrEqual(3);
          expect(before - after, 'the returned count is what was deleted').toBe(n);
          if (n === 0) break;
          deleted += n;
          steps++;
          expect(steps, 'pruning makes progress and ends').toBeLessThanOrEqual(7);
        }
        expect(deleted).toBe(7);
        expect(steps).toBeGreaterThanOrEqual(3);
        expect(seqs(await store.listUplink('A', 0, 100))).toEqual([5, 6]);
        // B4 was received exactly at the cutoff: not "before" it.
        expect(seqs(await store.listUplink('B', 0, 100))).toEqual([4, 5, 6]);
        expect(await store.pruneUplink(cutoff, 100)).toBe(0);
      });

      it('never deletes a record received at or after the cutoff, even out of append order', async () => {
        // Appended in this order; receivedAt not monotonic (clock step, or batching across sessions).
        const cutoff = T0 + 40;
        const plan: [string, number, number][] = [
          ['A', 1, T0 + 50],
          ['B', 1, T0 + 10],
          ['A', 2, cutoff],
          ['B', 2, T0 + 20],
          ['A', 3, T0 + 100],
          ['A', 4, T0 + 30],
        ];
        for (const [v, seq, receivedAt] of plan) {
          await expectAppended(store, [w(telemetry(v, seq, {}, { receivedAt }))]);
        }
        const count = async () =>
          (await store.listUplink('A', 0, 100)).length +
          (await store.listUplink('B', 0, 100)).length;
        let total = 0;
        for (const limit of [1, 2, 100, 100]) {
          const before = await count();
          const n = await store.pruneUplink(cutoff, limit);
          expect(n).toBeLessThanOrEqual(limit);
          expect(before - (await count())).toBe(n);
          total += n;
        }
        expect(total).toBeLessThanOrEqual(3);
        const left = [
          ...(await store.listUplink('A', 0, 100)),
          ...(await store.listUplink('B', 0, 100)),
        ];
        // Everything received at/after the cutoff is still there.
        expect(
          left.filter((r) => r.receivedAt >= cutoff).map((r) => `${r.vehicleId}${r.seq}`),
        ).toEqual(['A1', 'A2', 'A3']);
      });

      it('keeps seq state and latest: the next append must still be lastSeq + 1', async () => {
        await store.markSeen('A', T0);
        await expectAppended(store, [
          w(telemetry('A', 1, { speedKmh: 5, latitude: 31.2304 }, { receivedAt: T0 })),
          w(telemetry('A', 2, { speedKmh: 6 }, { receivedAt: T0 + 1 })),
          hole('A', 3),
        ]);
        expect(await store.pruneUplink(T0 + 100, 100)).toBe(2);
        expect(await store.listUplink('A', 0, 100)).toEqual([]);
        const v = await seenVehicle(store, 'A');
        expect(v.lastUplinkSeq).toBe(3);
        expect(v.latest).toEqual({ speedKmh: 6, latitude: 31.2304 });
        // A pruned seq is still consumed.
        for (const seq of [1, 2, 3, 5]) {
          const f = await store.appendUplink([
            w(telemetry('A', seq, {}, { receivedAt: T0 + 200 })),
          ]);
          expect(f.get('A'), `seq ${seq}`).toEqual({ kind: 'conflict', lastSeq: 3 });
        }
        await expectAppended(store, [w(telemetry('A', 4, {}, { receivedAt: T0 + 200 }))]);
        expect(seqs(await store.listUplink('A', 0, 100))).toEqual([4]);
        expect((await seenVehicle(store, 'A')).latest).toEqual({ speedKmh: 6, latitude: 31.2304 });
      });
    });

    describe('vehicles', () => {
      it('getVehicle is undefined until markSeen, even with commands or uplink for the vehicle', async () => {
        expect(await store.getVehicle('V1')).toBeUndefined();
        await store.createCommand(cmd('V1', 'c1'));
        expect(await store.getVehicle('V1')).toBeUndefined();
        await expectAppended(store, run('V1', 1, 2));
        expect(await store.getVehicle('V1')).toBeUndefined();
        expect((await store.listVehicles(100, null)).items).toEqual([]);

        const seen = await store.markSeen('V1', T0 + 5);
        expect(seen).toEqual({
          id: 'V1',
          lastUplinkSeq: 2,
          latest: { odometerKm: 0.2, speedKmh: 2 },
          firstSeenAt: T0 + 5,
          lastSeenAt: T0 + 5,
        });
        expect(await store.getVehicle('V1')).toEqual(seen);
        expect(await store.getVehicle('v1')).toBeUndefined();
      });

      it('markSeen creates a new vehicle, keeps firstSeenAt and moves lastSeenAt', async () => {
        const first = await store.markSeen('V1', T0);
        expect(first).toEqual({
          id: 'V1',
          lastUplinkSeq: 0,
          latest: {},
          firstSeenAt: T0,
          lastSeenAt: T0,
        });
        const again = await store.markSeen('V1', T0 + 60_000);
        expect(again.firstSeenAt).toBe(T0);
        expect(again.lastSeenAt).toBe(T0 + 60_000);
        expect(await store.getVehicle('V1')).toEqual(again);
        // The vehicle's commands and uplink keep working after it is seen.
        expect((await store.createCommand(cmd('V1', 'c1'))).seq).toBe(1);
        await expectAppended(store, run('V1', 1, 1));
        expect((await seenVehicle(store, 'V1')).lastUplinkSeq).toBe(1);
      });

      it('lists seen vehicles only, in pages, without duplicates or misses', async () => {
        expect(await store.listVehicles(10, null)).toEqual({ items: [], next: null });
        const ids: string[] = [];
        for (let i = 0; i < 23; i++) {
          // Not inserted in id order.
          ids.push(`VIN${String((i * 7) % 23).padStart(4, '0')}`);
        }
        for (const [i, id] of ids.entries()) await store.markSeen(id, T0 + i);
        await store.createCommand(cmd('UNSEEN-CMD', 'c1'));
        await expectAppended(store, run('UNSEEN-UP', 1, 1));
        await expectAppended(store, run(ids[3]!, 1, 1));

        const listed: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page = await store.listVehicles(5, cursor);
          expect(page.items.length).toBeLessThanOrEqual(5);
          for (const v of page.items) {
            listed.push(v.id);
            expect(v).toEqual(await store.getVehicle(v.id));
          }
          cursor = page.next;
          pages++;
          expect(pages, 'paging ends').toBeLessThanOrEqual(23);
        } while (cursor !== null);
        expect(listed.length).toBe(new Set(listed).size);
        expect([...listed].sort()).toEqual([...ids].sort());
      });

      it('pages stay consistent while vehicles are added or seen again between pages', async () => {
        const ids = Array.from({ length: 12 }, (_, i) => `M${String(i * 2 + 10)}`);
        for (const id of ids) await store.markSeen(id, T0);
        const listed: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page = await store.listVehicles(4, cursor);
          listed.push(...page.items.map((v) => v.id));
          cursor = page.next;
          pages++;
          // Vehicles seen again and new ones on both sides of the ordering.
          for (const id of page.items.map((v) => v.id)) await store.markSeen(id, T0 + pages);
          await store.markSeen(`A-new-${pages}`, T0);
          await store.markSeen(`Z-new-${pages}`, T0);
          expect(pages, 'paging ends').toBeLessThanOrEqual(30);
        } while (cursor !== null);
        expect(listed.length).toBe(new Set(listed).size);
        for (const id of ids) expect(listed.filter((x) => x === id)).toEqual([id]);
      });

      it('a page as large as the fleet returns everything', async () => {
        for (const id of ['c', 'a', 'b']) await store.markSeen(id, T0);
        const page = await store.listVehicles(3, null);
        expect(page.items.map((v) => v.id).sort()).toEqual(['a', 'b', 'c']);
        if (page.next !== null) {
          expect((await store.listVehicles(3, page.next)).items).toEqual([]);
        }
        const big = await store.listVehicles(1000, null);
        expect(big.items.map((v) => v.id).sort()).toEqual(['a', 'b', 'c']);
        expect(big.next).toBeNull();
      });
    });

    describe('commands', () => {
      it('assigns seq 1, 2, 3 per vehicle, independently, pending with a null result', async () => {
        const a1 = await store.createCommand(
          cmd('A', 'a1', {
            params: '{"temp": 21.5, "zones": [1,2]}',
            traceparent: TRACEPARENT,
            name: 'config.set',
            createdAt: T0 + 1,
            expiresAt: T0 + 1001,
          }),
        );
        expect(a1).toEqual({
          id: 'a1',
          vehicleId: 'A',
          seq: 1,
          name: 'config.set',
          params: '{"temp": 21.5, "zones": [1,2]}',
          createdAt: T0 + 1,
          expiresAt: T0 + 1001,
          status: 'pending',
          result: null,
          updatedAt: a1.updatedAt,
          traceparent: TRACEPARENT,
        });
        expect(typeof a1.updatedAt).toBe('number');
        const b1 = await store.createCommand(cmd('B', 'b1'));
        const a2 = await store.createCommand(cmd('A', 'a2'));
        const a3 = await store.createCommand(cmd('A', 'a3'));
        const b2 = await store.createCommand(cmd('B', 'b2'));
        expect([a1.seq, a2.seq, a3.seq]).toEqual([1, 2, 3]);
        expect([b1.seq, b2.seq]).toEqual([1, 2]);
        expect(b1).toMatchObject({
          params: null,
          traceparent: null,
          status: 'pending',
          result: null,
        });
        expect(await store.getCommand('a1')).toEqual(a1);
        expect(await store.getCommand('b2')).toEqual(b2);
        expect(await store.getCommand('nope')).toBeUndefined();
      });

      it('never reuses a seq, whatever happened to the earlier commands', async () => {
        await store.createCommand(cmd('A', 'a1', { expiresAt: T0 + 10 }));
        await store.createCommand(cmd('A', 'a2'));
        await store.createCommand(cmd('A', 'a3'));
        expect(await store.transitionCommand('a3', ['pending'], 'cancelled', T0 + 1)).toBeDefined();
        expect(await store.transitionCommand('a2', ['pending'], 'delivered', T0 + 1)).toBeDefined();
        expect(
          await store.transitionCommand('a2', ['delivered'], 'succeeded', T0 + 2, { ok: true }),
        ).toBeDefined();
        expect((await store.expireCommands(T0 + 20, 10)).map((c) => c.id)).toEqual(['a1']);
        expect(await store.openCommands('A', T0 + 20)).toEqual([]);
        expect((await store.createCommand(cmd('A', 'a4'))).seq).toBe(4);
        expect((await store.createCommand(cmd('A', 'a5'))).seq).toBe(5);
      });

      it('getVehicle and markSeen keep the command seq counter', async () => {
        await store.createCommand(cmd('A', 'a1'));
        await store.markSeen('A', T0);
        await expectAppended(store, run('A', 1, 3));
        await store.markSeen('A', T0 + 1);
        expect((await store.createCommand(cmd('A', 'a2'))).seq).toBe(2);
      });

      it('transitionCommand is a compare-and-set on the status', async () => {
        const created = await store.createCommand(cmd('A', 'a1'));
        const delivered = await store.transitionCommand('a1', ['pending'], 'delivered', T0 + 5);
        expect(delivered).toEqual({
          ...created,
          status: 'delivered',
          updatedAt: T0 + 5,
          result: null,
        });
        expect(await store.getCommand('a1')).toEqual(delivered);

        // Wrong from-status: undefined and the row is unchanged (status, result, updatedAt).
        expect(
          await store.transitionCommand('a1', ['pending'], 'cancelled', T0 + 6, { no: 1 }),
        ).toBeUndefined();
        expect(await store.transitionCommand('a1', [], 'cancelled', T0 + 6)).toBeUndefined();
        expect(await store.getCommand('a1')).toEqual(delivered);
        expect(
          await store.transitionCommand('missing', ['pending'], 'cancelled', T0),
        ).toBeUndefined();
        expect(await store.getCommand('missing')).toBeUndefined();

        // Any of several from-statuses matches.
        const done = await store.transitionCommand(
          'a1',
          ['pending', 'delivered'],
          'succeeded',
          T0 + 7,
          { locked: true },
        );
        expect(done).toMatchObject({
          status: 'succeeded',
          updatedAt: T0 + 7,
          result: { locked: true },
        });
        // A second final ack does not match open statuses.
        expect(
          await store.transitionCommand('a1', ['pending', 'delivered'], 'failed', T0 + 8, 'late'),
        ).toBeUndefined();
        expect(await store.getCommand('a1')).toEqual(done);
      });

      it('exactly one of concurrent transitions from the same status wins', async () => {
        await store.createCommand(cmd('A', 'a1'));
        const targets: CommandStatus[] = ['delivered', 'cancelled', 'expired', 'failed'];
        const results = await Promise.all(
          targets.map((to, i) => store.transitionCommand('a1', ['pending'], to, T0 + i, i)),
        );
        const winners = results.filter((r) => r !== undefined);
        expect(winners).toHaveLength(1);
        expect(await store.getCommand('a1')).toEqual(winners[0]);
      });

      it('stores the result and parses it back: objects, arrays, numbers, strings, null', async () => {
        const cases: [string, unknown][] = [
          ['obj', { ok: true, n: 1.5, lat: 31.2304, nested: [1, 'a', null, { x: -0.1 }] }],
          ['arr', [3, 2, 1]],
          ['num', 42],
          ['str', 'not json {'],
          ['strjson', '{"looks":"like json"}'],
          ['strnum', '42'],
          ['empty', ''],
          ['hex', 'c328'],
          ['nul', null],
          ['bool', false],
        ];
        for (const [id, result] of cases) {
          await store.createCommand(cmd('A', id));
          const r = await store.transitionCommand(id, ['pending'], 'succeeded', T0 + 1, result);
          expect(r?.result, id).toStrictEqual(result);
          expect((await store.getCommand(id))?.result, id).toStrictEqual(result);
        }
        // Without a result argument the stored result stays.
        const kept = await store.transitionCommand('obj', ['succeeded'], 'failed', T0 + 2);
        expect(kept?.result).toStrictEqual(cases[0]![1]);
        expect(kept?.status).toBe('failed');
      });

      it('openCommands: neither final nor expired at now, ordered by seq', async () => {
        const now = T0 + 10_000;
        // Ids sort opposite to seq; expiries not in seq order.
        await store.createCommand(cmd('A', 'z-open-pending', { expiresAt: now + 500 }));
        await store.createCommand(cmd('A', 'y-open-delivered', { expiresAt: now + 100 }));
        await store.createCommand(cmd('A', 'x-succeeded', { expiresAt: now + 100 }));
        await store.createCommand(cmd('A', 'w-cancelled', { expiresAt: now + 100 }));
        await store.createCommand(cmd('A', 'v-past-pending', { expiresAt: now - 1 }));
        await store.createCommand(cmd('A', 'u-past-delivered', { expiresAt: now - 1000 }));
        await store.createCommand(cmd('A', 't-open-pending', { expiresAt: now + 1 }));
        await store.createCommand(cmd('A', 's-expired', { expiresAt: now + 100 }));
        await store.createCommand(cmd('B', 'r-other-vehicle', { expiresAt: now + 100 }));
        await store.transitionCommand('y-open-delivered', ['pending'], 'delivered', T0);
        await store.transitionCommand('u-past-delivered', ['pending'], 'delivered', T0);
        await store.transitionCommand('x-succeeded', ['pending'], 'succeeded', T0, null);
        await store.transitionCommand('w-cancelled', ['pending'], 'cancelled', T0);
        await store.transitionCommand('s-expired', ['pending'], 'expired', T0);

        const open = await store.openCommands('A', now);
        expect(open.map((c) => c.id)).toEqual([
          'z-open-pending',
          'y-open-delivered',
          't-open-pending',
        ]);
        expect(open.map((c) => c.seq)).toEqual([1, 2, 7]);
        expect(open[1]).toEqual(await store.getCommand('y-open-delivered'));
        expect((await store.openCommands('B', now)).map((c) => c.id)).toEqual(['r-other-vehicle']);
        expect(await store.openCommands('nobody', now)).toEqual([]);
        // Earlier, the commands expired by time were still open.
        expect((await store.openCommands('A', now - 2000)).map((c) => c.seq)).toEqual([
          1, 2, 5, 6, 7,
        ]);
      });

      it('at now === expiresAt a command is either open or expirable, never both nor neither', async () => {
        const now = T0 + 5000;
        await store.createCommand(cmd('A', 'edge', { expiresAt: now }));
        const open = (await store.openCommands('A', now)).map((c) => c.id);
        const expired = (await store.expireCommands(now, 10)).map((c) => c.id);
        expect([...open, ...expired]).toEqual(['edge']);
      });

      it('expireCommands marks open commands past expiresAt as expired and returns them', async () => {
        const now = T0 + 10_000;
        await store.createCommand(cmd('A', 'a-pending-past', { expiresAt: now - 5 }));
        await store.createCommand(cmd('A', 'a-delivered-past', { expiresAt: now - 50 }));
        await store.createCommand(cmd('A', 'a-pending-future', { expiresAt: now + 5 }));
        await store.createCommand(cmd('A', 'a-succeeded-past', { expiresAt: now - 5 }));
        await store.createCommand(cmd('A', 'a-cancelled-past', { expiresAt: now - 5 }));
        await store.createCommand(cmd('B', 'b-pending-past', { expiresAt: now - 5 }));
        await store.transitionCommand('a-delivered-past', ['pending'], 'delivered', T0);
        await store.transitionCommand('a-succeeded-past', ['pending'], 'succeeded', T0, { r: 1 });
        await store.transitionCommand('a-cancelled-past', ['pending'], 'cancelled', T0);
        const finalBefore = await store.getCommand('a-succeeded-past');

        const expired = await store.expireCommands(now, 100);
        expect(expired.map((c) => c.id).sort()).toEqual([
          'a-delivered-past',
          'a-pending-past',
          'b-pending-past',
        ]);
        for (const c of expired) {
          expect(c.status).toBe('expired');
          expect(c.updatedAt).toBe(now);
          expect(await store.getCommand(c.id)).toEqual(c);
        }
        expect((await store.getCommand('a-pending-future'))?.status).toBe('pending');
        expect(await store.getCommand('a-succeeded-past')).toEqual(finalBefore);
        expect((await store.getCommand('a-cancelled-past'))?.status).toBe('cancelled');
        expect(await store.expireCommands(now, 100)).toEqual([]);
        // An ack after expiry does not match.
        expect(
          await store.transitionCommand(
            'a-delivered-past',
            ['pending', 'delivered'],
            'succeeded',
            now,
          ),
        ).toBeUndefined();
      });

      it('expireCommands respects its limit', async () => {
        const now = T0 + 10_000;
        for (let i = 0; i < 5; i++) {
          await store.createCommand(cmd(i % 2 ? 'A' : 'B', `c${i}`, { expiresAt: now - i - 1 }));
        }
        const seen: string[] = [];
        const sizes: number[] = [];
        for (let step = 0; step < 10; step++) {
          const batch = await store.expireCommands(now, 2);
          sizes.push(batch.length);
          expect(batch.length).toBeLessThanOrEqual(2);
          if (batch.length === 0) break;
          seen.push(...batch.map((c) => c.id));
        }
        expect(sizes).toEqual([2, 2, 1, 0]);
        expect(seen.sort()).toEqual(['c0', 'c1', 'c2', 'c3', 'c4']);
      });
    });

    describe('devices', () => {
      it('adds, refuses a duplicate, revokes, and accepts a revoked id again', async () => {
        expect(await store.getDevice('D1')).toBeUndefined();
        expect(await store.addDevice(device('D1'))).toBe(true);
        expect(await store.getDevice('D1')).toEqual(device('D1'));

        expect(
          await store.addDevice(
            device('D1', { secretHash: 'other', scopes: [], createdAt: T0 + 1 }),
          ),
        ).toBe(false);
        expect(await store.getDevice('D1')).toEqual(device('D1'));

        expect(await store.revokeDevice('D1', T0 + 100)).toBe(true);
        expect(await store.getDevice('D1')).toEqual(device('D1', { revokedAt: T0 + 100 }));
        expect(await store.revokeDevice('D1', T0 + 200)).toBe(false);
        expect((await store.getDevice('D1'))?.revokedAt).toBe(T0 + 100);
        expect(await store.revokeDevice('nobody', T0)).toBe(false);
        expect(await store.getDevice('nobody')).toBeUndefined();

        const again = device('D1', {
          secretHash: 'new-hash',
          scopes: ['command:receive'],
          createdAt: T0 + 300,
        });
        expect(await store.addDevice(again)).toBe(true);
        expect(await store.getDevice('D1')).toEqual(again);
        expect((await store.getDevice('D1'))?.revokedAt).toBeNull();
        expect(await store.addDevice(again)).toBe(false);
      });

      it('keeps devices apart and round-trips scopes in order, empty included', async () => {
        expect(await store.addDevice(device('D1', { scopes: ['b', 'a', 'c'] }))).toBe(true);
        expect(await store.addDevice(device('D2', { scopes: [] }))).toBe(true);
        expect((await store.getDevice('D1'))?.scopes).toEqual(['b', 'a', 'c']);
        expect((await store.getDevice('D2'))?.scopes).toEqual([]);
        expect(await store.revokeDevice('D2', T0)).toBe(true);
        expect((await store.getDevice('D1'))?.revokedAt).toBeNull();
      });
    });

    describe('persistence', () => {
      it('keeps everything across close() and reopen', async () => {
        await store.markSeen('A', T0);
        await store.markSeen('A', T0 + 50);
        const records = [
          telemetry('A', 1, FULL_DATA, { traceparent: TRACEPARENT, receivedAt: T0 + 1 }),
          telemetry('A', 3, { speedKmh: 3.3 }, { receivedAt: T0 + 3 }),
          event('A', 4, { eventCode: 3, detail: 'low battery' }, { receivedAt: T0 + 4 }),
          telemetry('A', 5, { batteryMv: 11900 }, { receivedAt: T0 + 500 }),
        ];
        await expectAppended(store, [w(records[0]!), hole('A', 2), w(records[1]!), w(records[2]!)]);
        await expectAppended(store, [w(records[3]!), hole('A', 6)]);
        expect(await store.pruneUplink(T0 + 2, 10)).toBe(1);
        await store.createCommand(cmd('A', 'a1', { params: '[1]', traceparent: TRACEPARENT }));
        await store.createCommand(cmd('A', 'a2', { expiresAt: T0 + 10 }));
        await store.createCommand(cmd('NEVER', 'n1'));
        await store.transitionCommand('a1', ['pending'], 'succeeded', T0 + 60, { done: 'yes' });
        await store.expireCommands(T0 + 20, 10);
        await store.addDevice(device('D1'));
        await store.addDevice(device('D2'));
        await store.revokeDevice('D2', T0 + 70);
        await store.setMeta('k', 'v');

        const vehicle = await store.getVehicle('A');
        const uplink = await store.listUplink('A', 0, 100);
        const commands = await Promise.all(['a1', 'a2', 'n1'].map((id) => store.getCommand(id)));
        const devices = await Promise.all(['D1', 'D2'].map((id) => store.getDevice(id)));
        expect(uplink).toStrictEqual(records.slice(1));
        expect(vehicle?.lastUplinkSeq).toBe(6);

        await store.close();
        const reopened = await h.reopen();
        await reopened.ping();
        expect(await reopened.getVehicle('A')).toEqual(vehicle);
        expect(await reopened.getVehicle('NEVER')).toBeUndefined();
        expect(await reopened.listUplink('A', 0, 100)).toStrictEqual(uplink);
        expect(await Promise.all(['a1', 'a2', 'n1'].map((id) => reopened.getCommand(id)))).toEqual(
          commands,
        );
        expect(await Promise.all(['D1', 'D2'].map((id) => reopened.getDevice(id)))).toEqual(
          devices,
        );
        expect(await reopened.getMeta('k')).toBe('v');
        expect((await reopened.listVehicles(10, null)).items).toEqual([vehicle]);

        // Counters continue where they were.
        expect((await reopened.appendUplink(run('A', 6, 6))).get('A')).toEqual({
          kind: 'conflict',
          lastSeq: 6,
        });
        await expectAppended(reopened, run('A', 7, 7));
        expect((await reopened.createCommand(cmd('A', 'a3'))).seq).toBe(3);
        expect((await reopened.createCommand(cmd('NEVER', 'n2'))).seq).toBe(2);
        expect(await reopened.openCommands('A', T0 + 20)).toEqual([
          await reopened.getCommand('a3'),
        ]);
      });
    });
  });
}
