import { buildApp } from './app.ts';
import type { ServerContext } from './context.ts';

/**
 * The v1 OpenAPI document, without a running server: the routes are registered (their schemas
 * make the document) but never called, so they need no store. `npm run docs` checks it in.
 */
export async function openApiDocument(): Promise<unknown> {
  const app = await buildApp({} as ServerContext);
  try {
    return app.swagger();
  } finally {
    await app.close();
  }
}
