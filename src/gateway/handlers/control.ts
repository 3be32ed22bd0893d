// PING 0x01, PONG 0x02, DISCONNECT 0x0F, ERROR 0x0E and QUERY 0x0A handlers (PROTOCOL.md 2.4, 5, 6).
import {
  Cmd,
  ErrorCode,
  PING_MAX_DATA,
  Query,
  encodeQueryResult,
  type QueryResultMessage,
} from '../../protocol/index.js';
import type { Session } from '../session.js';

export function onPing(s: Session, data: Uint8Array): void {
  if (data.length > PING_MAX_DATA) {
    s.sendError(ErrorCode.INVALID_DATA, Cmd.PING, 'PING DATA is at most 8 bytes');
    return;
  }
  s.sendMessage(Cmd.PONG, data.slice());
}

/** A PONG answers our PING; receiving it already counted as traffic. */
export function onPong(): void {}

/**
 * 6: the gateway does not answer a vehicle's DISCONNECT: it closes the connection. The vehicle's
 * REASON (its first byte, when there is one) is what the disconnect metric counts.
 */
export function onDisconnect(s: Session, data: Uint8Array): void {
  s.close('vehicle disconnected', data.length > 0 ? data[0] : undefined);
}

/** A vehicle's ERROR is logged; it never changes the session state (6). */
export function onError(s: Session, data: Uint8Array): void {
  s.gw.logger.debug(
    { vehicleId: s.vehicleId, sessionId: s.id, code: data[0], refCmd: data[1] },
    'ERROR from vehicle',
  );
}

/** QUERY (v2): answered in order, even when an answer needs the store. */
export function onQuery(s: Session, data: Uint8Array): void {
  if (data.length !== 1) {
    s.sendError(ErrorCode.INVALID_DATA, Cmd.QUERY, 'QUERY is one byte');
    return;
  }
  const query = data[0]!;
  const answer = async (): Promise<QueryResultMessage> => {
    switch (query) {
      case Query.SERVER_TIME:
        return { query, status: 0, serverTime: s.gw.clock.now() };
      case Query.PENDING_COMMANDS:
        return { query, status: 0, pendingCommands: await s.gw.downlink.pendingCount(s.vehicleId) };
      case Query.SESSION_INFO:
        return { query, status: 0, sessionId: s.id, keepalive: s.keepaliveS };
      default:
        return { query, status: 1 };
    }
  };
  const prev = s.queryChain ?? Promise.resolve();
  s.queryChain = prev.then(answer).then(
    (result) => {
      if (s.state === 'connected') s.sendMessage(Cmd.QUERY_RESULT, encodeQueryResult(result));
    },
    (err: unknown) => {
      s.gw.logger.error({ err, vehicleId: s.vehicleId }, 'QUERY failed');
      if (s.state === 'connected') s.sendError(ErrorCode.INTERNAL, Cmd.QUERY, 'query failed');
    },
  );
}
