// Structured JSON logs (pino). Anything that looks like a JWT is masked at the last step, whatever field it hides in.
import { pino, type Logger, type DestinationStream } from 'pino';
import { maskTokens } from './redact.ts';

export type { Logger };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const masked: DestinationStream = {
    write(line: string) {
      const out = maskTokens(line);
      if (destination) destination.write(out);
      else process.stdout.write(out);
    },
  };
  return pino(
    {
      level,
      base: { app: 'jobscope' },
      redact: { paths: ['req.headers.authorization', 'req.headers["x-access-token"]', '*.password', 'password'], censor: '[redacted]' },
    },
    masked,
  );
}
