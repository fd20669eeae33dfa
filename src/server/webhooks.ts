/**
 * Webhooks: when a job ends, every registered URL that asked for the event gets a signed POST.
 * Deliveries are rows in `webhook_deliveries`, so a restarted server keeps retrying what an earlier
 * one queued. Each attempt is claimed with a compare-and-set on the row, so two loops (or two
 * servers on one PostgreSQL) never send the same attempt twice.
 *
 * Signatures follow Stripe's scheme, which receivers already know how to check:
 * `Sluice-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { SluiceError } from '../sdk/errors.ts';
import type { Logger } from '../sdk/types.ts';
import { backoffDelay as exponentialBackoff } from '../shared/backoff.ts';
import type { Db } from './store/db.ts';
import { newId } from './store/ids.ts';

export const WEBHOOK_EVENTS = ['job.succeeded', 'job.failed', 'job.cancelled'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];
/** Subscribes a webhook to every event, including ones added later. */
export const ALL_EVENTS = '*';

export const SIGNATURE_HEADER = 'Sluice-Signature';
export const USER_AGENT = 'sluice-webhooks/1';

export interface RetryPolicy {
  /** Attempts in all, the first included, before a delivery is marked failed. */
  attempts: number;
  /** Ceiling of the first wait in milliseconds; it doubles per failed attempt up to maxMs. */
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 12, baseMs: 1000, maxMs: 5 * 60_000 };

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface ApiWebhook {
  id: string;
  url: string;
  events: string[];
  created_at: string;
}

export interface ApiDelivery {
  id: string;
  webhook_id: string;
  event: string;
  job_id: string | null;
  status: DeliveryStatus;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  created_at: string;
  delivered_at: string | null;
  next_attempt_at: string | null;
}

// ------------------------------------------------------------------ signatures

/** The `Sluice-Signature` header value for `body` sent at `timestampSec`. */
export function signPayload(secret: string, body: string, timestampSec: number): string {
  return `t=${timestampSec},v1=${hmac(secret, body, timestampSec)}`;
}

function hmac(secret: string, body: string, timestampSec: number): string {
  return createHmac('sha256', secret).update(`${timestampSec}.${body}`).digest('hex');
}

export interface VerifyOptions {
  /** How far the signed time may be from now, either way; an older request is taken as a replay. */
  toleranceSec?: number;
  /** Epoch milliseconds; defaults to the clock. */
  now?: number;
}

/**
 * True when `header` carries a `v1` signature of `body` with `secret` made within the tolerance.
 * Several `v1` entries are allowed (a receiver rotating secrets signs with both).
 */
export function verifySignature(
  secret: string,
  body: string,
  header: string | null | undefined,
  options: VerifyOptions = {},
): boolean {
  if (typeof header !== 'string') return false;
  const { toleranceSec = 300, now = Date.now() } = options;
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && timestamp === undefined && /^\d+$/.test(value)) timestamp = Number(value);
    else if (key === 'v1' && /^[0-9a-f]{64}$/i.test(value)) signatures.push(value.toLowerCase());
  }
  if (timestamp === undefined || signatures.length === 0) return false;
  if (Math.abs(now / 1000 - timestamp) > toleranceSec) return false;
  const expected = Buffer.from(hmac(secret, body, timestamp), 'hex');
  // Every candidate is compared, so the time taken does not tell which one matched.
  let ok = false;
  for (const sig of signatures) ok = timingSafeEqual(expected, Buffer.from(sig, 'hex')) || ok;
  return ok;
}

/** A fresh signing secret: 32 random bytes. */
export function generateSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

/**
 * Exponential backoff with full jitter: the wait after the `attempt`-th failure (1-based) is
 * uniform in [0, min(maxMs, baseMs * 2^(attempt-1))], so receivers that failed together do not
 * get retried together.
 */
export function backoffDelay(
  attempt: number,
  retry: RetryPolicy,
  random: () => number = Math.random,
): number {
  return Math.round(exponentialBackoff(attempt, { ...retry, jitter: 'full' }, random));
}

// ------------------------------------------------------------------ service

export interface WebhookServiceOptions {
  db: Db;
  logger: Logger;
  retry?: RetryPolicy;
  /** Per attempt: connect, send and read the response. */
  timeoutMs?: number;
  /** How often the loop looks for due deliveries; `emit` also wakes it. */
  pollMs?: number;
  /** Attempts in flight at once. */
  concurrency?: number;
  /** The jitter source, for tests that need the widest waits; defaults to Math.random. */
  random?: () => number;
}

interface WebhookRow {
  id: string;
  url: string;
  secret: string;
  events: string;
  created_at: number;
  deleted_at: number | null;
}

interface DeliveryRow {
  id: string;
  webhook_id: string;
  event: string;
  job_id: string | null;
  payload: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number | null;
  last_status: number | null;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

/** A claimed attempt: the row as it was after the claim, and where to send it. */
interface Claimed {
  delivery: DeliveryRow;
  url: string;
  secret: string;
}

/** Room for the last error in the delivery log: enough for a reason, not for a whole HTML page. */
const MAX_ERROR_LENGTH = 300;
/** A claim outlives the send by this much: a server that dies mid-send leaves the row due again after. */
const LEASE_MARGIN_MS = 30_000;

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

export class WebhookService {
  readonly #db: Db;
  readonly #logger: Logger;
  readonly #retry: RetryPolicy;
  readonly #timeoutMs: number;
  readonly #pollMs: number;
  readonly #concurrency: number;
  readonly #random: () => number;
  readonly #inflight = new Set<Promise<void>>();
  #running = false;
  #loop: Promise<void> | undefined;
  #woken = false;
  #wake: (() => void) | undefined;

  constructor(opts: WebhookServiceOptions) {
    this.#db = opts.db;
    this.#logger = opts.logger;
    this.#retry = opts.retry ?? DEFAULT_RETRY;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#pollMs = opts.pollMs ?? 500;
    this.#concurrency = Math.max(1, opts.concurrency ?? 8);
    this.#random = opts.random ?? Math.random;
    if (this.#retry.attempts < 1) throw new Error('webhook retry.attempts must be at least 1');
  }

  async register(input: {
    url: string;
    events: string[];
    secret?: string;
  }): Promise<{ webhook: ApiWebhook; secret: string }> {
    const url = checkUrl(input.url);
    const events = checkEvents(input.events);
    if (input.secret !== undefined && (typeof input.secret !== 'string' || input.secret.length === 0)) {
      throw badRequest('secret', 'secret: must be a non-empty string, or left out to have one generated');
    }
    const secret = input.secret ?? generateSecret();
    const row: WebhookRow = {
      id: newId('wh'),
      url,
      secret,
      events: JSON.stringify(events),
      created_at: Date.now(),
      deleted_at: null,
    };
    await this.#db.run(
      'INSERT INTO webhooks (id, url, secret, events, created_at) VALUES ($1, $2, $3, $4, $5)',
      [row.id, row.url, row.secret, row.events, row.created_at],
    );
    this.#logger.info('webhook registered', { webhook_id: row.id, url: safeUrl(url), events });
    return { webhook: apiWebhook(row), secret };
  }

  async list(): Promise<ApiWebhook[]> {
    const rows = await this.#db.all<WebhookRow>(
      'SELECT * FROM webhooks WHERE deleted_at IS NULL ORDER BY created_at, id',
    );
    return rows.map(apiWebhook);
  }

  /** Removes a webhook; its deliveries still waiting are given up (marked failed), its log is kept. */
  async remove(id: string): Promise<void> {
    const now = Date.now();
    const removed = await this.#db.tx(async (tx) => {
      const n = await tx.run('UPDATE webhooks SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL', [
        id,
        now,
      ]);
      if (n === 0) return false;
      await tx.run(
        `UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, last_error = $2
         WHERE webhook_id = $1 AND status = 'pending'`,
        [id, 'webhook removed before delivery'],
      );
      return true;
    });
    if (!removed) throw notFound(id);
    this.#logger.info('webhook removed', { webhook_id: id });
  }

  /** The delivery log of one webhook, newest first. */
  async deliveries(webhookId: string, limit = 50): Promise<ApiDelivery[]> {
    const hook = await this.#db.get('SELECT id FROM webhooks WHERE id = $1 AND deleted_at IS NULL', [
      webhookId,
    ]);
    if (!hook) throw notFound(webhookId);
    const n = Math.min(Math.max(1, Math.trunc(limit) || 1), 1000);
    const rows = await this.#db.all<DeliveryRow>(
      'SELECT * FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2',
      [webhookId, n],
    );
    return rows.map(apiDelivery);
  }

  /**
   * Queues one delivery of `event` per webhook that asked for it and wakes the loop. `data` is the
   * payload's `data` ({job, summary, checks}); `data.job.id` is kept as the delivery's job id.
   */
  async emit(event: WebhookEvent, data: Record<string, unknown>): Promise<number> {
    const hooks = (await this.#db.all<WebhookRow>('SELECT * FROM webhooks WHERE deleted_at IS NULL')).filter(
      (h) => {
        const events = JSON.parse(h.events) as string[];
        return events.includes(event) || events.includes(ALL_EVENTS);
      },
    );
    if (hooks.length === 0) return 0;
    const job = data.job as { id?: unknown } | undefined;
    const jobId = typeof job?.id === 'string' ? job.id : null;
    const now = Date.now();
    await this.#db.tx(async (tx) => {
      for (const hook of hooks) {
        const id = newId('whd');
        const payload = JSON.stringify({ id, event, created_at: new Date(now).toISOString(), data });
        await tx.run(
          `INSERT INTO webhook_deliveries
             (id, webhook_id, event, job_id, payload, status, attempts, next_attempt_at, created_at)
           VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)`,
          [id, hook.id, event, jobId, payload, now],
        );
      }
    });
    this.#signal();
    return hooks.length;
  }

  /**
   * One pass: claims up to `concurrency` deliveries due by `now` (epoch ms; a test may pass a
   * later time to skip a wait) and attempts them. Resolves with the number of attempts made.
   */
  async deliverDue(now: number = Date.now()): Promise<number> {
    const claimed = await this.#claim(now, this.#concurrency);
    await Promise.all(claimed.map((c) => this.#track(c)));
    return claimed.length;
  }

  /** Starts the background loop (idempotent). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Ends the loop and waits for attempts in flight (each is bounded by the timeout). */
  async stop(): Promise<void> {
    this.#running = false;
    this.#signal();
    await this.#loop;
    this.#loop = undefined;
    await Promise.allSettled([...this.#inflight]);
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const free = this.#concurrency - this.#inflight.size;
      if (free > 0) {
        try {
          for (const c of await this.#claim(Date.now(), free)) {
            // Each finished attempt wakes the loop, which then claims more.
            this.#track(c).finally(() => this.#signal());
          }
        } catch (err) {
          // A database hiccup must not end the loop: the rows stay due and the next pass retries.
          this.#logger.warn('webhook delivery loop failed to read due deliveries', { error: errorText(err) });
        }
      }
      await this.#sleep();
    }
  }

  #sleep(): Promise<void> {
    if (this.#woken || !this.#running) {
      this.#woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        this.#woken = false;
        resolve();
      };
      const timer = setTimeout(done, this.#pollMs);
      this.#wake = done;
    });
  }

  #signal(): void {
    this.#woken = true;
    this.#wake?.();
  }

  #track(c: Claimed): Promise<void> {
    const p = this.#attempt(c).catch((err) => {
      // Recording the outcome failed (the database went away); the claim's lease makes the row
      // due again later.
      this.#logger.error('webhook delivery could not be recorded', {
        delivery_id: c.delivery.id,
        error: errorText(err),
      });
    });
    this.#inflight.add(p);
    p.finally(() => this.#inflight.delete(p));
    return p;
  }

  /**
   * Takes due rows one by one with a compare-and-set on their attempt count: the winner counts the
   * attempt before sending (so a crash mid-send still uses one up) and holds a lease on the row.
   */
  async #claim(now: number, limit: number): Promise<Claimed[]> {
    const due = await this.#db.all<DeliveryRow & { url: string; secret: string }>(
      `SELECT d.*, w.url, w.secret FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
       WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND w.deleted_at IS NULL
       ORDER BY d.next_attempt_at, d.id LIMIT $2`,
      [now, limit],
    );
    const claimed: Claimed[] = [];
    const lease = Date.now() + this.#timeoutMs + LEASE_MARGIN_MS;
    for (const row of due) {
      const won = await this.#db.run(
        `UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $3
         WHERE id = $1 AND status = 'pending' AND attempts = $2`,
        [row.id, row.attempts, lease],
      );
      if (won === 0) continue;
      const { url, secret, ...delivery } = row;
      claimed.push({
        delivery: { ...delivery, attempts: row.attempts + 1, next_attempt_at: lease },
        url,
        secret,
      });
    }
    return claimed;
  }

  async #attempt({ delivery, url, secret }: Claimed): Promise<void> {
    const { status, error } = await this.#send(url, secret, delivery);
    const now = Date.now();
    const ok = status !== null && status >= 200 && status < 300;
    const log = {
      webhook_id: delivery.webhook_id,
      delivery_id: delivery.id,
      event: delivery.event,
      url: safeUrl(url),
      attempt: delivery.attempts,
    };
    let next: { status: DeliveryStatus; next_attempt_at: number | null; delivered_at: number | null };
    if (ok) {
      next = { status: 'delivered', next_attempt_at: null, delivered_at: now };
      this.#logger.info('webhook delivered', { ...log, status });
    } else if (delivery.attempts >= this.#retry.attempts) {
      next = { status: 'failed', next_attempt_at: null, delivered_at: null };
      this.#logger.warn('webhook delivery failed for good', { ...log, status, error });
    } else {
      const at = now + backoffDelay(delivery.attempts, this.#retry, this.#random);
      next = { status: 'pending', next_attempt_at: at, delivered_at: null };
      this.#logger.warn('webhook delivery attempt failed; will retry', {
        ...log,
        status,
        error,
        next_attempt_at: new Date(at).toISOString(),
      });
    }
    // Guarded by the attempt count: a stale sender (its lease expired and another took over)
    // cannot overwrite the newer attempt's outcome.
    await this.#db.run(
      `UPDATE webhook_deliveries
       SET status = $3, next_attempt_at = $4, delivered_at = $5, last_status = $6, last_error = $7
       WHERE id = $1 AND attempts = $2`,
      [delivery.id, delivery.attempts, next.status, next.next_attempt_at, next.delivered_at, status, error],
    );
  }

  async #send(
    url: string,
    secret: string,
    delivery: DeliveryRow,
  ): Promise<{ status: number | null; error: string | null }> {
    // Signed at send time, so a retry an hour later is not rejected as stale by the receiver.
    const timestamp = Math.floor(Date.now() / 1000);
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'User-Agent': USER_AGENT,
          'Sluice-Event': delivery.event,
          'Sluice-Delivery': delivery.id,
          [SIGNATURE_HEADER]: signPayload(secret, delivery.payload, timestamp),
        },
        body: delivery.payload,
        // A redirect is a failure: following it would send the signed payload somewhere unregistered.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      if (res.status >= 200 && res.status < 300) {
        await res.body?.cancel();
        return { status: res.status, error: null };
      }
      const text = (await readStart(res)).replace(/\s+/g, ' ').trim();
      return { status: res.status, error: clip(`HTTP ${res.status}${text ? `: ${text}` : ''}`) };
    } catch (err) {
      return { status: null, error: clip(this.#describeFailure(err)) };
    }
  }

  #describeFailure(err: unknown): string {
    const name = (err as { name?: string }).name;
    if (name === 'TimeoutError' || name === 'AbortError') return `timed out after ${this.#timeoutMs} ms`;
    // fetch reports every network failure as "fetch failed"; the reason is in the cause.
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    if (cause?.code) return `connection failed: ${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
    if (cause?.message) return `request failed: ${cause.message}`;
    return `request failed: ${errorText(err)}`;
  }
}

// ------------------------------------------------------------------ helpers

function apiWebhook(row: WebhookRow): ApiWebhook {
  return {
    id: row.id,
    url: row.url,
    events: JSON.parse(row.events) as string[],
    created_at: new Date(row.created_at).toISOString(),
  };
}

function apiDelivery(row: DeliveryRow): ApiDelivery {
  return {
    id: row.id,
    webhook_id: row.webhook_id,
    event: row.event,
    job_id: row.job_id,
    status: row.status,
    attempts: row.attempts,
    last_status: row.last_status,
    last_error: row.last_error,
    created_at: iso(row.created_at)!,
    delivered_at: iso(row.delivered_at),
    next_attempt_at: iso(row.next_attempt_at),
  };
}

function checkUrl(value: unknown): string {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw badRequest(
      'url',
      `url: ${JSON.stringify(value)} is not a valid URL; expected http://... or https://...`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw badRequest('url', `url: the scheme must be http or https, not ${url.protocol.replace(/:$/, '')}`);
  }
  return url.toString();
}

function checkEvents(value: unknown): string[] {
  const valid = [...WEBHOOK_EVENTS, ALL_EVENTS];
  if (!Array.isArray(value) || value.length === 0) {
    throw badRequest('events', `events: must list at least one of ${valid.join(', ')}`);
  }
  const unknown = value.filter((e) => !valid.includes(e));
  if (unknown.length > 0) {
    throw badRequest(
      'events',
      `events: unknown event ${unknown.map((e) => JSON.stringify(e)).join(', ')}; expected ${valid.join(', ')}`,
    );
  }
  return [...new Set(value as string[])];
}

function badRequest(field: string, message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_REQUEST', message, { details: { field } });
}

function notFound(id: string): SluiceError {
  return new SluiceError('SLUICE_NOT_FOUND', `no webhook ${id}`, { details: { webhook_id: id } });
}

/** A URL for logs: query strings and user info often carry tokens (chat incoming-webhook URLs do). */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '<invalid url>';
  }
}

/** The start of a response body: an error page may be large, and only its start is kept. */
async function readStart(res: Response, maxBytes = 1024): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size < maxBytes) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
  }
  await reader.cancel().catch(() => {});
  return Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8');
}

function clip(text: string): string {
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH - 1)}…` : text;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
