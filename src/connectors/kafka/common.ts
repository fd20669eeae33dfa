/**
 * What the Kafka source and sink share: the connection settings in their configs, and how a
 * client error becomes a SluiceError (retriable when the broker or the network may recover).
 */
import { z } from 'zod';
import { type ErrorCode, SluiceError } from '../../sdk/errors.ts';

/** `host:port`, the host a name, an IPv4 address or a bracketed IPv6 address. */
const SERVER = /^(\[[0-9A-Fa-f:.]+\]|[^\s:,[\]]+):(\d{1,5})$/;

/** Kafka's own rule for topic names. */
export const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;

export const connectionFields = {
  bootstrap_servers: z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
    .describe(
      'Brokers to bootstrap from, as `host:port`: a list, or one string with commas (`k1:9092,k2:9092`). ' +
        'The client learns the rest of the cluster from them.',
    ),
  client_id: z
    .string()
    .min(1)
    .default('sluice')
    .describe('The client id the brokers see in their logs and quotas.'),
};

/** Normalises `bootstrap_servers` to a list. */
export function bootstrapList(servers: string | string[]): string[] {
  const list = Array.isArray(servers) ? servers : servers.split(',');
  return list.map((s) => s.trim()).filter(Boolean);
}

/** Config issues of `bootstrap_servers`, for a schema's superRefine. */
export function checkBootstrap(servers: string | string[], ctx: z.RefinementCtx): void {
  const list = bootstrapList(servers);
  if (!list.length)
    ctx.addIssue({ code: 'custom', path: ['bootstrap_servers'], message: 'name at least one broker' });
  for (const server of list) {
    const port = Number(SERVER.exec(server)?.[2]);
    if (!(port >= 1 && port <= 65_535))
      ctx.addIssue({
        code: 'custom',
        path: ['bootstrap_servers'],
        message: `"${server}" is not host:port (e.g. 127.0.0.1:9092)`,
      });
  }
}

interface ClientError extends Error {
  code?: unknown;
  canRetry?: unknown;
  errors?: unknown;
}

/** The innermost errors: an AggregateError's members, an error's cause, else the error itself. */
function leaves(err: unknown, depth = 0): ClientError[] {
  if (!(err instanceof Error)) return [new Error(String(err))];
  const e = err as ClientError;
  if (depth < 8) {
    if (Array.isArray(e.errors) && e.errors.length) return e.errors.flatMap((x) => leaves(x, depth + 1));
    if (e.cause instanceof Error && typeof e.code === 'string' && e.code.startsWith('PLT_KFK_USER'))
      return leaves(e.cause, depth + 1);
  }
  return [e];
}

/**
 * Broker and network trouble can pass (a broker restarting, a leader moving): the client marks
 * such errors `canRetry`, and socket errors carry an errno code. Anything else (an unknown topic
 * with auto-creation off, an authorisation failure, a record too large) will fail again.
 */
function retriable(leaf: ClientError): boolean {
  if (leaf.canRetry === true) return true;
  if (leaf.code === 'PLT_KFK_NETWORK' || leaf.code === 'PLT_KFK_TIMEOUT') return true;
  return typeof leaf.code === 'string' && /^E[A-Z]+$/.test(leaf.code) && leaf.code !== 'ERR_INVALID_ARG_TYPE';
}

/** A client error as a SluiceError: retriable only when every underlying error is. */
export function kafkaError(
  err: unknown,
  code: Extract<ErrorCode, 'SLUICE_SOURCE_IO' | 'SLUICE_SINK_IO'>,
  what: string,
  details: Record<string, unknown> = {},
): SluiceError {
  if (err instanceof SluiceError) return err;
  const all = leaves(err);
  const messages = [...new Set(all.map((e) => e.message))];
  const shown =
    messages.slice(0, 3).join('; ') + (messages.length > 3 ? `; and ${messages.length - 3} more` : '');
  return new SluiceError(code, `${what}: ${shown}`, {
    cause: err,
    retriable: all.length > 0 && all.every(retriable),
    details: { ...details, kafka_codes: [...new Set(all.map((e) => String(e.code ?? e.name)))] },
  });
}
