/**
 * A real HTTP server on 127.0.0.1 for the `http` step's tests. Routes misbehave on request:
 *
 * - `/echo/...?status=n`: n (default 200), JSON `{ method, url, headers, body }` (url is the raw
 *   request target); the request headers are echoed in the Content-Type's parameters too
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
 * - `/outage/:key?ms=n`: 503 while `server.outage` is true (a burst of server errors), else 200
 *   `{ key }`; after n milliseconds either way
 * - `/oauth/token` (POST, form): client credentials checked against `server.oauth`; 200 with a new
 *   token `{ access_token, token_type, expires_in }`, or 401 echoing the form (secret included)
 * - `/api/:key`: 200 `{ key, token }` with `Authorization: Bearer <a token /oauth/token issued,
 *   not expired nor revoked>`, else 401
 *
 * Options ride in the query, so that one URL template (`/{{ route }}/{{ key }}` with `query`
 * parameters whose null fields are left out) reaches every route.
 *
 * It records every request (method, raw url, headers, body, arrival time) and the most requests it
 * ever had in flight at once.
 */
import http from 'node:http';
import { listenOnLoopback } from '../../http/test-util.ts';

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
  /** While true, `/outage` answers 503. */
  outage: boolean;
  oauth: {
    clientId: string;
    clientSecret: string;
    /** `expires_in` of the tokens issued, in seconds (the server enforces it too). */
    expiresIn: number;
    /** Milliseconds before the token endpoint answers. */
    delayMs: number;
    /** Tokens issued, in order. */
    issued: string[];
    /** Tokens `/api` refuses from now on (as if revoked by the server). */
    revoked: Set<string>;
    /** Form bodies the token endpoint received. */
    forms: URLSearchParams[];
  };
  inFlight: number;
  maxInFlight: number;
  /** Forgets requests, hits and the in-flight maximum. */
  reset(): void;
  close(): Promise<void>;
}

export async function startTestServer(): Promise<TestServer> {
  const hitsByPath = new Map<string, number[]>();
  /** Per token issued: Date.now() when it expires. */
  const expiry = new Map<string, number>();
  const state: TestServer = {
    origin: '',
    requests: [],
    hits: (p) => hitsByPath.get(p) ?? [],
    finished: [],
    throttles: [],
    token: 'enrich-token-5b7c-SECRET',
    outage: false,
    oauth: {
      clientId: 'sluice-client',
      clientSecret: 'client-secret-9d1e-SECRET',
      expiresIn: 3600,
      delayMs: 0,
      issued: [],
      revoked: new Set(),
      forms: [],
    },
    inFlight: 0,
    maxInFlight: 0,
    reset() {
      state.requests.length = 0;
      state.finished.length = 0;
      state.throttles.length = 0;
      hitsByPath.clear();
      state.maxInFlight = 0;
      state.outage = false;
      state.oauth.expiresIn = 3600;
      state.oauth.delayMs = 0;
      state.oauth.issued.length = 0;
      state.oauth.revoked.clear();
      state.oauth.forms.length = 0;
      expiry.clear();
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
          return json(
            Number(q('status') ?? 200),
            { method: req.method, url: req.url, headers: req.headers, body },
            { 'content-type': `application/json; echo="${encodeURIComponent(JSON.stringify(req.headers))}"` },
          );
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
        case 'bulk': {
          // A bulk endpoint: an array of items (or `{ data: { items } }` with ?wrapped=1) in, one
          // result per item out, in order; ?short=1 answers one result too few, ?status=N fails.
          if (q('status')) return json(Number(q('status')), { error: 'refused' });
          const parsed = JSON.parse(body) as { id: number }[] | { data: { items: { id: number }[] } };
          const items = Array.isArray(parsed) ? parsed : parsed.data.items;
          const results = items.map((item) => ({ id: item.id, score: item.id / 10 }));
          if (q('short')) results.pop();
          return json(200, q('wrapped') ? { data: { results } } : results);
        }
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
        case 'outage': {
          const answer = () =>
            state.outage ? json(503, { error: 'outage' }) : json(200, { key: decodeURIComponent(a ?? '') });
          const timer = setTimeout(answer, Number(q('ms') ?? 0));
          res.on('close', () => clearTimeout(timer));
          return;
        }
        case 'oauth': {
          const form = new URLSearchParams(body);
          state.oauth.forms.push(form);
          const { oauth } = state;
          const timer = setTimeout(() => {
            if (
              form.get('grant_type') !== 'client_credentials' ||
              form.get('client_id') !== oauth.clientId ||
              form.get('client_secret') !== oauth.clientSecret
            )
              return json(401, { error: 'invalid_client', received: body });
            const token = `access-${oauth.issued.length + 1}-${Math.random().toString(36).slice(2)}`;
            oauth.issued.push(token);
            expiry.set(token, Date.now() + oauth.expiresIn * 1000);
            return json(200, { access_token: token, token_type: 'Bearer', expires_in: oauth.expiresIn });
          }, state.oauth.delayMs);
          res.on('close', () => clearTimeout(timer));
          return;
        }
        case 'api': {
          const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
          const until = expiry.get(token);
          if (until === undefined || until <= Date.now() || state.oauth.revoked.has(token))
            return json(401, { error: 'invalid_token' });
          return json(200, { key: a, token });
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
  Object.assign(state, await listenOnLoopback(server));
  return state;
}
