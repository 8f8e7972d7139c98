// Signing keys and the JWKS. Keys are KeyObjects built once: jsonwebtoken re-parses string keys on every call (~50x slower).
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPairSync,
  type KeyObject,
  type JsonWebKey,
} from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.ts';

export type Algorithm = 'ES256' | 'HS256';

export interface SigningKey {
  kid: string;
  alg: Algorithm;
  /** Private key (ES256) or secret (HS256). */
  key: KeyObject;
  /** Public key (ES256) or the same secret (HS256). */
  verifyKey: KeyObject;
}

export interface PublicJwk extends JsonWebKey {
  kid: string;
  alg: 'ES256';
  use: 'sig';
}

export interface KeyStore {
  alg: Algorithm;
  /** The key new tokens are signed with. */
  current: SigningKey;
  /** Every key this runner knows (current included), for verifying and for the JWKS. */
  all: SigningKey[];
  /** Human-readable remark for the start-up log, e.g. that a development key was generated. */
  warning?: string;
  jwks(): { keys: PublicJwk[] };
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of an EC public key: a stable kid for the same key on every host. */
export function thumbprint(pub: KeyObject): string {
  const jwk = pub.export({ format: 'jwk' });
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

export function ecKeyFromPem(pem: string | Buffer, origin: string): SigningKey {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new ConfigError(`${origin}: not a PEM private key (${(err as Error).message}); create one with "jobscope keys generate"`);
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new ConfigError(`${origin}: ES256 needs an EC P-256 private key; create one with "jobscope keys generate"`);
  }
  const verifyKey = createPublicKey(key);
  return { kid: thumbprint(verifyKey), alg: 'ES256', key, verifyKey };
}

export function hsKey(secret: string): SigningKey {
  const key = createSecretKey(Buffer.from(secret, 'utf8'));
  // The kid must not reveal the secret: a salted hash prefix identifies it without being useful to an attacker.
  const kid = 'hs-' + createHash('sha256').update('jobscope-kid:').update(secret).digest('base64url').slice(0, 16);
  return { kid, alg: 'HS256', key, verifyKey: key };
}

export function generateEcPem(): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
}

/** Writes a new P-256 key into `dir` under a name that sorts after older ones; returns its path and kid. */
export function writeNewKey(dir: string): { file: string; kid: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pem = generateEcPem();
  const file = path.join(dir, `signing-${new Date().toISOString().replace(/[:.]/g, '-')}.pem`);
  writeFileSync(file, pem, { mode: 0o600, flag: 'wx' });
  return { file, kid: ecKeyFromPem(pem, file).kid };
}

/**
 * Expands a list of files and directories (directories: every *.pem inside, by name) into key files, oldest first. The
 * last one signs new tokens; all of them are published. Rotation: add a newer key (`jobscope keys generate` names files so
 * they sort by creation time), restart, and later remove the old file: the JWKS keeps serving its public key from Redis
 * until every token it signed has expired (see jwks.ts).
 */
export function keyFilesOf(entries: string[]): string[] {
  const files: string[] = [];
  for (const entry of entries) {
    if (!existsSync(entry)) throw new ConfigError(`JOBSCOPE_SIGNING_KEY_FILE: ${entry} does not exist`);
    if (statSync(entry).isDirectory()) {
      const pems = readdirSync(entry)
        .filter((f) => f.endsWith('.pem'))
        .sort()
        .map((f) => path.join(entry, f));
      if (pems.length === 0) throw new ConfigError(`JOBSCOPE_SIGNING_KEY_FILE: directory ${entry} holds no *.pem key`);
      files.push(...pems);
    } else files.push(entry);
  }
  return files;
}

/** The public JWK of an ES256 key as the JWKS publishes it (fields in one fixed order: the same key gives the same JSON). */
export function publicJwk(key: SigningKey): PublicJwk {
  const { crv, kty, x, y } = key.verifyKey.export({ format: 'jwk' });
  return { kty, crv, x, y, kid: key.kid, alg: 'ES256', use: 'sig' };
}

function store(alg: Algorithm, listed: SigningKey[], warning?: string): KeyStore {
  // The same key listed twice (a file and its directory) counts once, at its last position.
  const all = listed.filter((k, i) => !listed.slice(i + 1).some((o) => o.kid === k.kid));
  const current = all[all.length - 1];
  const published: PublicJwk[] = all.filter((k) => k.alg === 'ES256').map(publicJwk);
  return { alg, current, all, warning, jwks: () => ({ keys: published }) };
}

export interface KeyOptions {
  signingKeyFiles: string[];
  jwtSecret?: string;
  /** Where a development key is generated when no key is configured. */
  stateDir: string;
}

export function loadKeys(opts: KeyOptions): KeyStore {
  if (opts.jwtSecret) {
    return store('HS256', [hsKey(opts.jwtSecret)], 'HS256 compatibility mode: every verifier holds the signing secret');
  }
  if (opts.signingKeyFiles.length > 0) {
    const keys = keyFilesOf(opts.signingKeyFiles).map((f) => ecKeyFromPem(readFileSync(f), f));
    return store('ES256', keys);
  }
  const devFile = path.join(opts.stateDir, 'dev-signing-key.pem');
  let warning = `no JOBSCOPE_SIGNING_KEY_FILE: using the development key ${devFile}`;
  if (!existsSync(devFile)) {
    mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
    try {
      writeFileSync(devFile, generateEcPem(), { mode: 0o600, flag: 'wx' });
      warning = `no JOBSCOPE_SIGNING_KEY_FILE: generated a development key at ${devFile}`;
    } catch (err) {
      // Another process started at the same moment and wrote it first: use theirs.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return store('ES256', [ecKeyFromPem(readFileSync(devFile), devFile)], warning + ' (set a real key for production)');
}
