// The auth module: scopes, vehicle tokens, registration secrets and mutual-TLS identity (PROTOCOL.md 2.3).
export { Scope, ALL_SCOPES, isKnownScope } from './scopes.js';
export {
  TokenService,
  type TokenServiceOptions,
  type TokenFailure,
  type VerifiedToken,
  type VerifyResult,
} from './tokens.js';
export { hashSecret, verifySecret } from './secrets.js';
export { certificateIdentity, certificateMatches, type CertIdentity } from './certificate.js';
