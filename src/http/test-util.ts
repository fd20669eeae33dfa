/** Loopback servers for the tests of the http step, source and sink. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Starts `server` on a free loopback port: its origin, and a close that drops open connections. */
export async function listenOnLoopback(
  server: http.Server,
): Promise<{ origin: string; close: () => Promise<void> }> {
  // The client's keep-alive must not outlive ours in the middle of a test.
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on (a server was there a moment ago): connections are refused. */
export async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
