export { HttpSink, type HttpSinkConfig, httpSink, httpSinkConfig } from './sink.ts';
export { HttpSource, type HttpSourceConfig, httpSource, httpSourceConfig } from './source.ts';
