/**
 * An example plugin step for the `script` step: masks an email address, keeping the first
 * `keep` characters of the local part and the domain (`jane.doe@example.com` → `j***@example.com`).
 *
 *   steps:
 *     - script:
 *         module: plugins/mask-email.ts
 *         config: { field: contact_email, keep: 2 }
 */
import { defineStep, mapRecords, SluiceError, z } from '../../src/sdk/index.ts';

/** Masks an address; the number of hidden characters is not revealed. */
export function maskEmail(address: string, keep: number): string {
  const at = address.lastIndexOf('@');
  const local = at < 0 ? address : address.slice(0, at);
  const domain = at < 0 ? '' : address.slice(at);
  return `${local.slice(0, keep)}***${domain}`;
}

export default defineStep({
  name: 'mask-email',
  summary: 'Masks an email field, keeping its first characters and the domain.',
  config: z
    .object({
      field: z.string().min(1).default('email').describe('The field holding the address.'),
      keep: z
        .number()
        .int()
        .nonnegative()
        .default(1)
        .describe('How many leading characters of the local part stay visible.'),
    })
    .strict(),
  examples: [{ title: 'Keep two characters of contact_email', yaml: 'field: contact_email\nkeep: 2\n' }],
  create(config) {
    const { field, keep } = config;
    return mapRecords((record) => {
      const value = record.value[field];
      if (value === undefined || value === null) return record;
      if (typeof value !== 'string')
        throw new SluiceError('SLUICE_STEP_FAILED', `field "${field}" is ${typeof value}, not a string`, {
          details: { field, value },
        });
      return { ...record, value: { ...record.value, [field]: maskEmail(value, keep) } };
    });
  },
});
