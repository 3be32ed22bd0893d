// Public entry point of the vmcp-gateway package: the gateway app, the codec and the vehicle SDK.
export { GatewayApp, type AppOptions, type AppAddresses } from './app.js';
export { loadConfig, DEFAULTS, type GatewayConfig } from './config/index.js';
export { ERRORS, VmcpError, isVmcpError, type VmcpErrorCode } from './errors.js';
export * as protocol from './protocol/index.js';
export * from './client/index.js';
