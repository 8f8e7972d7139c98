// @jobscope/verify: accept jobscope run tokens in a service. Depends on jsonwebtoken, jwks-rsa and ioredis only; never logs,
// and no error it produces contains the token or any part of it.
//   const verifier = createJobTokenVerifier({ audience: 'system', jwksUrl, redis: process.env.REDIS_URL });
//   app.use('/sys', verifier.middleware());                       // Express: req.jobToken holds the claims
//   const claims = await verifier.verify(extractToken(req));      // anything else; rejection(err) builds the answer
export { REJECT_CODES, TokenRejectedError, type RejectCode } from './errors.ts';
export { type JobTokenClaims } from './claims.ts';
export { extractToken, type RequestLike } from './extract.ts';
export { rejection, type Rejection } from './rejection.ts';
export { type JwksDocument, type KeyOptions } from './key-source.ts';
export { type IntrospectionOptions, type LivenessOptions } from './liveness.ts';
export { createJobTokenVerifier, type JobTokenVerifier, type ScopeOptions, type VerifyOptions } from './verifier.ts';
export { type JobTokenMiddleware } from './middleware.ts';
export { closeVerifiers, requireJobToken, verifyJobToken } from './shortcuts.ts';
