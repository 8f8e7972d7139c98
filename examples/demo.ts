// `npm start`: the example system service plus `jobscope start` on ./jobs, so the demo works end to end in one command.
import { main } from '../src/cli/main.ts';
import { createSystemService } from './system-service.ts';

const servicePort = Number(process.env.SYSTEM_SERVICE_PORT ?? 4000);
process.env.JOBSCOPE_SERVICES ??= `system=http://127.0.0.1:${servicePort}`;
const service = createSystemService({
  port: servicePort,
  jwksUrl: `http://127.0.0.1:${process.env.PORT ?? 3000}/.well-known/jwks.json`,
  redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  prefix: process.env.JOBSCOPE_PREFIX,
}).listen(servicePort, '127.0.0.1', () => console.error(`example system service on http://127.0.0.1:${servicePort}`));

const code = await main(['start']);
service.close();
// The service's verifier holds a Redis connection: exit rather than wait for it.
process.exit(code);
