// Loads the shared test vectors (../shared/vectors/vmcp.json, or the identical copy in test/fixtures).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const FIXTURE_PATH = resolve(here, '../fixtures/vmcp.json');
export const SHARED_PATH = resolve(here, '../../../shared/vectors/vmcp.json');

export interface Vectors {
  crc16: { ascii?: string; hex?: string; crc: string }[];
  frames: { name: string; cmd: number; more: boolean; data: string; hex: string }[];
  messages: {
    name: string;
    cmd: number;
    hex: string;
    data: string;
    fields: Record<string, unknown>;
  }[];
  streams: {
    name: string;
    chunks: string[];
    frames: [number, string][];
    garbage?: number;
    badFrames?: number;
  }[];
  tlv: { name: string; hex: string; valid: boolean; records?: [number, string][] }[];
}

/** The shared file when present (the source of truth), else the fixture copy. */
export function loadVectors(): Vectors {
  const path = existsSync(SHARED_PATH) ? SHARED_PATH : FIXTURE_PATH;
  return JSON.parse(readFileSync(path, 'utf8')) as Vectors;
}
