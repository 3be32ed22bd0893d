// The HTTP API: buildApi() and the route table it is made from.
export { buildApi, errorBody, commandSize, type ApiOptions, type ErrorBody } from './server.js';
export {
  ROUTES,
  COMPONENT_SCHEMAS,
  type RouteName,
  type RouteSpec,
  type JsonSchema,
} from './schemas.js';
export { buildOpenApi, type OpenApiDocument } from './openapi.js';
export { StreamHub, HEARTBEAT_MS, type StreamHubOptions } from './stream.js';
export { commandJson, type CommandResource } from './views.js';
