// The token scopes a vehicle session can hold (PROTOCOL.md 2.3) and what each covers.

/** The scopes the gateway knows; a token may carry others, which grant nothing. */
export const Scope = {
  /** TELEMETRY and TELEMETRY_BATCH uplink. */
  TELEMETRY_PUBLISH: 'telemetry:publish',
  /** EVENT uplink. */
  EVENT_PUBLISH: 'event:publish',
  /** COMMAND and SENSOR_READ downlink (and their COMMAND_ACK / SENSOR_DATA answers). */
  COMMAND_RECEIVE: 'command:receive',
} as const;

export const ALL_SCOPES: readonly string[] = Object.freeze(Object.values(Scope));

const KNOWN: ReadonlySet<string> = new Set(ALL_SCOPES);

export function isKnownScope(s: string): boolean {
  return KNOWN.has(s);
}
