export { fileSink, fileSinkConfig } from './sink.ts';
export { fileSource, fileSourceConfig } from './source.ts';
