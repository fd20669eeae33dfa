import path from 'node:path';
// Definitions only (config schema, docs, checks): a component's implementation, with its client
// library (DuckDB, the AWS SDK, Kafka, pg), loads when a pipeline creates it.
import { fileSink } from './connectors/file/sink-definition.ts';
import { fileSource } from './connectors/file/source-definition.ts';
import { generateSource } from './connectors/generate/index.ts';
import { httpSink, httpSource } from './connectors/http/index.ts';
import { kafkaSink } from './connectors/kafka/sink-definition.ts';
import { kafkaSource } from './connectors/kafka/source-definition.ts';
import { postgresSink } from './connectors/postgres/sink-definition.ts';
import { postgresSource } from './connectors/postgres/source-definition.ts';
import { stdinSource, stdoutSink } from './connectors/stdio/index.ts';
import { type CheckpointStore, FileCheckpointStore } from './engine/checkpoint-store.ts';
import type {
  ComponentDefinition,
  ComponentKind,
  SinkDefinition,
  SourceDefinition,
  StepDefinition,
} from './sdk/types.ts';
import { filterStep } from './steps/filter/definition.ts';
import { httpStep } from './steps/http/index.ts';
import { scriptStep } from './steps/script/index.ts';
import { sqlStep } from './steps/sql/definition.ts';
import { validateStep } from './steps/validate/index.ts';

/** Components by kind and name. Built-in components are registered exactly like plugins. */
export class Registry {
  readonly #byKind: { [K in ComponentKind]: Map<string, ComponentDefinition> } = {
    source: new Map(),
    step: new Map(),
    sink: new Map(),
  };

  constructor(components: readonly ComponentDefinition[] = []) {
    for (const component of components) this.register(component);
  }

  register(component: ComponentDefinition): void {
    const map = this.#byKind[component.kind];
    if (map.has(component.name)) throw new Error(`${component.kind} "${component.name}" is registered twice`);
    map.set(component.name, component);
  }

  source(name: string): SourceDefinition | undefined {
    return this.#byKind.source.get(name) as SourceDefinition | undefined;
  }

  step(name: string): StepDefinition | undefined {
    return this.#byKind.step.get(name) as StepDefinition | undefined;
  }

  sink(name: string): SinkDefinition | undefined {
    return this.#byKind.sink.get(name) as SinkDefinition | undefined;
  }

  get(kind: ComponentKind, name: string): ComponentDefinition | undefined {
    return this.#byKind[kind].get(name);
  }

  names(kind: ComponentKind): string[] {
    return [...this.#byKind[kind].keys()].sort();
  }

  all(): ComponentDefinition[] {
    return [...this.#byKind.source.values(), ...this.#byKind.step.values(), ...this.#byKind.sink.values()];
  }
}

export const builtinComponents: readonly ComponentDefinition[] = [
  fileSource,
  stdinSource,
  generateSource,
  kafkaSource,
  postgresSource,
  httpSource,
  filterStep,
  sqlStep,
  validateStep,
  scriptStep,
  httpStep,
  fileSink,
  stdoutSink,
  kafkaSink,
  postgresSink,
  httpSink,
] as ComponentDefinition[];

export function defaultRegistry(): Registry {
  return new Registry(builtinComponents);
}

/**
 * Opens the state store at `location` for the checkpoint named `key` (a pipeline's name, a
 * server job's id): a local directory (the default; the checkpoint is `location/key/checkpoint.json`),
 * `s3://bucket/prefix` (the object `prefix/key/checkpoint.json`) or a `postgres://` URL (a row of
 * the table sluice_state_checkpoints). Loaded on demand, so a local run never loads an S3 client.
 */
export async function openCheckpointStore(location: string, key: string): Promise<CheckpointStore> {
  if (location.startsWith('s3://')) {
    const { S3CheckpointStore } = await import('./connectors/s3/checkpoint-store.ts');
    return new S3CheckpointStore(location, key);
  }
  if (/^postgres(ql)?:\/\//.test(location)) {
    const { PostgresCheckpointStore } = await import('./connectors/postgres/checkpoint-store.ts');
    return new PostgresCheckpointStore(location, key);
  }
  return new FileCheckpointStore(path.resolve(location, key));
}
