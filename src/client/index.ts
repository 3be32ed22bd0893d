// The vehicle SDK: VehicleClient, its outbox stores, the timers port and typed errors (docs/sdk.md).
export * from './client.js';
export * from './errors.js';
export * from './outbox.js';
export * from './timers.js';
export {
  backoffDelay,
  formatGateway,
  parseGateway,
  tcpTransport,
  type BackoffOptions,
  type GatewayAddress,
  type Transport,
} from './transport.js';
// The wire types and codes a vehicle application deals with, so it needs only this entry point.
export {
  AckStatus,
  CommandResult,
  ConnackStatus,
  DisconnectReason,
  Query,
  SensorStatus,
  type CommandMessage,
  type CommandResultCode,
  type EventSample,
  type QueryResultMessage,
  type TelemetrySample,
} from '../protocol/index.js';
