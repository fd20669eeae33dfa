/**
 * The plugin author's only import: component definitions, record and error types.
 * The conformance kit lives beside it in `sluice/sdk/testing`.
 */

export { z } from 'zod';
export { defineSink, defineSource, defineStep, mapRecords, type RecordFnResult } from './define.ts';
export {
  ERROR_CODES,
  type ErrorCode,
  SluiceError,
  type SluiceErrorOptions,
  toSluiceError,
} from './errors.ts';
export type * from './types.ts';
