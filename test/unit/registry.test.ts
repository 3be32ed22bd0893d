// CommandRegistry (PROTOCOL.md 2, 5): dispatch by (negotiated version, command code).
import { describe, expect, it } from 'vitest';
import { Cmd, CommandRegistry, MAX_VERSION, MIN_VERSION } from '../../src/protocol/index.js';

describe('CommandRegistry', () => {
  it('speaks versions 1 and 2 by default', () => {
    const r = new CommandRegistry<string>();
    expect([r.minVersion, r.maxVersion]).toEqual([MIN_VERSION, MAX_VERSION]);
    expect([MIN_VERSION, MAX_VERSION]).toEqual([1, 2]);
  });

  it('a version 1 handler serves version 2 too (v2 inherits v1)', () => {
    const r = new CommandRegistry<string>().register(1, Cmd.TELEMETRY, 'telemetry-v1');
    expect(r.lookup(1, Cmd.TELEMETRY)).toBe('telemetry-v1');
    expect(r.lookup(2, Cmd.TELEMETRY)).toBe('telemetry-v1');
  });

  it('a version 2 registration serves version 2 only', () => {
    const r = new CommandRegistry<string>().register(2, Cmd.QUERY, 'query');
    expect(r.lookup(2, Cmd.QUERY)).toBe('query');
    expect(r.lookup(1, Cmd.QUERY)).toBeUndefined();
  });

  it('a version 2 override does not affect version 1', () => {
    const r = new CommandRegistry<string>()
      .register(1, Cmd.PING, 'ping-v1')
      .register(2, Cmd.PING, 'ping-v2');
    expect(r.lookup(1, Cmd.PING)).toBe('ping-v1');
    expect(r.lookup(2, Cmd.PING)).toBe('ping-v2');
  });

  it('a later version 1 registration does not clobber a version 2 override', () => {
    const r = new CommandRegistry<string>()
      .register(2, Cmd.PING, 'ping-v2')
      .register(1, Cmd.PING, 'ping-v1');
    expect(r.lookup(1, Cmd.PING)).toBe('ping-v1');
    expect(r.lookup(2, Cmd.PING)).toBe('ping-v2');
    r.register(1, Cmd.PING, 'ping-v1b');
    expect(r.lookup(1, Cmd.PING)).toBe('ping-v1b');
    expect(r.lookup(2, Cmd.PING)).toBe('ping-v2');
  });

  it('re-registering a version 1 handler updates what version 2 inherits', () => {
    const r = new CommandRegistry<string>()
      .register(1, Cmd.EVENT, 'event-a')
      .register(1, Cmd.EVENT, 'event-b');
    expect(r.lookup(2, Cmd.EVENT)).toBe('event-b');
  });

  it('registrations of one code leave other codes alone', () => {
    const r = new CommandRegistry<string>()
      .register(1, Cmd.PING, 'ping')
      .register(2, Cmd.TELEMETRY_BATCH, 'batch');
    expect(r.lookup(1, Cmd.PONG)).toBeUndefined();
    expect(r.lookup(2, Cmd.PONG)).toBeUndefined();
    expect(r.lookup(1, Cmd.TELEMETRY_BATCH)).toBeUndefined();
    expect(r.lookup(2, Cmd.PING)).toBe('ping');
  });

  it('an unregistered pair, an unknown version or an out-of-range code is undefined', () => {
    const r = new CommandRegistry<string>().register(1, Cmd.PING, 'ping');
    expect(r.lookup(1, Cmd.CONNECT)).toBeUndefined();
    expect(r.lookup(0, Cmd.PING)).toBeUndefined();
    expect(r.lookup(3, Cmd.PING)).toBeUndefined();
    expect(r.lookup(-1, Cmd.PING)).toBeUndefined();
    expect(r.lookup(1, 0x80)).toBeUndefined();
    expect(r.lookup(1, 0x81)).toBeUndefined();
    expect(r.lookup(1, 0xff)).toBeUndefined();
  });

  it('lists the codes registered for each version', () => {
    const r = new CommandRegistry<string>()
      .register(1, Cmd.PING, 'ping')
      .register(1, Cmd.CONNECT, 'connect')
      .register(2, Cmd.QUERY, 'query');
    expect(r.codes(1)).toEqual([Cmd.PING, Cmd.CONNECT]);
    expect(r.codes(2)).toEqual([Cmd.PING, Cmd.QUERY, Cmd.CONNECT]);
    expect(r.codes(3)).toEqual([]);
  });

  it('rejects versions and codes outside their ranges', () => {
    const r = new CommandRegistry<string>();
    expect(() => r.register(0, Cmd.PING, 'x')).toThrow(RangeError);
    expect(() => r.register(3, Cmd.PING, 'x')).toThrow(RangeError);
    expect(() => r.register(1, -1, 'x')).toThrow(RangeError);
    expect(() => r.register(1, 0x80, 'x')).toThrow(RangeError);
    expect(() => r.register(1, 1.5, 'x')).toThrow(RangeError);
    expect(r.codes(1)).toEqual([]);
    expect(r.codes(2)).toEqual([]);
  });

  it('accepts code 0x00 and 0x7f', () => {
    const r = new CommandRegistry<string>().register(1, 0x00, 'zero').register(1, 0x7f, 'max');
    expect(r.lookup(2, 0x00)).toBe('zero');
    expect(r.lookup(2, 0x7f)).toBe('max');
  });

  it('freeze() forbids later registrations and keeps the table as it was', () => {
    const r = new CommandRegistry<string>().register(1, Cmd.PING, 'ping').freeze();
    expect(() => r.register(1, Cmd.PING, 'other')).toThrow(/frozen/);
    expect(() => r.register(2, Cmd.PONG, 'pong')).toThrow(/frozen/);
    expect(r.lookup(1, Cmd.PING)).toBe('ping');
    expect(r.lookup(2, Cmd.PING)).toBe('ping');
    expect(r.lookup(2, Cmd.PONG)).toBeUndefined();
  });

  it('supports a custom version range (a v3 override inherits down the line)', () => {
    const r = new CommandRegistry<string>(1, 4)
      .register(1, Cmd.PING, 'p1')
      .register(3, Cmd.PING, 'p3');
    expect([1, 2, 3, 4].map((v) => r.lookup(v, Cmd.PING))).toEqual(['p1', 'p1', 'p3', 'p3']);
  });
});
