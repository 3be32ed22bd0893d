// Structured JSON logs (pino). Modules log with fields (vehicleId, sessionId, traceId), never with console.
import { pino, destination, stdTimeFunctions, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = 'info', dest?: DestinationStream): Logger {
  if (dest !== undefined)
    return pino(
      { level, base: { svc: 'vmcp-gateway' }, timestamp: stdTimeFunctions.isoTime },
      dest,
    );
  const stdout = destination({ dest: 1, sync: false });
  const logger = pino(
    { level, base: { svc: 'vmcp-gateway' }, timestamp: stdTimeFunctions.isoTime },
    stdout,
  );
  // A log reader that went away (EPIPE) must not take the gateway with it: unhandled, the error
  // ends in a process that neither serves nor exits. Logging stops; vehicles are still served.
  stdout.on('error', () => {
    logger.level = 'silent';
  });
  return logger;
}

/** A logger that drops everything (tests, embedded use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
