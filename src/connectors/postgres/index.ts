export { PostgresSink, postgresSink, postgresSinkConfig } from './sink.ts';
export { PostgresSource, postgresSource, postgresSourceConfig, sourcePartition } from './source.ts';
