// Outbox stores: MemoryOutbox and FileOutbox keep seqs, unacked messages, command results and the token across client instances.
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CommandResult,
  FileOutbox,
  INTERRUPTED_MESSAGE,
  MemoryOutbox,
  type OutboxStore,
} from '../../src/client/index.js';
import { settle } from './peer.js';
import { connected, setup } from './setup.js';

const T0 = 1_764_000_000_000;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmcp-outbox-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('FileOutbox', () => {
  it('keeps unsent messages moved past NEXT_UPLINK_SEQ under their new seqs, in one durable step', async () => {
    const path = join(dir, 'outbox.jsonl');
    const a = setup({ outbox: new FileOutbox(path) });
    for (let i = 1; i <= 3; i++) void a.client.publishTelemetry({ timestamp: T0 + i, speed: i });
    const peerA = await connected(a, { version: 1, nextUplinkSeq: 10 });
    expect((await peerA.uplink(3)).map(([seq]) => seq)).toEqual([10, 11, 12]);
    a.client.stop();
    await settle();
    expect(readFileSync(path, 'utf8')).toContain('{"rn":1,"by":9}');
    // A new process on the same file: 10..12 held (not 1..3), sent as they are.
    const b = setup({ outbox: new FileOutbox(path) });
    expect(b.client.nextSeq).toBe(13);
    expect(b.client.unacked).toBe(3);
    const peerB = await connected(b, { version: 1, nextUplinkSeq: 10 });
    expect(await peerB.uplink(3)).toEqual([
      [10, 't'],
      [11, 't'],
      [12, 't'],
    ]);
    b.client.stop();
  });

  it('survives a new client instance: seqs, unacked messages, command results and the token come back', async () => {
    const path = join(dir, 'outbox.jsonl');
    const storeA = new FileOutbox(path);
    const a = setup({ outbox: storeA, token: undefined, credential: 'secret' });
    let runs = 0;
    a.client.onCommand('door.lock', () => {
      runs++;
      return { result: CommandResult.SUCCEEDED, payload: { ok: 1 } };
    });
    for (let i = 1; i <= 3; i++) void a.client.publishTelemetry({ timestamp: T0 + i, speed: i });
    const peerA = await connected(a, { version: 1, token: 'issued-token' });
    await peerA.uplink(3);
    peerA.ack(1);
    peerA.command({
      seq: 7,
      commandId: 'c7',
      name: 'door.lock',
      expiresAt: a.timers.now() + 60_000,
    });
    await peerA.commandAck();
    await a.client.stop();
    storeA.close();

    // A new process: a new store on the same file and a new client.
    const storeB = new FileOutbox(path);
    const b = setup({ outbox: storeB, token: undefined, credential: 'secret' });
    b.client.onCommand('door.lock', () => {
      runs++;
      return { result: CommandResult.FAILED };
    });
    expect(b.client.nextSeq).toBe(4);
    expect(b.client.unacked).toBe(2);
    expect(b.client.lastCommandSeq).toBe(7);
    expect(b.client.token).toBe('issued-token');
    b.client.start();
    const peerB = await b.net.nextPeer();
    const c = await peerB.accept({ version: 1, nextUplinkSeq: 2 });
    expect(c.lastCommandSeq).toBe(7);
    expect(c.token).toBe('issued-token');
    expect(await peerB.uplink(2)).toEqual([
      [2, 't'],
      [3, 't'],
    ]);
    const p4 = b.client.publishTelemetry({ timestamp: T0 + 4 });
    expect(await peerB.uplink(1)).toEqual([[4, 't']]);
    peerB.ack(4);
    expect(await p4).toBe(4);
    // The redelivered command answers its recorded result without running.
    peerB.command({
      seq: 7,
      commandId: 'c7',
      name: 'door.lock',
      expiresAt: b.timers.now() + 60_000,
    });
    expect(await peerB.commandAck()).toMatchObject({ seq: 7, result: CommandResult.SUCCEEDED });
    expect(runs).toBe(1);
    await b.client.stop();
    storeB.close();

    const storeC = new FileOutbox(path);
    const snap = storeC.load();
    expect(snap).toMatchObject({
      nextSeq: 5,
      unacked: [],
      lastCommandSeq: 7,
      token: 'issued-token',
    });
    storeC.close();
  });

  it('a command that was running when the process ended is answered FAILED (interrupted), never run again', async () => {
    // 4.2: at most once. The start is durable before the handler runs; a new process finds a start
    // without a result and reports it failed, and a redelivery of that seq answers that result.
    const path = join(dir, 'outbox.jsonl');
    const storeA = new FileOutbox(path);
    const a = setup({ outbox: storeA });
    let runs = 0;
    a.client.onCommand('door.unlock', () => {
      runs++;
      return new Promise<never>(() => undefined); // still running when the process dies
    });
    const peerA = await connected(a, { version: 1 });
    peerA.command({
      seq: 3,
      commandId: 'c3',
      name: 'door.unlock',
      expiresAt: a.timers.now() + 60_000,
    });
    await settle();
    expect(runs).toBe(1);
    storeA.close(); // the process is killed: no result, no stop()

    const b = setup({ outbox: new FileOutbox(path) });
    b.client.onCommand('door.unlock', () => {
      runs++;
      return { result: CommandResult.SUCCEEDED };
    });
    expect(b.client.lastCommandSeq).toBe(3);
    const peerB = await connected(b, { version: 1 });
    // Sent after CONNACK, like any result the gateway has not had.
    expect(await peerB.commandAck()).toMatchObject({
      seq: 3,
      result: CommandResult.FAILED,
      message: INTERRUPTED_MESSAGE,
    });
    peerB.command({
      seq: 3,
      commandId: 'c3',
      name: 'door.unlock',
      expiresAt: b.timers.now() + 60_000,
    });
    expect(await peerB.commandAck()).toMatchObject({ seq: 3, result: CommandResult.FAILED });
    expect(runs).toBe(1);
    await a.client.stop();
    await b.client.stop();
  });

  it('ignores a torn last line', () => {
    const path = join(dir, 'outbox.jsonl');
    const s = new FileOutbox(path);
    s.load();
    s.append({ seq: 1, kind: 'telemetry', sample: { timestamp: T0 } });
    s.append({ seq: 2, kind: 'event', sample: { timestamp: T0, eventCode: 1 } });
    s.close();
    appendFileSync(path, '{"u":3,"k":"t","s":{"timest');
    const again = new FileOutbox(path);
    const snap = again.load();
    expect(snap.nextSeq).toBe(3);
    expect(snap.unacked.map((m) => [m.seq, m.kind])).toEqual([
      [1, 'telemetry'],
      [2, 'event'],
    ]);
    again.close();
  });

  it('compacts the log so it stays proportional to what is unacked', () => {
    const path = join(dir, 'outbox.jsonl');
    const s = new FileOutbox(path, { compactAfterLines: 50, fsync: false });
    s.load();
    for (let seq = 1; seq <= 1000; seq++) {
      s.append({ seq, kind: 'telemetry', sample: { timestamp: T0 + seq } });
      if (seq % 10 === 0) s.consume(seq - 2);
    }
    const lines = readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l !== '').length;
    expect(lines).toBeLessThan(120);
    s.close();
    const again = new FileOutbox(path);
    const snap = again.load();
    expect(snap.nextSeq).toBe(1001);
    expect(snap.unacked.map((m) => m.seq)).toEqual([999, 1000]);
    again.close();
  });

  it('keeps the seq counter when everything was acked', () => {
    const path = join(dir, 'outbox.jsonl');
    const s = new FileOutbox(path);
    s.load();
    s.append({ seq: 1, kind: 'telemetry', sample: { timestamp: T0 } });
    s.consume(1);
    s.close();
    const again = new FileOutbox(path);
    expect(again.load()).toMatchObject({ nextSeq: 2, unacked: [] });
    again.close();
  });
});

describe('MemoryOutbox', () => {
  it('carries the outbox to a new client on the same instance', async () => {
    const store: OutboxStore = new MemoryOutbox();
    const a = setup({ outbox: store });
    void a.client.publishTelemetry({ timestamp: T0 });
    void a.client.publishTelemetry({ timestamp: T0 + 1 });
    const b = setup({ outbox: store });
    expect(b.client.nextSeq).toBe(3);
    const peer = await connected(b, { version: 1 });
    expect(await peer.uplink(2)).toEqual([
      [1, 't'],
      [2, 't'],
    ]);
    peer.ack(2);
    await settle();
    expect(b.client.unacked).toBe(0);
    expect(store.load()).toMatchObject({ nextSeq: 3, unacked: [] });
  });
});
