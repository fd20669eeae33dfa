import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SluiceError } from '../../sdk/errors.ts';
import { SpecInvalidError, type SpecIssue, validatePipeline } from '../../spec/validate.ts';
import { resolveBaseDir, secretsNamed, variableRefusal, type Workspace } from '../../spec/workspace.ts';
import type { ZodApp } from '../app.ts';
import type { ServerContext } from '../context.ts';
import type { PipelineRecord, TokenRecord } from '../store/jobs.ts';

export const specBody = z.object({
  spec: z.string().min(1).describe('The pipeline spec, YAML (apiVersion: sluice/v1, kind: Pipeline).'),
  base_dir: z
    .string()
    .optional()
    .describe(
      "Folder that relative paths in the spec resolve against, on the server's machine: relative to the server's data root, or an absolute folder inside the data root or an allowed root (`sluice submit` sends the spec file's directory). Default: the data root.",
    ),
});

const apiPipeline = z.object({
  id: z.string(),
  name: z.string(),
  latest_version: z.number(),
  created_at: z.string(),
  updated_at: z.string(),
});

const ref = z.object({ ref: z.string().describe('Pipeline id or name.') });

export function toApiPipeline(p: PipelineRecord): z.infer<typeof apiPipeline> {
  return {
    id: p.id,
    name: p.name,
    latest_version: p.latest_version,
    created_at: new Date(p.created_at).toISOString(),
    updated_at: new Date(p.updated_at).toISOString(),
  };
}

/**
 * Validates a spec before it is stored. Fields that use `${param:...}` are checked at submit,
 * when the params are known, so their problems do not block saving.
 */
export async function validateForSave(
  ctx: ServerContext,
  body: { spec: string; base_dir?: string | undefined },
  params: Record<string, string> | undefined,
  token: TokenRecord | undefined,
): Promise<{ name: string; baseDir: string }> {
  const workspace = workspaceFor(ctx, token);
  const base = resolveBaseDir(workspace, body.base_dir);
  if ('problem' in base) throw new SluiceError('SLUICE_SPEC_FORBIDDEN', base.problem);
  const baseDir = base.dir;
  const file = path.join(baseDir, 'pipeline.yaml');
  const { pipeline, issues } = await validatePipeline({
    file,
    text: body.spec,
    params: params ?? {},
    registry: ctx.registry,
    workspace,
  });
  const lines = body.spec.split('\n');
  const blocking = params
    ? issues
    : issues.filter((i: SpecIssue) => !(lines[i.line - 1] ?? '').includes('${param:'));
  if (blocking.length || (!pipeline && !issues.length)) throw new SpecInvalidError(file, blocking);
  const name = pipeline?.metadata.name ?? nameFromText(body.spec);
  if (!name) throw new SpecInvalidError(file, issues);
  return { name, baseDir };
}

/** The server's workspace with the secrets `token` was granted (an admin token: every secret). */
export function workspaceFor(ctx: ServerContext, token: TokenRecord | undefined): Workspace {
  const admin = token?.scopes.includes('admin') ?? false;
  return { ...ctx.workspace, secrets: admin ? undefined : (token?.secrets ?? []) };
}

/**
 * Refuses a token that may not use every secret the latest version of `pipelineRef` names: what
 * a schedule or a backfill later submits without a token is checked when they are made.
 */
export async function assertSecretsGranted(
  ctx: ServerContext,
  token: TokenRecord | undefined,
  pipelineRef: string,
): Promise<void> {
  const workspace = workspaceFor(ctx, token);
  const pipeline = await ctx.store.requirePipeline(pipelineRef);
  const version = await ctx.store.getVersion(pipeline.id, pipeline.latest_version);
  const refused = secretsNamed(version?.spec ?? '')
    .map((name) => variableRefusal(workspace, 'secret', name))
    .filter((r): r is string => r !== undefined);
  if (refused.length) {
    throw new SluiceError('SLUICE_SPEC_FORBIDDEN', `pipeline ${pipeline.name}: ${refused.join('; ')}`);
  }
}

/** metadata.name of a spec that only failed on params it will get at submit. */
function nameFromText(spec: string): string | undefined {
  try {
    const name = (parseYaml(spec) as { metadata?: { name?: unknown } } | null)?.metadata?.name;
    return typeof name === 'string' ? name : undefined;
  } catch {
    return undefined;
  }
}

export function pipelineRoutes(app: ZodApp, ctx: ServerContext): void {
  const saved = z.object({ pipeline: apiPipeline, version: z.number() });

  app.route({
    method: 'POST',
    url: '/v1/pipelines',
    config: { scope: 'write', errors: [422] },
    schema: {
      tags: ['pipelines'],
      summary: 'Store a pipeline spec: a new pipeline, or a new version of the one with its metadata.name.',
      body: specBody,
      response: { 201: saved },
    },
    handler: async (req, reply) => {
      const { name, baseDir } = await validateForSave(ctx, req.body, undefined, req.token);
      const result = await ctx.store.savePipeline(name, req.body.spec, baseDir);
      return reply.status(201).send({ pipeline: toApiPipeline(result.pipeline), version: result.version });
    },
  });

  app.route({
    method: 'PUT',
    url: '/v1/pipelines/:ref',
    config: { scope: 'write', errors: [409, 422] },
    schema: {
      tags: ['pipelines'],
      summary: 'Store a new version of a pipeline; earlier versions are kept.',
      params: ref,
      body: specBody,
      response: { 200: saved },
    },
    handler: async (req) => {
      const existing = await ctx.store.requirePipeline(req.params.ref);
      const { name, baseDir } = await validateForSave(ctx, req.body, undefined, req.token);
      if (name !== existing.name) {
        throw new SluiceError(
          'SLUICE_CONFLICT',
          `the spec's metadata.name is "${name}" but this is pipeline "${existing.name}"; a new name is a new pipeline (POST /v1/pipelines)`,
        );
      }
      const result = await ctx.store.savePipeline(name, req.body.spec, baseDir);
      return { pipeline: toApiPipeline(result.pipeline), version: result.version };
    },
  });

  app.route({
    method: 'POST',
    url: '/v1/pipelines/validate',
    config: { scope: 'read', errors: [422] },
    schema: {
      tags: ['pipelines'],
      summary: 'Validate a spec as a dry run: nothing is stored. Refused specs answer 422 with every issue.',
      body: specBody.extend({ params: z.record(z.string(), z.string()).optional() }),
      response: { 200: z.object({ valid: z.literal(true), pipeline: z.string() }) },
    },
    handler: async (req) => {
      const { name } = await validateForSave(ctx, req.body, req.body.params, req.token);
      return { valid: true as const, pipeline: name };
    },
  });

  app.route({
    method: 'GET',
    url: '/v1/pipelines',
    config: { scope: 'read' },
    schema: {
      tags: ['pipelines'],
      summary: 'List pipelines.',
      response: { 200: z.object({ pipelines: z.array(apiPipeline) }) },
    },
    handler: async () => ({ pipelines: (await ctx.store.listPipelines()).map(toApiPipeline) }),
  });

  app.route({
    method: 'GET',
    url: '/v1/pipelines/:ref',
    config: { scope: 'read' },
    schema: {
      tags: ['pipelines'],
      summary: 'A pipeline and its versions.',
      params: ref,
      response: {
        200: z.object({
          pipeline: apiPipeline,
          versions: z.array(z.object({ version: z.number(), base_dir: z.string(), created_at: z.string() })),
        }),
      },
    },
    handler: async (req) => {
      const p = await ctx.store.requirePipeline(req.params.ref);
      const versions = await ctx.store.listVersions(p.id);
      return {
        pipeline: toApiPipeline(p),
        versions: versions.map((v) => ({
          version: v.version,
          base_dir: v.base_dir,
          created_at: new Date(v.created_at).toISOString(),
        })),
      };
    },
  });

  app.route({
    method: 'GET',
    url: '/v1/pipelines/:ref/versions/:version',
    config: { scope: 'read' },
    schema: {
      tags: ['pipelines'],
      summary: "One version's spec.",
      params: ref.extend({ version: z.coerce.number().int().min(1) }),
      response: {
        200: z.object({
          version: z.number(),
          spec: z.string(),
          base_dir: z.string(),
          created_at: z.string(),
        }),
      },
    },
    handler: async (req) => {
      const p = await ctx.store.requirePipeline(req.params.ref);
      const v = await ctx.store.getVersion(p.id, req.params.version);
      if (!v)
        throw new SluiceError('SLUICE_NOT_FOUND', `pipeline ${p.name} has no version ${req.params.version}`);
      return {
        version: v.version,
        spec: v.spec,
        base_dir: v.base_dir,
        created_at: new Date(v.created_at).toISOString(),
      };
    },
  });
}
