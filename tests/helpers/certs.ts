/** A throw-away self-signed certificate for 127.0.0.1 (openssl), for the TLS tests. */
import { execFileSync } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function selfSignedCert(dir: string, commonName = "kneegrade-test") {
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      `/CN=${commonName}`,
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { stdio: "ignore" },
  );
  return { key, cert };
}

/**
 * A fresh folder (`prefix` names it) holding a server certificate and a client certificate
 * (CN kneegrade-client), for mutual TLS: the server trusts the client's as its CA.
 */
export async function mutualTlsCerts(prefix: string) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const server = selfSignedCert(await mkdtemp(join(dir, "s-")));
  const client = selfSignedCert(await mkdtemp(join(dir, "c-")), "kneegrade-client");
  return { dir, server, client };
}
