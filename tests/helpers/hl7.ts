/**
 * A real HL7 v2 MLLP peer for tests: `node-hl7-server` (an MLLP listener that parses what arrives
 * and answers with an ACK it builds from the message's MSH: MSA-1 the code we choose, MSA-2 the
 * control ID). It records every message it received, parsed by its own parser. With `tls` it
 * listens with node-hl7-server's own TLS (Node's tls server; `clientCa`: a client certificate
 * signed by it is required).
 */
import { readFileSync } from "node:fs";
import { type Inbound, Server } from "node-hl7-server";
import { freePort } from "./cli.ts";

/** A message as node-hl7-server parsed it (its own node-hl7-client's Message). */
export type ReceivedMessage = ReturnType<
  Parameters<Parameters<Server["createInbound"]>[1]>[0]["getMessage"]
>;

export interface Hl7TestPeer {
  host: string;
  port: number;
  /** Every message received, in order, as the server parsed it. */
  messages: ReceivedMessage[];
  /** The acknowledgement code the next messages get. */
  answer: "AA" | "AE" | "AR";
  /** How long the next messages wait for their ACK (a slow RIS). */
  ackDelayMs: number;
  /** Stops listening (connections are refused) until `start()`. */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startHl7Peer(
  options: { tls?: { key: string; cert: string; clientCa?: string } } = {},
): Promise<Hl7TestPeer> {
  const port = await freePort();
  const tls = options.tls;
  const server = new Server({
    bindAddress: "127.0.0.1",
    ...(tls
      ? {
          tls: {
            key: readFileSync(tls.key),
            cert: readFileSync(tls.cert),
            ...(tls.clientCa ? { ca: readFileSync(tls.clientCa), requestCert: true } : {}),
          },
        }
      : {}),
  });
  let inbound: Inbound | undefined;
  const peer: Hl7TestPeer = {
    host: "127.0.0.1",
    port,
    messages: [],
    answer: "AA",
    ackDelayMs: 0,
    async start() {
      inbound = server.createInbound({ port }, async (req, res) => {
        peer.messages.push(req.getMessage());
        if (peer.ackDelayMs > 0) await new Promise((r) => setTimeout(r, peer.ackDelayMs));
        await res.sendResponse(peer.answer);
      });
      // The listener binds asynchronously: wait until it accepts connections.
      const { connect } = await import("node:net");
      for (let i = 0; i < 50; i++) {
        const ok = await new Promise<boolean>((resolve) => {
          const s = connect({ host: "127.0.0.1", port }, () => {
            s.destroy();
            resolve(true);
          });
          s.on("error", () => resolve(false));
        });
        if (ok) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the HL7 peer did not start listening on ${port}`);
    },
    async stop() {
      await inbound?.close();
      inbound = undefined;
    },
    async close() {
      await peer.stop();
    },
  };
  await peer.start();
  return peer;
}
