/**
 * The far end of the HTTP benchmarks, in its own process: answers every request after a fixed
 * latency with a small JSON body. `/fail?id=N` fails some ids: ids with id % 20 === 7 (5%) answer
 * 503 the first time each is asked and 200 after; ids with id % 1000 === 3 (0.1%) always answer
 * 422. Prints `listening PORT` once ready; `GET /stats` returns the request count.
 *
 *   node bench/http-server.ts LATENCY_MS
 */
import http from 'node:http';

const latency = Number(process.argv[2] ?? 100);
const seen = new Set<number>();
let requests = 0;
const body = (id: string) => `{"id":${JSON.stringify(id)},"score":0.42,"tier":"gold"}`;

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  if (url === '/stats') {
    res.end(JSON.stringify({ requests }));
    return;
  }
  requests++;
  const q = url.indexOf('id=');
  const id = q < 0 ? '' : url.slice(q + 3);
  setTimeout(() => {
    if (url.startsWith('/fail')) {
      const n = Number(id);
      if (n % 1000 === 3) {
        res.writeHead(422, { 'content-type': 'application/json' });
        res.end('{"error":"unknown customer"}');
        return;
      }
      if (n % 20 === 7 && !seen.has(n)) {
        seen.add(n);
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end('{"error":"busy"}');
        return;
      }
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body(id));
  }, latency);
});
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;
server.maxRequestsPerSocket = 0;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
