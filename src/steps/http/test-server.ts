/**
 * A real HTTP server on 127.0.0.1 for the `http` step's tests. Routes misbehave on request:
 *
 * - `/echo/...`: 200, JSON `{ method, url, headers, body }` (url is the raw request target)
 * - `/score/:id`: 200, JSON `{ id, score }`
 * - `/enrich/:id` (for pipeline runs; 401 unless `Authorization: Bearer <server.token>`): 404 when
 *   id % 10 is 0, 500 (echoing the credentials) when id % 25 is 7, 503 on the first hit when
 *   id % 10 is 3, else 200 `{ id, score: id / 100 }`
 * - `/status/:code`: that status, a text body echoing the credentials it got, padded to 3000 bytes
 * - `/flaky/:key?times=k&code=503&retry_after=v&date=ms`: the first k hits answer `code` (with a
 *   Retry-After of v seconds, or of an HTTP date ms from now), later ones 200 `{ key, hit }`
 * - `/reset/:key?times=k`: the first k hits (all without `times`) destroy the socket, later ones 200
 * - `/delay/:id?ms=n`: 200 `{ id }` after n milliseconds (before the headers)
 * - `/slow/:key?every=ms&chunks=n`: 200 JSON headers at once, then the body in n chunks, one per ms
 * - `/badjson/*`: 200, Content-Type JSON, a body that is not JSON
 * - `/text/*`: 200 text/plain; `/empty/*`: 204
 *
 * Options ride in the query, so that one URL template (`/{{ route }}/{{ key }}` with `query`
 * parameters whose null fields are left out) reaches every route.
 *
 * It records every request (method, raw url, headers, body, arrival time) and the most requests it
 * ever had in flight at once.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** performance.now() on arrival (before the body was read). */
  at: number;
  /** Date.now() on arrival. */
  wall: number;
}

/** A response that carried a Retry-After header, and when it was sent. */
export interface Throttle {
  path: string;
  retryAfter: string;
  /** performance.now() once the response was sent. */
  sentAt: number;
}

export interface TestServer {
  /** `http://127.0.0.1:PORT` */
  origin: string;
  requests: SeenRequest[];
  /** Per path (without query): arrival times. */
  hits(path: string): number[];
  /** When each response to a path finished being sent, in order. */
  finished: string[];
  throttles: Throttle[];
  /** The bearer token `/enrich` wants. */
  token: string;
  inFlight: number;
  maxInFlight: number;
  /** Forgets requests, hits and the in-flight maximum. */
  reset(): void;
  close(): Promise<void>;
}

export async function startTestServer(): Promise<TestServer> {
  const hitsByPath = new Map<string, number[]>();
  const state: TestServer = {
    origin: '',
    requests: [],
    hits: (p) => hitsByPath.get(p) ?? [],
    finished: [],
    throttles: [],
    token: 'enrich-token-5b7c-SECRET',
    inFlight: 0,
    maxInFlight: 0,
    reset() {
      state.requests.length = 0;
      state.finished.length = 0;
      state.throttles.length = 0;
      hitsByPath.clear();
      state.maxInFlight = 0;
    },
    close: async () => {},
  };

  const server = http.createServer((req, res) => {
    const at = performance.now();
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    let counted = true;
    const done = () => {
      if (!counted) return;
      counted = false;
      state.inFlight--;
    };
    res.on('finish', done);
    res.on('close', done);
    const wall = Date.now();
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const hits = hitsByPath.get(path) ?? [];
    hits.push(at);
    hitsByPath.set(path, hits);
    const hit = hits.length;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      state.requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
        at,
        wall,
      });
      const json = (status: number, value: unknown, headers: http.OutgoingHttpHeaders = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(value), () => {
          state.finished.push(path);
          const retryAfter = headers['retry-after'];
          if (retryAfter !== undefined)
            state.throttles.push({ path, retryAfter: String(retryAfter), sentAt: performance.now() });
        });
      };
      const [, route, a] = path.split('/');
      const q = (name: string) => url.searchParams.get(name);
      switch (route) {
        case 'echo':
          return json(200, { method: req.method, url: req.url, headers: req.headers, body });
        case 'enrich': {
          const id = Number(a);
          if (req.headers.authorization !== `Bearer ${state.token}`)
            return json(401, { error: 'unauthorized' });
          if (id % 10 === 0) return json(404, { error: 'unknown id' });
          if (id % 25 === 7) return json(500, { error: `failed with ${req.headers.authorization}` });
          if (id % 10 === 3 && hit === 1) return json(503, { error: 'busy' });
          return json(200, { id, score: id / 100 });
        }
        case 'score':
          return json(200, { id: decodeURIComponent(a ?? ''), score: (Number(a) % 100) / 100 });
        case 'status': {
          const text = `denied: authorization=${req.headers.authorization ?? ''} key=${req.headers['x-api-key'] ?? ''} url=${req.url} `;
          res.writeHead(Number(a), { 'content-type': 'text/plain; charset=utf-8' });
          return res.end(text.padEnd(3000, 'é'));
        }
        case 'flaky': {
          if (hit <= Number(q('times') ?? 1)) {
            const headers: http.OutgoingHttpHeaders = {};
            if (q('retry_after')) headers['retry-after'] = q('retry_after')!;
            if (q('date')) headers['retry-after'] = new Date(Date.now() + Number(q('date'))).toUTCString();
            return json(Number(q('code') ?? 503), { error: 'try again', hit }, headers);
          }
          return json(200, { key: a, hit });
        }
        case 'reset':
          if (q('times') === null || hit <= Number(q('times'))) {
            done();
            req.socket.destroy();
            return;
          }
          return json(200, { key: a, hit });
        case 'delay': {
          const timer = setTimeout(
            () => json(200, { id: decodeURIComponent(a ?? '') }),
            Number(q('ms') ?? 0),
          );
          res.on('close', () => clearTimeout(timer)); // the client gave up: nothing keeps the process alive
          return;
        }
        case 'slow': {
          res.writeHead(200, { 'content-type': 'application/json' });
          const n = Number(q('chunks') ?? 10);
          const text = JSON.stringify({ key: a, pad: 'x'.repeat(n * 4) });
          const size = Math.ceil(text.length / n);
          const parts = Array.from({ length: n }, (_, k) => text.slice(k * size, (k + 1) * size));
          let i = 0;
          const timer = setInterval(
            () => {
              if (res.destroyed) return clearInterval(timer);
              if (i < parts.length) res.write(parts[i++]);
              if (i >= parts.length) {
                clearInterval(timer);
                res.end(() => state.finished.push(path));
              }
            },
            Number(q('every') ?? 20),
          );
          res.on('close', () => clearInterval(timer));
          return;
        }
        case 'badjson':
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end('{"broken": ');
        case 'text':
          res.writeHead(200, { 'content-type': 'text/plain' });
          return res.end('plain text');
        case 'empty':
          res.writeHead(204);
          return res.end();
        default:
          return json(404, { error: 'no such route', path });
      }
    });
  });
  // The client's keep-alive must not outlive ours in the middle of a test.
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  state.origin = `http://127.0.0.1:${port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}

/** A port nothing listens on (a server was there a moment ago): connections are refused. */
export async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
