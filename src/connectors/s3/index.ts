export { S3CheckpointStore, type S3CheckpointStoreOptions } from './checkpoint-store.ts';
export { isS3Url, parseS3Url, S3Connection, s3Url } from './client.ts';
