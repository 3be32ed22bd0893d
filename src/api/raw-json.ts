// The text of one member of a JSON object as the client wrote it. Command params go to the vehicle
// as sent: JSON.parse then JSON.stringify would turn 12345678901234567890 into 12345678901234567000,
// 1E400 into null and 1.0 into 1.

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);

/**
 * The raw text of the value of top-level member `key` of the JSON object `text` (the last one, as
 * JSON.parse takes it), or undefined when there is none. `text` must be JSON that JSON.parse
 * accepted: this only finds boundaries, it does not validate.
 */
export function memberText(text: string, key: string): string | undefined {
  let i = skipWs(text, 0);
  if (text.charCodeAt(i) !== 0x7b /* { */) return undefined;
  i = skipWs(text, i + 1);
  let found: string | undefined;
  while (i < text.length && text.charCodeAt(i) !== 0x7d /* } */) {
    const keyEnd = skipString(text, i);
    const name = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipWs(text, keyEnd);
    i = skipWs(text, i + 1); // the colon
    const valueEnd = skipValue(text, i);
    if (name === key) found = text.slice(i, valueEnd);
    i = skipWs(text, valueEnd);
    if (text.charCodeAt(i) === 0x2c /* , */) i = skipWs(text, i + 1);
  }
  return found;
}

function skipWs(text: string, i: number): number {
  while (i < text.length && WS.has(text.charCodeAt(i))) i++;
  return i;
}

/** From an opening quote to just past its closing quote. */
function skipString(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === 0x5c /* \ */) j++;
    else if (c === 0x22 /* " */) return j + 1;
  }
  return text.length;
}

/** Past one value: a string, an object or array (brackets counted outside strings), or a scalar. */
function skipValue(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 0x22) return skipString(text, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text.charCodeAt(j);
      if (d === 0x22) j = skipString(text, j) - 1;
      else if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    return text.length;
  }
  let j = i;
  while (j < text.length) {
    const d = text.charCodeAt(j);
    if (d === 0x2c || d === 0x7d || d === 0x5d || WS.has(d)) break;
    j++;
  }
  return j;
}

/** JSON text without the whitespace between tokens (strings and numbers untouched). */
export function compactJson(text: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      i = skipString(text, i) - 1;
    } else if (WS.has(c)) {
      out += text.slice(from, i);
      from = i + 1;
    }
  }
  return out + text.slice(from);
}
