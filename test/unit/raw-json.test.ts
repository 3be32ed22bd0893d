// Command params reach the vehicle as the API client wrote them (src/api/raw-json.ts).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compactJson, memberText } from '../../src/api/raw-json.js';

describe('memberText', () => {
  it.each([
    ['{"name":"x","params":12345678901234567890}', '12345678901234567890'],
    ['{"params":1E400}', '1E400'],
    ['{"params":1.0,"name":"x"}', '1.0'],
    ['{ "params" : -0 , "name":"x" }', '-0'],
    ['{"params":"a\\"}{,"}', '"a\\"}{,"'],
    ['{"params":{"a":[1,{"b":"]}"}],"c":null}}', '{"a":[1,{"b":"]}"}],"c":null}'],
    ['{"params":[],"x":{}}', '[]'],
    ['{"params":true}', 'true'],
    ['{"params":null}', 'null'],
    ['\n{\n  "name": "x",\n  "params": { "a": 1 }\n}\n', '{ "a": 1 }'],
    // JSON.parse keeps the last of repeated keys; so does memberText.
    ['{"params":1,"params":2}', '2'],
    // A key written with escapes is the same key.
    ['{"par\\u0061ms":[7]}', '[7]'],
    ['{"name":"params","p":1}', undefined],
    ['{"nested":{"params":1}}', undefined],
    ['{}', undefined],
    ['[1]', undefined],
  ])('%s → %s', (text, want) => {
    JSON.parse(text); // the precondition: text is JSON
    expect(memberText(text, 'params')).toBe(want);
  });

  it('finds what JSON.stringify wrote for any JSON value, among other members', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), fc.jsonValue(), (before, value, after) => {
        const text = JSON.stringify({ before, params: value, after }, null, 1);
        expect(JSON.parse(memberText(text, 'params')!)).toEqual(JSON.parse(JSON.stringify(value)));
      }),
    );
  });
});

describe('compactJson', () => {
  it('drops whitespace between tokens, keeps it inside strings', () => {
    expect(compactJson('{ "a b" : [ 1 ,\n\t2 ] , "c": "x \\" y" }')).toBe(
      '{"a b":[1,2],"c":"x \\" y"}',
    );
  });

  it('equals JSON.stringify of the value for any pretty-printed JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(compactJson(JSON.stringify(value, null, 2))).toBe(JSON.stringify(value));
      }),
    );
  });
});
