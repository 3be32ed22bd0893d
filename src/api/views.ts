// JSON resources of the HTTP API (PROTOCOL.md 9) built from store rows.
import type { CommandRow, CommandStatus } from '../store/types.js';

export interface CommandResource {
  id: string;
  vehicleId: string;
  seq: number;
  name: string;
  status: CommandStatus;
  /** Parsed RESULT_PAYLOAD, else null (9). */
  result: unknown;
  params: unknown;
  createdAt: number;
  expiresAt: number;
  updatedAt: number;
}

function parseParams(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export function commandJson(row: CommandRow): CommandResource {
  return {
    id: row.id,
    vehicleId: row.vehicleId,
    seq: row.seq,
    name: row.name,
    status: row.status,
    result: row.result ?? null,
    params: parseParams(row.params),
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    updatedAt: row.updatedAt,
  };
}
