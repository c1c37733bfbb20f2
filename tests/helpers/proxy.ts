/** A TCP proxy that forwards the first `cutAfterBytes` bytes from client to server, then cuts both. */
import net from "node:net";

export async function startCuttingProxy(targetPort: number, cutAfterBytes: number) {
  let forwarded = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    upstream.pipe(client);
    client.on("data", (chunk: Buffer) => {
      const room = cutAfterBytes - forwarded;
      if (room > 0) upstream.write(chunk.subarray(0, room));
      forwarded += chunk.length;
      if (forwarded >= cutAfterBytes) {
        client.destroy();
        upstream.destroy();
      }
    });
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return { port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/**
 * A TCP proxy that forwards the client's bytes until the server first answers (the A-ASSOCIATE-AC)
 * and swallows everything after: the association is established and then hangs, holding its slot.
 */
export async function startStallingProxy(targetPort: number) {
  const sockets = new Set<net.Socket>();
  let onAnswer: () => void = () => {};
  const firstAnswer = new Promise<void>((resolve) => {
    onAnswer = resolve;
  });
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    let answered = false;
    upstream.on("data", (chunk: Buffer) => {
      answered = true;
      onAnswer();
      client.write(chunk);
    });
    client.on("data", (chunk: Buffer) => {
      if (!answered) upstream.write(chunk);
    });
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", closeBoth).on("error", closeBoth);
    upstream.on("close", closeBoth).on("error", closeBoth);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    /** Resolves when the server first answered a client through the proxy. */
    answered: () => firstAnswer,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/**
 * A TCP proxy that can be switched off and on: while down, connections are accepted and closed at
 * once (as a PACS that is restarting); while up, bytes flow both ways to the target.
 */
export async function startSwitchProxy(targetPort: number) {
  let up = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!up) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => sockets.delete(client));
    upstream.on("close", () => sockets.delete(upstream));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    down() {
      up = false;
      for (const s of sockets) s.destroy();
    },
    up() {
      up = true;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}
