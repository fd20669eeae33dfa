/**
 * The peers of Sluice's `http` step in the HTTP benchmark: the same N GET calls with C in flight,
 * made by a bare undici Pool (C connections) or by Node's own `fetch` (its global dispatcher does not
 * cap connections per origin), each body read and parsed as JSON. Prints one JSON line: calls, elapsedMs, cpuMs.
 *
 *   node bench/http-harness.ts undici|fetch ORIGIN N C
 */
import { Pool } from 'undici';

const [kind, origin, nArg, cArg] = process.argv.slice(2);
const N = Number(nArg);
const C = Number(cArg);
if ((kind !== 'undici' && kind !== 'fetch') || !origin) throw new Error('usage: undici|fetch ORIGIN N C');

let next = 0;
let done = 0;
const pool = new Pool(origin, { connections: C, pipelining: 1 });

async function undiciWorker() {
  while (next < N) {
    const id = ++next;
    const res = await pool.request({ method: 'GET', path: `/score?id=${id}` });
    await res.body.json();
    done++;
  }
}
async function fetchWorker() {
  while (next < N) {
    const id = ++next;
    const res = await fetch(`${origin}/score?id=${id}`);
    await res.json();
    done++;
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: C }, () => (kind === 'undici' ? undiciWorker() : fetchWorker())));
const elapsedMs = performance.now() - started;
await pool.close();
const usage = process.resourceUsage();
process.stdout.write(
  `${JSON.stringify({ calls: done, elapsedMs, cpuMs: (usage.userCPUTime + usage.systemCPUTime) / 1000 })}\n`,
);
