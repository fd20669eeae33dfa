/**
 * What the http step makes of a response before mapping it: Content-Encoding decoded (gzip,
 * deflate, br, zstd), redirects followed (bounded, same origin unless allowed) and the body capped
 * (response.max_bytes, after decoding). Against real servers on loopback.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, afterEach, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import { listenOnLoopback } from '../../http/test-util.ts';
import { testContext } from '../../sdk/testing.ts';
import type { RecordValue, Rejection, SluiceRecord, StepInstance, StepResult } from '../../sdk/types.ts';
import { createHttpStep, httpStep } from './index.ts';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const ENCODERS: Record<string, (b: Buffer) => Buffer> = {
  gzip: (b) => zlib.gzipSync(b),
  'x-gzip': (b) => zlib.gzipSync(b),
  deflate: (b) => zlib.deflateSync(b),
  br: (b) => zlib.brotliCompressSync(b),
  zstd: (b) => zlib.zstdCompressSync(b),
};

/** 64 MiB of JSON spaces in a gzip of about 64 KiB: a zip bomb. */
const BOMB = zlib.gzipSync(Buffer.concat([Buffer.from('{"a":1}'), Buffer.alloc(64 * 1024 * 1024, 0x20)]));

/**
 * A server whose routes: `/z/:enc` (200 JSON compressed with enc), `/zfail/:enc` (500 text
 * compressed), `/lie/:enc` (200 plain JSON claiming enc), `/to/:code?to=url` (that redirect), `/chain/:n` (redirects to /chain/n-1, 200 at
 * 0), `/big?bytes=n` (200 JSON of n bytes), `/bomb` (the zip bomb), `/echo` (200 JSON of the request).
 */
async function startServer(): Promise<{ origin: string; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const url = new URL(req.url ?? '/', 'http://x');
      const [, route, arg = ''] = url.pathname.split('/');
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      switch (route) {
        case 'z': {
          const encoded = ENCODERS[arg]!(Buffer.from(JSON.stringify({ enc: arg, text: 'été'.repeat(100) })));
          res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': arg });
          return res.end(encoded);
        }
        case 'lie':
          res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': arg });
          return res.end('{"plain": true}');
        case 'zfail': {
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-encoding': arg });
          return res.end(ENCODERS[arg]!(Buffer.from(`upstream failed (${arg})`)));
        }
        case 'to':
          res.writeHead(Number(arg), { location: url.searchParams.get('to') ?? '/echo' });
          return res.end('moved');
        case 'chain': {
          const n = Number(arg);
          if (n === 0) return json(200, { done: true });
          res.writeHead(302, { location: `/chain/${n - 1}` });
          return res.end();
        }
        case 'big': {
          const text = JSON.stringify({ pad: 'x'.repeat(Number(url.searchParams.get('bytes')) - 10) });
          res.writeHead(200, {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(text),
          });
          return res.end(req.method === 'HEAD' ? undefined : text);
        }
        case 'bomb':
          res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
          return res.end(BOMB);
        case 'echo':
          return json(200, { method: req.method, headers: req.headers, body });
        default:
          return json(404, { error: 'no route' });
      }
    });
  });
  const { origin, close } = await listenOnLoopback(server);
  return { origin, seen, close };
}

let a: Awaited<ReturnType<typeof startServer>>;
let b: Awaited<ReturnType<typeof startServer>>;
const open: StepInstance[] = [];

before(async () => {
  a = await startServer();
  b = await startServer();
});
after(async () => {
  await Promise.all([a.close(), b.close()]);
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close?.()));
  a.seen.length = 0;
  b.seen.length = 0;
});

function step(input: Record<string, unknown>): StepInstance {
  const s = createHttpStep(httpStep.config.parse(input), testContext({ batchSize: 100 }));
  open.push(s);
  return s;
}

const rec = (value: RecordValue, offset = 0): SluiceRecord => ({
  value,
  meta: { position: { partition: 'p', offset } },
});

function only(result: StepResult): Rejection {
  assert.equal(result.rejected?.length, 1, JSON.stringify(result.records.map((r) => r.value)));
  return result.rejected![0]!;
}

async function one(s: StepInstance, value: RecordValue): Promise<StepResult> {
  return s.process([rec(value)]);
}

describe('http step: compressed responses', () => {
  for (const enc of Object.keys(ENCODERS)) {
    it(`decodes Content-Encoding: ${enc}`, async () => {
      const s = step({ request: { url: `${a.origin}/z/{{ enc }}` }, retry: { attempts: 1 } });
      const result = await one(s, { enc });
      assert.equal(result.rejected, undefined, result.rejected?.[0]?.error.message);
      assert.deepEqual(result.records[0]!.value, { enc, response: { enc, text: 'été'.repeat(100) } });
      assert.equal(a.seen[0]!.headers['accept-encoding'], 'gzip, deflate, br, zstd');
    });
  }

  it('decodes a compressed error body for the excerpt', async () => {
    const s = step({ request: { url: `${a.origin}/zfail/gzip` }, retry: { attempts: 1 } });
    const error = only(await one(s, {})).error;
    assert.equal(error.code, 'SLUICE_HTTP_STATUS');
    assert.equal(error.details?.body, 'upstream failed (gzip)');
  });

  it('a body that does not decode as its Content-Encoding says fails with SLUICE_HTTP_RESPONSE', async () => {
    const s = step({ request: { url: `${a.origin}/lie/gzip` }, retry: { attempts: 1 } });
    const error = only(await one(s, {})).error;
    assert.equal(error.code, 'SLUICE_HTTP_RESPONSE');
    assert.match(
      error.message,
      /\/lie\/gzip answered 200 with a body that does not decode as its Content-Encoding says: .*Z_DATA_ERROR/,
    );
  });

  it('with response.decompress: false, asks for no encoding and keeps the body as it came', async () => {
    const s = step({
      request: { url: `${a.origin}/echo` },
      response: { decompress: false },
      retry: { attempts: 1 },
    });
    const result = await one(s, {});
    const echoed = (result.records[0]!.value.response as { headers: Record<string, string> }).headers;
    assert.equal(echoed['accept-encoding'], undefined);
  });

  it('a request header Accept-Encoding wins over the default', async () => {
    const s = step({
      request: { url: `${a.origin}/echo`, headers: { 'Accept-Encoding': 'identity' } },
      retry: { attempts: 1 },
    });
    await one(s, {});
    assert.equal(a.seen[0]!.headers['accept-encoding'], 'identity');
  });
});

describe('http step: redirects', () => {
  for (const [code, method, body] of [
    [301, 'GET', ''],
    [302, 'GET', ''],
    [303, 'GET', ''],
    [307, 'POST', '{"id":1}'],
    [308, 'POST', '{"id":1}'],
  ] as const) {
    it(`follows a ${code} from a POST: the target gets a ${method}${body ? ' with the body' : ' without a body'}`, async () => {
      const s = step({
        request: { method: 'POST', url: `${a.origin}/to/${code}?to=/echo`, body: { id: '{{ id }}' } },
        retry: { attempts: 1 },
      });
      const result = await one(s, { id: 1 });
      assert.equal(result.rejected, undefined, result.rejected?.[0]?.error.message);
      const response = result.records[0]!.value.response as { method: string; body: string };
      assert.equal(response.method, method);
      assert.equal(response.body, body);
      assert.deepEqual(
        a.seen.map((r) => `${r.method} ${r.url}`),
        [`POST /to/${code}?to=/echo`, `${method} /echo`],
      );
      if (!body)
        assert.equal(a.seen[1]!.headers['content-type'], undefined, 'no content headers without a body');
    });
  }

  it('follows up to redirects.max hops (default 5) and fails the record on one more', async () => {
    const s = step({ request: { url: `${a.origin}/chain/{{ n }}` }, retry: { attempts: 1 } });
    const ok = await one(s, { n: 5 });
    assert.deepEqual(ok.records[0]!.value, { n: 5, response: { done: true } });
    a.seen.length = 0;
    const error = only(await one(s, { n: 6 })).error;
    assert.equal(error.code, 'SLUICE_HTTP_REDIRECT');
    assert.match(error.message, /\/chain\/6 .*redirected more than 5 times \(redirects\.max\).*\/chain\/0/);
    assert.equal(a.seen.length, 6, 'the 7th request is not sent');
    assert.equal(error.details?.redirects, 5);
  });

  it('with redirects.max: 0, a 3xx is the final response (an error by default)', async () => {
    const s = step({
      request: { url: `${a.origin}/to/302?to=/echo` },
      redirects: { max: 0 },
      retry: { attempts: 1 },
    });
    const error = only(await one(s, {})).error;
    assert.equal(error.code, 'SLUICE_HTTP_STATUS');
    assert.equal(error.details?.status, 302);
    assert.equal(a.seen.length, 1);
  });

  it('refuses a redirect to another origin by default, sending nothing there', async () => {
    const s = step({
      request: { url: `${a.origin}/to/307?to={{ to }}` },
      retry: { attempts: 1 },
    });
    const error = only(await one(s, { to: `${b.origin}/echo` })).error;
    assert.equal(error.code, 'SLUICE_HTTP_REDIRECT');
    assert.ok(error.message.includes(`to another origin (${b.origin}/echo)`), error.message);
    assert.match(error.message, /redirects\.cross_origin: true/);
    assert.equal(b.seen.length, 0);
  });

  it('with redirects.cross_origin, follows it and strips the credentials', async () => {
    const s = step({
      request: { url: `${a.origin}/to/302?to={{ to }}`, headers: { 'X-Trace': 'kept' } },
      auth: { header: { name: 'X-Api-Key', value: 'key-7d1f-SECRET' } },
      redirects: { cross_origin: true },
      retry: { attempts: 1 },
    });
    const result = await one(s, { to: `${b.origin}/echo` });
    assert.equal(result.rejected, undefined, result.rejected?.[0]?.error.message);
    assert.equal(a.seen[0]!.headers['x-api-key'], 'key-7d1f-SECRET');
    assert.equal(b.seen.length, 1);
    assert.equal(b.seen[0]!.headers['x-api-key'], undefined);
    assert.equal(b.seen[0]!.headers['x-trace'], 'kept');

    const bearer = step({
      request: { url: `${a.origin}/to/308?to={{ to }}` },
      auth: { bearer: 'bearer-2c9a-SECRET' },
      redirects: { cross_origin: true },
      retry: { attempts: 1 },
    });
    await one(bearer, { to: `${b.origin}/echo` });
    assert.equal(b.seen[1]!.headers.authorization, undefined);
    assert.equal(b.seen[1]!.headers.host, new URL(b.origin).host);
  });
});

describe('http step: response size cap', () => {
  it('fails a record whose body exceeds response.max_bytes, naming the limit', async () => {
    const s = step({
      request: { url: `${a.origin}/big?bytes={{ bytes }}` },
      response: { max_bytes: '64KiB' },
      retry: { attempts: 1 },
    });
    const fits = await one(s, { bytes: 60_000 });
    assert.equal(fits.rejected, undefined);
    const error = only(await one(s, { bytes: 70_000 })).error;
    assert.equal(error.code, 'SLUICE_HTTP_BODY_TOO_LARGE');
    assert.match(
      error.message,
      /\/big\?bytes=70000 .*more than response\.max_bytes \(65536 bytes, counted after decoding\)/,
    );
    assert.equal(error.details?.max_bytes, 65536);
  });

  it('a HEAD whose Content-Length is over the cap is kept: it has no body', async () => {
    const s = step({
      request: { method: 'HEAD', url: `${a.origin}/big?bytes=70000` },
      response: { max_bytes: '64KiB', include: ['status', 'headers'] },
      retry: { attempts: 1 },
    });
    const result = await one(s, {});
    assert.equal(result.rejected, undefined, result.rejected?.[0]?.error.message);
    const response = result.records[0]!.value.response as { status: number; headers: Record<string, string> };
    assert.equal(response.status, 200);
    assert.equal(response.headers['content-length'], '70000');
  });

  it('caps the decoded size: a gzip bomb fails at the default 10 MiB', async () => {
    const s = step({ request: { url: `${a.origin}/bomb` }, retry: { attempts: 1 } });
    const error = only(await one(s, {})).error;
    assert.equal(error.code, 'SLUICE_HTTP_BODY_TOO_LARGE');
    assert.match(error.message, /more than response\.max_bytes \(10485760 bytes, counted after decoding\)/);
  });
});
