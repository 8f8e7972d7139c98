# jobscope runner image: `jobscope start|worker|server` (ENTRYPOINT is the CLI), also used by docker-compose.yml to run the
# example system service. Job files are TypeScript loaded at run time through tsx, so ./jobs can be mounted without a build.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The verifier is a workspace package (@jobscope/verify): npm needs its package.json to link it.
COPY packages/verify/package.json ./packages/verify/
# --ignore-scripts: `prepare` would build before the sources are copied; msgpackr-extract falls back to pure JS.
RUN npm install --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY packages/verify/tsconfig.json ./packages/verify/
COPY packages/verify/src ./packages/verify/src
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/verify/package.json ./packages/verify/
RUN npm install --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/packages/verify/dist ./packages/verify/dist
COPY bin ./bin
COPY dashboard ./dashboard
COPY jobs ./jobs
COPY examples ./examples
# .jobscope holds the dev signing key when no JOBSCOPE_SIGNING_KEY_FILE is given: writable by the unprivileged user.
RUN mkdir -p /app/.jobscope && chown node:node /app/.jobscope
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "bin/jobscope.js"]
CMD ["start"]
