import { SluiceError } from '../../sdk/errors.ts';
import { type ApiJob, CLIENT_OPTIONS, clientFrom } from '../client.ts';
import { EXIT } from '../exit-codes.ts';
import { defineCommand, PARAM_OPTION, parseCommand, parseParams } from '../options.ts';
import { jobsTable } from './jobs.ts';
import { refusedSpec } from './submit.ts';

export const backfillCommand = defineCommand({
  name: 'backfill',
  usage:
    'sluice backfill PIPELINE --from YYYY-MM-DD --to YYYY-MM-DD [--param-name NAME] [--param KEY=VALUE]... [--json]',
  summary:
    'Start one job of a stored pipeline per date from --from to --to (inclusive, oldest first) on a Sluice server.',
  positionals: ['PIPELINE'],
  options: {
    from: { type: 'string', value: 'YYYY-MM-DD', description: 'First date (required).' },
    to: { type: 'string', value: 'YYYY-MM-DD', description: 'Last date, included (required).' },
    'param-name': {
      type: 'string',
      value: 'NAME',
      default: 'date',
      description: 'The param that receives each date, as ${param:NAME} in the spec.',
    },
    param: { ...PARAM_OPTION, description: 'Sets ${param:KEY} in the spec of every job.' },
    ...CLIENT_OPTIONS,
  },
});

const DATE = /^\d{4}-\d{2}-\d{2}$/;

export async function backfill(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(backfillCommand, argv);
  const pipeline = positionals[0]!;
  for (const flag of ['from', 'to'] as const) {
    const value = options[flag];
    if (value === undefined) throw new SluiceError('SLUICE_USAGE', `--${flag} YYYY-MM-DD is required`);
    if (!DATE.test(value) || Number.isNaN(Date.parse(`${value}T00:00:00Z`))) {
      throw new SluiceError('SLUICE_USAGE', `--${flag} takes a date as YYYY-MM-DD, got "${value}"`);
    }
  }
  if (options.from! > options.to!) {
    throw new SluiceError('SLUICE_USAGE', `--from ${options.from} is after --to ${options.to}`);
  }
  const paramName = options['param-name'] ?? 'date';
  let res: { jobs: ApiJob[] };
  try {
    res = await clientFrom(options).request<{ jobs: ApiJob[] }>('POST', '/v1/backfills', {
      body: {
        pipeline,
        from: options.from,
        to: options.to,
        param_name: paramName,
        params: parseParams(options.param),
      },
    });
  } catch (err) {
    return refusedSpec(err, undefined, 'backfill');
  }
  if (options.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
  else process.stdout.write(res.jobs.length ? `${jobsTable(res.jobs, paramName)}\n` : 'no jobs\n');
  return EXIT.ok;
}
