import { type ApiJob, CLIENT_OPTIONS, clientFrom } from '../client.ts';
import { EXIT } from '../exit-codes.ts';
import { defineCommand, parseCommand } from '../options.ts';

export const cancelCommand = defineCommand({
  name: 'cancel',
  usage: 'sluice cancel ID [--json]',
  summary:
    'Cancel a job on a Sluice server: a pending job is cancelled at once, a running one drains and commits first.',
  positionals: ['ID'],
  options: { ...CLIENT_OPTIONS },
});

export async function cancel(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(cancelCommand, argv);
  const id = positionals[0]!;
  const res = await clientFrom(options).request<{ job: ApiJob }>(
    'POST',
    `/v1/jobs/${encodeURIComponent(id)}/cancel`,
  );
  if (options.json) {
    process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    return EXIT.ok;
  }
  const { job } = res;
  const hint =
    job.state === 'cancelling'
      ? ` (its process is draining; \`sluice job ${job.id}\` shows when it is cancelled)`
      : '';
  process.stdout.write(`job ${job.id}: ${job.state}${hint}\n`);
  return EXIT.ok;
}
