/**
 * The listener's TCP (or TLS) server. Every connection is counted against the connection caps
 * before anything else reads it, and a TLS handshake is held to the association timeout; a
 * connection that gets through is handed to `onConnection` (the network guard and the SCP).
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import type { Config } from "@kneegrade/config";
import {
  ConnectionLimiter,
  peerAddress,
  type RefusalDetails,
  type RefusalReason,
} from "./connections.ts";

/** Counts and logs one refusal (the listener's reporter). */
export type RefusalReporter = (
  reason: RefusalReason,
  peer: string,
  details?: RefusalDetails,
) => void;

export interface DicomServerOptions {
  config: Config;
  /** From connection to accepted association; the TLS handshake gets as long of its own. */
  associationTimeoutMs: number;
  refused: RefusalReporter;
  /** An admitted connection, TLS established where configured. */
  onConnection: (socket: net.Socket) => void;
}

export interface DicomServer {
  server: net.Server;
  tls: boolean;
  /** Listens on LISTENER_HOST:LISTENER_PORT; the port actually bound (LISTENER_PORT 0: any). */
  listen(): Promise<number>;
  /** Stops accepting and destroys every open connection. */
  close(): Promise<void>;
}

export function createDicomServer(options: DicomServerOptions): DicomServer {
  const { config, refused } = options;
  const limiter = new ConnectionLimiter(
    config.LISTENER_MAX_CONNECTIONS,
    config.LISTENER_MAX_CONNECTIONS_PER_PEER,
  );
  const sockets = new Set<net.Socket>();
  /** Every TCP connection, before TLS: counted against the caps, or closed at once. */
  const admit = (raw: net.Socket): boolean => {
    const peer = peerAddress(raw);
    const over = limiter.admit(peer);
    if (over) {
      raw.destroy();
      refused(over, peer);
      return false;
    }
    sockets.add(raw);
    raw.once("close", () => {
      sockets.delete(raw);
      limiter.release(peer);
    });
    return true;
  };
  /** TLS handshakes under way, by peer address and port. */
  const handshakes = new Map<string, NodeJS.Timeout>();
  const accepted = (socket: net.Socket) => {
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    clearTimeout(handshakes.get(key));
    handshakes.delete(key);
    if (socket.destroyed) return;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    options.onConnection(socket);
  };
  const tlsEnabled = config.LISTENER_TLS_KEY !== undefined;
  const server = tlsEnabled
    ? tls.createServer(tlsServerOptions(config), accepted)
    : net.createServer({ pauseOnConnect: true });
  if (tlsEnabled) {
    // The TLS handshake has the association timeout of its own (a peer that connects and never
    // says hello); the guard's timer starts once it is done.
    server.on("connection", (raw: net.Socket) => {
      if (!admit(raw)) return;
      const key = `${raw.remoteAddress}:${raw.remotePort}`;
      const timer = setTimeout(() => {
        raw.destroy();
        refused("association-timeout", peerAddress(raw));
      }, options.associationTimeoutMs);
      timer.unref();
      handshakes.set(key, timer);
      raw.once("close", () => {
        clearTimeout(timer);
        if (handshakes.get(key) === timer) handshakes.delete(key);
      });
    });
  } else {
    server.on("connection", (raw: net.Socket) => {
      const socket = withReusedReceiveBuffer(raw);
      if (admit(socket)) accepted(socket);
    });
  }
  return {
    server,
    tls: tlsEnabled,
    listen: () => listen(server, config.LISTENER_PORT, config.LISTENER_HOST),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** Bytes a connection's socket reads at most at once into its receive buffer. */
const RECEIVE_BUFFER_BYTES = 128 * 1024;

/**
 * The accepted connection as a socket that reads into one buffer of its own, reused for every read
 * (`onread`, net.Socket's option for reading into preallocated memory), instead of a fresh buffer
 * per read. Received bytes are the bulk of what the listener handles (6 MB per radiograph), and
 * fresh buffers are external memory, which is what makes V8 collect its whole heap: `npm run
 * bench:ingest` measured most of the listener's CPU per instance in such collections. Its `data`
 * events carry views of that buffer, valid until the listener returns (the guard and the spool
 * writer copy what they keep). `raw` must not have started reading (the server pauses on connect);
 * where Node hands out no handle to adopt, `raw` is used as it is.
 */
function withReusedReceiveBuffer(raw: net.Socket): net.Socket {
  const handle = (raw as unknown as { _handle?: unknown })._handle;
  if (!handle) {
    raw.resume();
    return raw;
  }
  const buffer = Buffer.allocUnsafeSlow(RECEIVE_BUFFER_BYTES);
  let socket: net.Socket;
  const options = {
    handle,
    readable: true,
    writable: true,
    onread: {
      buffer,
      callback: (bytes: number, into: Uint8Array): boolean => {
        socket.emit("data", (into as Buffer).subarray(0, bytes));
        return true;
      },
    },
  } as net.SocketConstructorOpts;
  // The handle now belongs to `socket`; `raw` lets it go without closing it (and counts itself
  // out of the server's connections).
  (raw as unknown as { _handle: unknown })._handle = null;
  raw.destroy();
  socket = new net.Socket(options);
  return socket;
}

function tlsServerOptions(config: Config): tls.TlsOptions {
  return {
    key: readFileSync(config.LISTENER_TLS_KEY!),
    cert: readFileSync(config.LISTENER_TLS_CERT!),
    ...(config.LISTENER_TLS_CA
      ? { ca: readFileSync(config.LISTENER_TLS_CA), requestCert: true, rejectUnauthorized: true }
      : {}),
  };
}

async function listen(server: net.Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  return typeof address === "object" && address ? address.port : port;
}
