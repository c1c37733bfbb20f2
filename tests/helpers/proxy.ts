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
