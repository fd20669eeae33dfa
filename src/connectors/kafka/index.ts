export { kafkaSink, kafkaSinkConfig } from './sink.ts';
export { KafkaSource, kafkaSource, kafkaSourceConfig } from './source.ts';
