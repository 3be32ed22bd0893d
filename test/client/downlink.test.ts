// VehicleClient downlink: commands run at most once per seq, IN_PROGRESS, UNSUPPORTED, EXPIRED (PROTOCOL.md 4.1, 4.2); sensor reads (4.3).
import { describe, expect, it } from 'vitest';
import { CommandResult, SensorStatus, type CommandMessage } from '../../src/client/index.js';
import { Cmd, decodeUtf8 } from '../../src/protocol/index.js';
import { settle } from './peer.js';
import { connected, setup } from './setup.js';

function command(
  h: { timers: { now(): number } },
  seq: number,
  name: string,
  params?: unknown,
): CommandMessage {
  const cmd: CommandMessage = {
    seq,
    commandId: `cmd_${seq}`,
    name,
    expiresAt: h.timers.now() + 60_000,
  };
  if (params !== undefined) cmd.params = JSON.stringify(params);
  return cmd;
}

const text = (b: Uint8Array | undefined): string | undefined =>
  b === undefined ? undefined : decodeUtf8(b, 0, b.length);

describe('VehicleClient commands (PROTOCOL.md 4)', () => {
  it('runs a command once and answers a redelivered seq with the recorded result', async () => {
    const h = setup();
    let runs = 0;
    const seen: CommandMessage[] = [];
    h.client.on('command', (c) => seen.push(c));
    h.client.onCommand('door.lock', (cmd) => {
      runs++;
      const params = JSON.parse(cmd.params ?? 'null') as { force: boolean };
      return { result: CommandResult.SUCCEEDED, payload: { locked: true, force: params.force } };
    });
    const peer = await connected(h);
    peer.command(command(h, 1, 'door.lock', { force: true }));
    const ack = await peer.commandAck();
    expect(ack).toMatchObject({ seq: 1, result: CommandResult.SUCCEEDED });
    expect(JSON.parse(text(ack.resultPayload)!)).toEqual({ locked: true, force: true });
    // Redelivered in the same session.
    peer.command(command(h, 1, 'door.lock', { force: true }));
    const again = await peer.commandAck();
    expect(again).toMatchObject({ seq: 1, result: CommandResult.SUCCEEDED });
    expect(text(again.resultPayload)).toBe(text(ack.resultPayload));
    expect(runs).toBe(1);
    expect(seen.map((c) => c.seq)).toEqual([1]);
    expect(h.client.lastCommandSeq).toBe(1);
    // Next session: LAST_COMMAND_SEQ is the highest seq finished; a redelivery still answers the record.
    peer.close();
    await settle();
    h.timers.runNext();
    const peer2 = await h.net.nextPeer();
    const c = await peer2.accept();
    expect(c.lastCommandSeq).toBe(1);
    peer2.command(command(h, 1, 'door.lock', { force: true }));
    expect(await peer2.commandAck()).toMatchObject({ seq: 1, result: CommandResult.SUCCEEDED });
    expect(runs).toBe(1);
  });

  it('sends IN_PROGRESS when the handler takes longer than inProgressAfterMs, then the result', async () => {
    const h = setup();
    let finish: (v: { result: 0 }) => void = () => undefined;
    h.client.onCommand('horn.honk', () => new Promise((resolve) => (finish = resolve)));
    const peer = await connected(h);
    peer.command(command(h, 5, 'horn.honk'));
    await settle();
    h.timers.advance(1999);
    await settle();
    expect(peer.codes()).not.toContain(Cmd.COMMAND_ACK);
    h.timers.advance(1);
    expect(await peer.commandAck()).toEqual({ seq: 5, result: CommandResult.IN_PROGRESS });
    // Redelivered while running: not run again; IN_PROGRESS repeated.
    peer.command(command(h, 5, 'horn.honk'));
    expect(await peer.commandAck()).toEqual({ seq: 5, result: CommandResult.IN_PROGRESS });
    finish({ result: 0 });
    expect(await peer.commandAck()).toEqual({ seq: 5, result: CommandResult.SUCCEEDED });
  });

  it('answers UNSUPPORTED for an unknown name and EXPIRED after EXPIRES_AT, without running', async () => {
    const h = setup();
    let runs = 0;
    h.client.onCommand('door.lock', () => {
      runs++;
      return { result: CommandResult.SUCCEEDED };
    });
    const peer = await connected(h);
    peer.command(command(h, 1, 'warp.drive'));
    expect(await peer.commandAck()).toMatchObject({ seq: 1, result: CommandResult.UNSUPPORTED });
    peer.command({ ...command(h, 2, 'door.lock'), expiresAt: h.timers.now() - 1 });
    expect(await peer.commandAck()).toMatchObject({ seq: 2, result: CommandResult.EXPIRED });
    expect(runs).toBe(0);
  });

  it('answers FAILED with the message when the handler throws', async () => {
    const h = setup();
    h.client.onCommand('config.set', () => {
      throw new Error('read-only');
    });
    h.client.onCommand('async.fail', () => Promise.reject(new Error('later')));
    const peer = await connected(h);
    peer.command(command(h, 1, 'config.set'));
    expect(await peer.commandAck()).toMatchObject({
      seq: 1,
      result: CommandResult.FAILED,
      message: 'read-only',
    });
    peer.command(command(h, 2, 'async.fail'));
    expect(await peer.commandAck()).toMatchObject({
      seq: 2,
      result: CommandResult.FAILED,
      message: 'later',
    });
  });

  it('a result finished while offline is sent after the next CONNACK', async () => {
    const h = setup();
    let finish: (v: { result: 2; message: string }) => void = () => undefined;
    h.client.onCommand('door.unlock', () => new Promise((resolve) => (finish = resolve)));
    const peer = await connected(h);
    peer.command(command(h, 3, 'door.unlock'));
    await settle();
    peer.close();
    await settle();
    finish({ result: 2, message: 'moving' });
    await settle();
    h.timers.runNext();
    const peer2 = await h.net.nextPeer();
    const c = await peer2.accept();
    expect(c.lastCommandSeq).toBe(3);
    expect(await peer2.commandAck()).toEqual({
      seq: 3,
      result: CommandResult.REJECTED,
      message: 'moving',
    });
  });
});

describe('VehicleClient sensor reads (PROTOCOL.md 4.3)', () => {
  it('answers with the handler value, status 1 for an unknown channel, 2 when the handler fails', async () => {
    const h = setup();
    h.client.onSensorRead(1, () => Uint8Array.of(0x0c, 0x80));
    h.client.onSensorRead(2, () => Promise.reject(new Error('bus off')));
    h.client.onSensorRead(3, () => {
      throw new Error('sync failure');
    });
    const peer = await connected(h);
    peer.sensorRead(1, 7);
    const ok = await peer.sensorData();
    expect(ok).toMatchObject({ channel: 1, tag: 7, status: SensorStatus.OK });
    expect([...ok.value]).toEqual([0x0c, 0x80]);
    peer.sensorRead(9, 8);
    expect(await peer.sensorData()).toMatchObject({
      channel: 9,
      tag: 8,
      status: SensorStatus.NO_SUCH_CHANNEL,
    });
    peer.sensorRead(2, 9);
    expect(await peer.sensorData()).toMatchObject({
      channel: 2,
      tag: 9,
      status: SensorStatus.FAILURE,
    });
    peer.sensorRead(3, 10);
    expect(await peer.sensorData()).toMatchObject({
      channel: 3,
      tag: 10,
      status: SensorStatus.FAILURE,
    });
  });
});
