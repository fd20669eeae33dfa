export { createStdoutSink, stdoutSink, stdoutSinkConfig } from './sink.ts';
export { createStdinSource, stdinSource, stdinSourceConfig } from './source.ts';
