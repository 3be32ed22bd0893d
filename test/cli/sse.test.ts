// The CLI's server-sent events parser against the event-stream interpretation rules.
import { describe, expect, it } from 'vitest';
import { SseParser, type SseEvent } from '../../src/cli/http.js';

function parse(chunks: string[]): { events: SseEvent[]; parser: SseParser } {
  const parser = new SseParser();
  const events = chunks.flatMap((c) => parser.push(c));
  return { events, parser };
}

describe('SseParser', () => {
  it('parses named events, skipping comments', () => {
    const { events } = parse([': connected\n\nevent: uplink\ndata: {"a":1}\n\n: heartbeat\n\n']);
    expect(events).toEqual([{ event: 'uplink', data: '{"a":1}', id: '' }]);
  });

  it('joins multi-line data with newlines and defaults the type to message', () => {
    const { events } = parse(['data: one\ndata:two\ndata\n\n']);
    expect(events).toEqual([{ event: 'message', data: 'one\ntwo\n', id: '' }]);
  });

  it('removes only one space after the colon; a field without a colon has an empty value', () => {
    const { events } = parse(['data:  two spaces\nevent\n\n']);
    expect(events).toEqual([{ event: 'message', data: ' two spaces', id: '' }]);
  });

  it('accepts CRLF, CR and LF line ends, also split between chunks', () => {
    const { events } = parse([
      'event: a\r',
      '\ndata: 1\r\r',
      '\nevent: b\rdata: 2\r',
      '\r',
      '\n',
      'data: 3\n',
      '\n',
    ]);
    expect(events.map((e) => [e.event, e.data])).toEqual([
      ['a', '1'],
      ['b', '2'],
      ['message', '3'],
    ]);
  });

  it('reassembles events split at any byte', () => {
    const text = 'event: command\ndata: {"id":"x",\ndata: "status":"succeeded"}\n\n';
    for (let i = 1; i < text.length; i++) {
      const { events } = parse([text.slice(0, i), text.slice(i)]);
      expect(events).toEqual([
        { event: 'command', data: '{"id":"x",\n"status":"succeeded"}', id: '' },
      ]);
    }
  });

  it('dispatches nothing for a block without data, and resets the type after each event', () => {
    const { events } = parse(['event: ignored\n\ndata: x\n\n']);
    expect(events).toEqual([{ event: 'message', data: 'x', id: '' }]);
  });

  it('ignores a leading BOM and unknown fields; keeps id and retry', () => {
    const { events, parser } = parse([
      '\uFEFFretry: 1500\nfoo: bar\nid: 7\ndata: x\n\nretry: soon\n',
    ]);
    expect(events).toEqual([{ event: 'message', data: 'x', id: '7' }]);
    expect(parser.retryMs).toBe(1500);
  });

  it('does not dispatch an event whose blank line has not arrived', () => {
    const { events } = parse(['data: partial\n']);
    expect(events).toEqual([]);
  });
});
