/**
 * A real HTTP server on 127.0.0.1 for the `http` sink and source tests (the pattern of
 * src/steps/http/test-server.ts). Each test sets `server.handler`, which answers a request from
 * what arrived and the hit count of its path; the server records every request.
 */
import http from 'node:http';
import { closedPort, listenOnLoopback } from '../../http/test-util.ts';

export interface Arrived {
  method: string;
  /** The raw request target: `/items?cursor=abc`. */
  url: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** performance.now() on arrival. */
  at: number;
}

export interface Answer {
  status?: number;
  headers?: http.OutgoingHttpHeaders;
  /** JSON-encoded unless it is a string or a Buffer (sent as is). */
  body?: unknown;
}

/** An answer, or 'destroy' to drop the connection without one. */
export type Handler = (req: Arrived, hit: number) => Answer | 'destroy' | Promise<Answer | 'destroy'>;

export interface PageServer {
  /** `http://127.0.0.1:PORT` */
  origin: string;
  requests: Arrived[];
  handler: Handler;
  /** Hits per path (without query). */
  hits(path: string): number;
  reset(): void;
  close(): Promise<void>;
}

export async function startPageServer(): Promise<PageServer> {
  const hitsByPath = new Map<string, number>();
  const state: PageServer = {
    origin: '',
    requests: [],
    handler: () => ({ status: 200, body: {} }),
    hits: (p) => hitsByPath.get(p) ?? 0,
    reset() {
      state.requests.length = 0;
      hitsByPath.clear();
      state.handler = () => ({ status: 200, body: {} });
    },
    close: async () => {},
  };
  const server = http.createServer((req, res) => {
    const at = performance.now();
    const url = new URL(req.url ?? '/', 'http://x');
    const hit = (hitsByPath.get(url.pathname) ?? 0) + 1;
    hitsByPath.set(url.pathname, hit);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const arrived: Arrived = {
        method: req.method ?? '',
        url: req.url ?? '',
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at,
      };
      state.requests.push(arrived);
      let answer: Answer | 'destroy';
      try {
        answer = await state.handler(arrived, hit);
      } catch (err) {
        answer = { status: 500, body: { error: String(err) } };
      }
      if (answer === 'destroy') {
        req.socket.destroy();
        return;
      }
      const raw = typeof answer.body === 'string' || Buffer.isBuffer(answer.body);
      const body =
        answer.body === undefined ? '' : raw ? (answer.body as string | Buffer) : JSON.stringify(answer.body);
      res.writeHead(answer.status ?? 200, {
        ...(raw ? {} : { 'content-type': 'application/json' }),
        ...answer.headers,
      });
      res.end(body);
    });
  });
  Object.assign(state, await listenOnLoopback(server));
  return state;
}

export { closedPort };
