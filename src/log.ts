// Structured JSON logs (pino). Anything that looks like a JWT is masked at the last step, whatever field it hides in.
import { format } from 'node:util';
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

/**
 * Routes `console.error` / `console.warn` into the JSON log, one line each, while a serving process runs: libraries print
 * there now and then (BullMQ prints an Error it could not emit, raw and multi-line), which would break a log pipeline's
 * line parsing. An Error that `onError` takes (the process's Redis log) is counted there instead. Returns the undo.
 */
export function captureConsole(logger: Logger, onError?: (err: Error) => boolean): () => void {
  const original = { error: console.error, warn: console.warn };
  const capture =
    (level: 'error' | 'warn') =>
    (...args: unknown[]) => {
      const err = args.find((a): a is Error => a instanceof Error);
      if (err && onError?.(err)) return;
      logger[level]({ console: level, text: format(...args) }, 'printed on the console (by a library)');
    };
  console.error = capture('error');
  console.warn = capture('warn');
  return () => {
    console.error = original.error;
    console.warn = original.warn;
  };
}
