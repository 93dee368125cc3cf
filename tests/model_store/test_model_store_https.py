"""https endpoints with a private CA (KFP_EDGE_S3_CA_BUNDLE) against a TLS server on loopback.

The server is a small stand-in that answers every request like S3 does for a missing bucket
(moto's server speaks plain http only): what is under test is the client's TLS set-up.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import ssl
import threading

import pytest

from kfp_edge.app.cli import main

_NO_BUCKET = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchBucket</Code>'
    b"<Message>The specified bucket does not exist</Message></Error>"
)


def _ca_and_cert(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = dt.datetime.now(dt.timezone.utc)
    later = now + dt.timedelta(days=1)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder(
            name("test CA"), name("test CA"), ca_key.public_key(), 1, now, later
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder(ca.subject, name("127.0.0.1"), key.public_key(), 2, now, later)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(pem))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return tmp_path / "ca.pem"


class _NoBucket(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        self.send_response(404)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(_NO_BUCKET)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(_NO_BUCKET)

    do_GET = do_HEAD = do_PUT = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_server(tmp_path):
    ca = _ca_and_cert(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoBucket)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", ca
    server.shutdown()
    server.server_close()


def test_https_endpoint_is_trusted_through_the_ca_bundle_only(
    tmp_path, tls_server, monkeypatch, capsys
):
    endpoint, ca = tls_server
    monkeypatch.setenv("KFP_EDGE_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("KFP_EDGE_S3_ACCESS_KEY", "device")
    monkeypatch.setenv("KFP_EDGE_S3_SECRET_KEY", "device-secret")
    monkeypatch.setattr("urllib3.util.retry.Retry.get_backoff_time", lambda self: 0.0)
    argv = ["models", "--s3", "s3://fleet/models"]
    assert main(argv) == 2
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err  # not trusted by default
    monkeypatch.setenv("KFP_EDGE_S3_CA_BUNDLE", str(ca))
    assert main(argv) == 2
    assert "S3 error NoSuchBucket" in capsys.readouterr().err  # TLS worked: S3 answered
    monkeypatch.setenv("KFP_EDGE_S3_CA_BUNDLE", str(tmp_path / "missing.pem"))
    assert main(argv) == 2
    assert "KFP_EDGE_S3_CA_BUNDLE" in capsys.readouterr().err
