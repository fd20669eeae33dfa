/** Redaction of credentials in everything the HTTP components record. */

export const REDACTED = '[REDACTED]';

/**
 * Replaces every configured secret, and the forms it takes on the wire (percent-encoded, JSON
 * escaped, base64 for basic credentials is added by the caller), in text Sluice records: error
 * messages, URLs, body excerpts, log lines. Secrets learnt during a run (an OAuth2 access token)
 * are added with `add`.
 */
export class Redactor {
  readonly #all = new Set<string>();
  #secrets: string[] = [];

  constructor(secrets: Iterable<string> = []) {
    for (const secret of secrets) this.#addForms(secret);
    this.#sort();
  }

  /** Redacts `secret` too from now on. */
  add(secret: string): void {
    const before = this.#all.size;
    this.#addForms(secret);
    if (this.#all.size !== before) this.#sort();
  }

  #addForms(secret: string): void {
    if (!secret) return;
    this.#all.add(secret);
    this.#all.add(encodeURIComponent(secret));
    this.#all.add(new URLSearchParams({ s: secret }).toString().slice(2));
    this.#all.add(JSON.stringify(secret).slice(1, -1));
  }

  #sort(): void {
    // Longest first: a secret containing another is replaced whole.
    this.#secrets = [...this.#all].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
  }

  redact(text: string): string {
    let out = text;
    for (const secret of this.#secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    return out;
  }

  /** Redacts every string in a JSON-like value (log fields, error details). */
  redactValue<T>(value: T): T {
    if (typeof value === 'string') return this.redact(value) as T;
    if (Array.isArray(value)) return value.map((v) => this.redactValue(v)) as T;
    if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = this.redactValue(v);
      return out as T;
    }
    return value;
  }
}
