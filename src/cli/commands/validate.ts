import { defaultRegistry } from '../../registry.ts';
import { formatIssues, validatePipeline } from '../../spec/validate.ts';
import { EXIT } from '../exit-codes.ts';
import { defineCommand, PARAM_OPTION, parseCommand, parseParams } from '../options.ts';

export const validateCommand = defineCommand({
  name: 'validate',
  usage: 'sluice validate FILE [--param KEY=VALUE]... [--json]',
  summary: 'Check a spec and report every problem at once, each with its YAML line:column.',
  positionals: ['FILE'],
  options: {
    param: PARAM_OPTION,
    json: { type: 'boolean', description: 'Print the problems as a JSON array.' },
  },
});

export async function validate(argv: string[]): Promise<number> {
  const { options, positionals } = parseCommand(validateCommand, argv);
  const file = positionals[0]!;
  const { pipeline, issues } = await validatePipeline({
    file,
    params: parseParams(options.param),
    registry: defaultRegistry(),
  });
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify(
        issues.map((i) => ({ file, ...i })),
        null,
        2,
      )}\n`,
    );
  } else if (issues.length) {
    process.stderr.write(
      `${formatIssues(file, issues)}\n${issues.length} problem${issues.length === 1 ? '' : 's'} in ${file}\n`,
    );
  } else if (pipeline) {
    const steps = pipeline.steps.length;
    process.stdout.write(
      `${file}: valid (${pipeline.source.component} → ${steps} step${steps === 1 ? '' : 's'} → ` +
        `${pipeline.sinks.map((s) => s.component).join(', ')})\n`,
    );
  }
  return issues.length ? EXIT.specInvalid : EXIT.ok;
}
