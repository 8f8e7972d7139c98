// The receiving side lives in its own package, @jobscope/verify (packages/verify), so a service that only checks tokens
// installs jsonwebtoken, jwks-rsa and ioredis instead of all of jobscope. `jobscope/verify` and this module re-export it.
export * from '@jobscope/verify';
