// Structured JSON logs (pino). Modules log with fields (vehicleId, sessionId, traceId), never with console.
import { pino, destination, stdTimeFunctions, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = 'info', dest?: DestinationStream): Logger {
  return pino(
    { level, base: { svc: 'vmcp-gateway' }, timestamp: stdTimeFunctions.isoTime },
    dest ?? destination({ dest: 1, sync: false }),
  );
}

/** A logger that drops everything (tests, embedded use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
