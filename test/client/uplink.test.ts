// VehicleClient uplink outbox: seqs, cumulative acks, resend from NEXT_UPLINK_SEQ, OUT_OF_ORDER, THROTTLED, flow control, batching (PROTOCOL.md 3, 5, 7).
import { describe, expect, it } from 'vitest';
import {
  AckStatus,
  InvalidSampleError,
  ManualTimers,
  OutboxFullError,
  UplinkRefusedError,
  type AckedInfo,
  type Timers,
} from '../../src/client/index.js';
import { Cmd, decodeTelemetryBatch } from '../../src/protocol/index.js';
import { settle } from './peer.js';
import { connected, setup, track } from './setup.js';

const T0 = 1_764_000_000_000;
const sample = (i: number) => ({ timestamp: T0 + i, speed: 100 + i, latitude: 312_304_000 });

describe('VehicleClient uplink (PROTOCOL.md 3.2)', () => {
  it('assigns seqs from 1 and resolves each publish when STORED, cumulatively', async () => {
    const h = setup();
    const peer = await connected(h, { version: 1 });
    const acked: AckedInfo[] = [];
    h.client.on('acked', (a) => acked.push(a));
    const p = [1, 2, 3, 4, 5].map((i) => track(h.client.publishTelemetry(sample(i))));
    expect(await peer.uplink(5)).toEqual([
      [1, 't'],
      [2, 't'],
      [3, 't'],
      [4, 't'],
      [5, 't'],
    ]);
    peer.ack(3, AckStatus.STORED);
    await settle();
    expect(p.map((x) => x.settled())).toEqual([true, true, true, false, false]);
    expect(p.map((x) => x.value())).toEqual([1, 2, 3, undefined, undefined]);
    expect(acked).toEqual([{ seq: 3, status: AckStatus.STORED }]);
    expect(h.client.unacked).toBe(2);
    peer.ack(5);
    await settle();
    expect(p.map((x) => x.value())).toEqual([1, 2, 3, 4, 5]);
    expect(h.client.unacked).toBe(0);
    expect(h.client.nextSeq).toBe(6);
  });

  it('shares one seq sequence between TELEMETRY and EVENT', async () => {
    const h = setup();
    const peer = await connected(h, { version: 1 });
    const a = h.client.publishTelemetry(sample(1));
    const b = h.client.publishEvent({ timestamp: T0, eventCode: 2, severity: 1, detail: 'brake' });
    expect(await peer.uplink(2)).toEqual([
      [1, 't'],
      [2, 'e'],
    ]);
    peer.ack(2);
    expect(await Promise.all([a, b])).toEqual([1, 2]);
  });

  it('after CONNACK resends every unacked message from NEXT_UPLINK_SEQ on, in order', async () => {
    const h = setup();
    const p = [1, 2, 3, 4, 5].map((i) => track(h.client.publishTelemetry(sample(i))));
    // Sent on a first connection that drops before any ack; the gateway stored 1 and 2 meanwhile.
    const first = await connected(h, { version: 1 });
    expect((await first.uplink(5)).map(([seq]) => seq)).toEqual([1, 2, 3, 4, 5]);
    first.close();
    await settle();
    h.timers.runNext();
    const peer = await h.net.nextPeer();
    await peer.accept({ version: 1, nextUplinkSeq: 3 });
    expect(await peer.uplink(3)).toEqual([
      [3, 't'],
      [4, 't'],
      [5, 't'],
    ]);
    // 1 and 2 were consumed before: their promises resolve.
    expect(p.map((x) => x.value())).toEqual([1, 2, undefined, undefined, undefined]);
    peer.ack(4);
    await settle();
    // The connection drops with 5 unacked: the next session resends it.
    peer.close();
    await settle();
    h.timers.runNext();
    const peer2 = await h.net.nextPeer();
    await peer2.accept({ version: 1, nextUplinkSeq: 5 });
    expect(await peer2.uplink(1)).toEqual([[5, 't']]);
    peer2.ack(5);
    await settle();
    expect(p.map((x) => x.value())).toEqual([1, 2, 3, 4, 5]);
  });

  it('never reports a message stored that it never sent: unsent messages move past NEXT_UPLINK_SEQ', async () => {
    // A lost or replaced outbox: the client starts again at seq 1, the gateway holds 1..9 from
    // before. Published while offline, these three were never sent; the gateway's 1..3 are other
    // messages, so resolving them (3.2: below NEXT_UPLINK_SEQ is consumed) would lose them.
    const h = setup();
    const moved: unknown[] = [];
    h.client.on('renumbered', (r) => moved.push(r));
    const p = [1, 2, 3].map((i) => track(h.client.publishTelemetry(sample(i))));
    const peer = await connected(h, { version: 1, nextUplinkSeq: 10 });
    expect(moved).toEqual([{ from: 1, to: 10, count: 3 }]);
    expect(await peer.uplink(3)).toEqual([
      [10, 't'],
      [11, 't'],
      [12, 't'],
    ]);
    await settle();
    expect(p.map((x) => x.settled())).toEqual([false, false, false]);
    peer.ack(12);
    await settle();
    expect(p.map((x) => x.value())).toEqual([10, 11, 12]);
    expect(h.client.nextSeq).toBe(13);
  });

  it('moves its seq past a NEXT_UPLINK_SEQ beyond anything it holds (a lost outbox)', async () => {
    const h = setup();
    const peer = await connected(h, { version: 1, nextUplinkSeq: 101 });
    const p = h.client.publishTelemetry(sample(1));
    expect(await peer.uplink(1)).toEqual([[101, 't']]);
    peer.ack(101);
    expect(await p).toBe(101);
  });

  it('REJECTED and FORBIDDEN reject that seq with a typed error; DUPLICATE resolves', async () => {
    const h = setup();
    const peer = await connected(h, { version: 1 });
    const p = [1, 2, 3, 4].map((i) => track(h.client.publishTelemetry(sample(i))));
    await peer.uplink(4);
    peer.ack(1, AckStatus.STORED);
    peer.ack(2, AckStatus.REJECTED);
    peer.ack(3, AckStatus.FORBIDDEN);
    peer.ack(4, AckStatus.DUPLICATE);
    await settle();
    expect(p[0]!.value()).toBe(1);
    expect(p[1]!.error()).toBeInstanceOf(UplinkRefusedError);
    expect(p[1]!.error()).toMatchObject({ seq: 2, status: AckStatus.REJECTED });
    expect(p[2]!.error()).toMatchObject({ seq: 3, status: AckStatus.FORBIDDEN });
    expect(p[3]!.value()).toBe(4);
    expect(h.client.unacked).toBe(0);
    // Refused seqs are consumed: never resent, and the next publish gets 5.
    await settle();
    expect(peer.uplinkNow()).toEqual([]);
    const next = h.client.publishTelemetry(sample(5));
    expect(await peer.uplink(1)).toEqual([[5, 't']]);
    peer.ack(5);
    expect(await next).toBe(5);
  });

  it('a STORED covering a REJECTED seq still resolves the ones before it', async () => {
    const h = setup();
    const peer = await connected(h, { version: 1 });
    const p = [1, 2, 3].map((i) => track(h.client.publishTelemetry(sample(i))));
    await peer.uplink(3);
    peer.ack(2, AckStatus.STORED); // coalesced STORED for 1..2
    peer.ack(3, AckStatus.REJECTED);
    await settle();
    expect(p.map((x) => x.value())).toEqual([1, 2, undefined]);
    expect(p[2]!.error()).toBeInstanceOf(UplinkRefusedError);
  });

  it('THROTTLED: resends even when the wait timer fires a little before the clock reaches its end', async () => {
    // Node's timers run on the loop's cached clock and may fire up to 1 ms before Date.now() says
    // the wait is over; the client must not be left with an outbox and no wake-up.
    const clock = new ManualTimers();
    const early: Timers = {
      now: () => clock.now(),
      setTimeout: (fn, ms) => clock.setTimeout(fn, Math.max(0, ms - 1)),
      clearTimeout: (t) => clock.clearTimeout(t),
    };
    const h = setup({ timers: early });
    const peer = await connected(h, { version: 1 });
    const p = [1, 2, 3].map((i) => track(h.client.publishTelemetry(sample(i))));
    await peer.uplink(3);
    peer.ack(1, AckStatus.STORED);
    peer.ack(2, AckStatus.THROTTLED);
    await settle();
    clock.advance(999); // the wait timer fires here, 1 ms early
    await settle();
    expect(peer.uplinkNow()).toEqual([]);
    clock.advance(1);
    await settle();
    expect(peer.uplinkNow()).toEqual([2, 3]);
    peer.ack(3);
    await settle();
    expect(p.map((x) => x.value())).toEqual([1, 2, 3]);
  });

  it('THROTTLED: waits ≥ 1 s, then resends from the given seq once despite the OUT_OF_ORDER behind it', async () => {
    const h = setup();
    const peer = await connected(h, { version: 1 });
    const p = [1, 2, 3, 4, 5].map((i) => track(h.client.publishTelemetry(sample(i))));
    await peer.uplink(5);
    peer.ack(1, AckStatus.STORED);
    peer.ack(2, AckStatus.THROTTLED);
    // 3.2: messages pipelined behind a THROTTLED one get OUT_OF_ORDER.
    peer.ack(2, AckStatus.OUT_OF_ORDER);
    await settle();
    peer.ack(2, AckStatus.OUT_OF_ORDER);
    peer.ack(2, AckStatus.OUT_OF_ORDER);
    await settle();
    expect(p.map((x) => x.settled())).toEqual([true, false, false, false, false]);
    expect(peer.uplinkNow()).toEqual([]);
    h.timers.advance(999);
    await settle();
    expect(peer.uplinkNow()).toEqual([]);
    h.timers.advance(1);
    await settle();
    expect(peer.uplinkNow()).toEqual([2, 3, 4, 5]);
    peer.ack(5);
    await settle();
    expect(p.map((x) => x.value())).toEqual([1, 2, 3, 4, 5]);
    await settle();
    expect(peer.uplinkNow()).toEqual([]);
  });

  it('THROTTLED n does not count the seqs before n as stored: a failed commit can still hand them back', async () => {
    const h = setup();
    const peer = await connected(h, { version: 1 });
    const p = [1, 2, 3, 4].map((i) => track(h.client.publishTelemetry(sample(i))));
    await peer.uplink(4);
    // 1 and 2 were admitted and are being committed; 3 hit the rate limit, 4 was pipelined behind it.
    peer.ack(3, AckStatus.THROTTLED);
    peer.ack(3, AckStatus.OUT_OF_ORDER);
    await settle();
    expect(p.map((x) => x.settled())).toEqual([false, false, false, false]);
    // The commit of 1 and 2 failed: the gateway rolls back and asks for 1 again (3.2).
    peer.ack(1, AckStatus.THROTTLED);
    await settle();
    h.timers.advance(1_000);
    await settle();
    expect(peer.uplinkNow()).toEqual([1, 2, 3, 4]);
    peer.ack(4);
    await settle();
    expect(p.map((x) => x.value())).toEqual([1, 2, 3, 4]);
    expect(h.errors).toEqual([]);
  });

  it('OUT_OF_ORDER: resends from the seq the gateway expects, once per loss', async () => {
    const h = setup();
    const peer = await connected(h, { version: 1, nextUplinkSeq: 1 });
    const p = [1, 2, 3, 4].map((i) => track(h.client.publishTelemetry(sample(i))));
    await peer.uplink(4);
    // 2 was lost (a bad CRC): the gateway answers 3 and 4 with OUT_OF_ORDER 2. That is no STORED
    // for 1: the gateway may still be committing it, so 1 stays in the outbox until its ack.
    peer.ack(2, AckStatus.OUT_OF_ORDER);
    await settle();
    expect(p[0]!.settled()).toBe(false);
    expect(h.client.unacked).toBe(4);
    expect(peer.uplinkNow()).toEqual([2, 3, 4]);
    // The answer to the old 4 arrives after the resend began: it must not cause another resend.
    peer.ack(2, AckStatus.OUT_OF_ORDER);
    await settle();
    expect(peer.uplinkNow()).toEqual([]);
    // The resent 2 was lost too: the resent 3 gets OUT_OF_ORDER 2, and that is a new loss to
    // resend for, not a stale answer (3.2); the resent 4's answer then is stale again.
    peer.ack(2, AckStatus.OUT_OF_ORDER);
    await settle();
    expect(peer.uplinkNow()).toEqual([2, 3, 4]);
    peer.ack(2, AckStatus.OUT_OF_ORDER);
    await settle();
    expect(peer.uplinkNow()).toEqual([]);
    peer.ack(4);
    await settle();
    expect(p.map((x) => x.value())).toEqual([1, 2, 3, 4]);
  });

  it('keeps at most maxInFlight unacked messages on the wire', async () => {
    const h = setup({ maxInFlight: 4 });
    const peer = await connected(h, { version: 1 });
    const all = Array.from({ length: 10 }, (_, i) => h.client.publishTelemetry(sample(i)));
    await settle();
    expect(peer.uplinkNow()).toEqual([1, 2, 3, 4]);
    peer.ack(2);
    await settle();
    expect(peer.uplinkNow()).toEqual([5, 6]);
    peer.ack(6);
    await settle();
    expect(peer.uplinkNow()).toEqual([7, 8, 9, 10]);
    peer.ack(10);
    expect(await Promise.all(all)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('rejects with OutboxFullError at maxOutbox without using a seq, and accepts again after acks', async () => {
    const h = setup({ maxOutbox: 3 });
    const held = [1, 2, 3].map((i) => h.client.publishTelemetry(sample(i)));
    await expect(h.client.publishTelemetry(sample(4))).rejects.toBeInstanceOf(OutboxFullError);
    await expect(h.client.publishEvent({ timestamp: T0 })).rejects.toMatchObject({
      code: 'VMCP_CLIENT_OUTBOX_FULL',
      maxOutbox: 3,
    });
    expect(h.client.nextSeq).toBe(4);
    const peer = await connected(h, { version: 1 });
    await peer.uplink(3);
    peer.ack(1);
    expect(await held[0]).toBe(1);
    const p4 = h.client.publishTelemetry(sample(4));
    expect(await peer.uplink(1)).toEqual([[4, 't']]);
    peer.ack(4);
    expect(await p4).toBe(4);
  });

  it('refuses a sample the gateway would reject before giving it a seq', async () => {
    const h = setup();
    await expect(
      h.client.publishTelemetry({ timestamp: T0, heading: 3600 }),
    ).rejects.toBeInstanceOf(InvalidSampleError);
    await expect(h.client.publishTelemetry({ timestamp: T0, speed: 1.5 })).rejects.toBeInstanceOf(
      InvalidSampleError,
    );
    await expect(
      h.client.publishTelemetry({ timestamp: T0, vendor: { '0x10': 'aa' } }),
    ).rejects.toBeInstanceOf(InvalidSampleError);
    await expect(h.client.publishEvent({ timestamp: T0, severity: 4 })).rejects.toBeInstanceOf(
      InvalidSampleError,
    );
    expect(h.client.nextSeq).toBe(1);
    expect(h.client.unacked).toBe(0);
  });
});

describe('VehicleClient TELEMETRY_BATCH (PROTOCOL.md 5)', () => {
  it('batches telemetry in a version 2 session: full batches at once, the rest after maxDelayMs', async () => {
    const h = setup({ batch: { maxSamples: 3, maxDelayMs: 100 } });
    const peer = await connected(h, { version: 2 });
    const all = [1, 2, 3, 4, 5].map((i) => h.client.publishTelemetry(sample(i)));
    await settle();
    const first = await peer.next(Cmd.TELEMETRY_BATCH);
    expect(decodeTelemetryBatch(first.data)).toMatchObject({ firstSeq: 1, count: 3 });
    expect(decodeTelemetryBatch(first.data).samples[2]).toMatchObject(sample(3));
    await settle();
    expect(peer.codes()).toEqual([]);
    h.timers.advance(99);
    await settle();
    expect(peer.codes()).toEqual([]);
    h.timers.advance(1);
    const second = await peer.next(Cmd.TELEMETRY_BATCH);
    expect(decodeTelemetryBatch(second.data)).toMatchObject({ firstSeq: 4, count: 2 });
    peer.ack(3);
    peer.ack(5);
    expect(await Promise.all(all)).toEqual([1, 2, 3, 4, 5]);
  });

  it('an EVENT ends a batch; a batch refused as a whole rejects each of its samples', async () => {
    const h = setup({ batch: { maxSamples: 10, maxDelayMs: 0 } });
    const peer = await connected(h, { version: 2 });
    const p = [
      track(h.client.publishTelemetry(sample(1))),
      track(h.client.publishTelemetry(sample(2))),
      track(h.client.publishEvent({ timestamp: T0, eventCode: 1 })),
      track(h.client.publishTelemetry(sample(4))),
    ];
    expect(await peer.uplink(4)).toEqual([
      [1, 'b'],
      [2, 'b'],
      [3, 'e'],
      [4, 't'],
    ]);
    peer.ack(2, AckStatus.FORBIDDEN);
    peer.ack(3, AckStatus.STORED);
    peer.ack(4, AckStatus.STORED);
    await settle();
    expect(p[0]!.error()).toMatchObject({
      seq: 1,
      status: AckStatus.FORBIDDEN,
      batch: { firstSeq: 1, lastSeq: 2 },
    });
    expect(p[1]!.error()).toMatchObject({ seq: 2, status: AckStatus.FORBIDDEN });
    expect(p[2]!.value()).toBe(3);
    expect(p[3]!.value()).toBe(4);
  });

  it('sends single TELEMETRY messages in a version 1 session', async () => {
    const h = setup({ batch: { maxSamples: 10, maxDelayMs: 50 } });
    const peer = await connected(h, { version: 1 });
    void [1, 2, 3].map((i) => h.client.publishTelemetry(sample(i)));
    expect(await peer.uplink(3)).toEqual([
      [1, 't'],
      [2, 't'],
      [3, 't'],
    ]);
  });
});
