"""``clob admin create-certs``: a cluster CA and every certificate the topology's TLS needs.

Files, all PEM, in one directory (``--out``, by default the directory of the
topology's ``tls.ca_file``):

* ``ca.crt``, ``ca.key``: the cluster CA. Only ``ca.crt`` is needed on the
  machines; keep ``ca.key`` offline (it signs new certificates: ``--only``).
* ``NAME.crt``, ``NAME.key`` for every replica: its common name is the
  replica's name (peer links check it) and its subjectAltName the hosts of its
  ``raft`` and ``client`` addresses; valid for server and client use.
* ``NAME.crt``, ``NAME.key`` for every gateway: subjectAltName the host of
  its ``listen`` address (plus ``--gateway-host``), server use only.
* ``client.crt``, ``client.key``: the certificate gateways and ``clob admin``
  present to replicas (``tls.client_cert_file``/``client_key_file``).

Keys are ECDSA P-256, written owner-only (0600). Existing files are never
overwritten without ``--force``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

import attrs
import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cli.apps import admin_app
from config.load import ConfigError, load_config, parse_address
from config.schema import ClusterConfig, TlsConfig

CA_DAYS = 3650
DEFAULT_DAYS = 825
CLIENT = "client"  # the shared client certificate's file stem and common name
_RESERVED = ("ca", CLIENT)
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # listen-everywhere: no name a client dials


class CertificateError(ValueError):
    """The certificates cannot be made as asked (names clash, files exist, no CA)."""


@attrs.frozen
class Leaf:
    """One certificate to issue: its file stem, common name, hosts and uses."""

    stem: str
    hosts: tuple[str, ...]
    server: bool
    client: bool


def plan(cluster: ClusterConfig, gateway_hosts: Iterable[str] = ()) -> list[Leaf]:
    """Every certificate the topology needs (replicas, gateways, the shared client)."""
    leaves: list[Leaf] = []
    for market in cluster.markets:
        for replica in market.replicas:
            hosts = _hosts([replica.raft, replica.client])
            leaves.append(Leaf(replica.name, hosts, server=True, client=True))
    extra = tuple(gateway_hosts)
    for gateway in cluster.gateways:
        hosts = tuple(dict.fromkeys(_hosts([gateway.listen]) + extra))
        leaves.append(Leaf(gateway.name, hosts, server=True, client=False))
    leaves.append(Leaf(CLIENT, (), server=False, client=True))
    seen: set[str] = set()
    for leaf in leaves:
        if leaf.stem in seen:
            raise CertificateError(f"two certificates would be named {leaf.stem!r}")
        if leaf.stem in _RESERVED and leaf is not leaves[-1]:
            raise CertificateError(f"a replica or gateway may not be named {leaf.stem!r} here")
        seen.add(leaf.stem)
    return leaves


def _hosts(addresses: list[str]) -> tuple[str, ...]:
    hosts = (parse_address(a)[0] for a in addresses)
    return tuple(dict.fromkeys(h for h in hosts if h not in _WILDCARD_HOSTS))


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA's key signs certificates (and revocation lists) only; a leaf's signs handshakes."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    cluster_id: str, now: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new self-signed CA that may sign leaf certificates only."""
    key = _key()
    name = _name(f"{cluster_id} cluster CA")
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # tolerate some clock skew
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    leaf: Leaf,
    now: datetime.datetime,
    days: int = DEFAULT_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A key and a certificate for ``leaf``, signed by the CA."""
    key = _key()
    uses = [ExtendedKeyUsageOID.SERVER_AUTH] if leaf.server else []
    uses += [ExtendedKeyUsageOID.CLIENT_AUTH] if leaf.client else []
    ca_public = ca_cert.public_key()
    assert isinstance(ca_public, ec.EllipticCurvePublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(leaf.stem))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(uses), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
    )
    if leaf.hosts:
        names = [_general_name(h) for h in leaf.hosts]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, mode: int, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)  # an overwritten file keeps no looser mode
        out.write(data)


def _load_ca(out: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        cert = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CertificateError(f"--only needs the CA in {out} (ca.crt, ca.key): {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{out / 'ca.key'}: not an ECDSA key")
    return key, cert


def create_certificates(
    cluster: ClusterConfig,
    out: Path,
    *,
    force: bool = False,
    only: Iterable[str] = (),
    days: int = DEFAULT_DAYS,
    gateway_hosts: Iterable[str] = (),
) -> list[Path]:
    """Write the CA and the certificates of :func:`plan` into ``out``; the paths written.

    With ``only`` (replica, gateway names or ``client``), just those, signed by
    the CA already in ``out``. Nothing is written if any target exists, unless
    ``force``.
    """
    leaves = plan(cluster, gateway_hosts)
    wanted = set(only)
    if wanted:
        unknown = wanted - {leaf.stem for leaf in leaves}
        if unknown:
            raise CertificateError(f"not in the topology: {', '.join(sorted(unknown))}")
        leaves = [leaf for leaf in leaves if leaf.stem in wanted]
    now = datetime.datetime.now(datetime.UTC)
    files: list[tuple[Path, bytes, int]] = []
    if wanted:
        ca_key, ca_cert = _load_ca(out)
    else:
        ca_key, ca_cert = make_ca(cluster.cluster_id, now)
        files += [(out / "ca.crt", _cert_pem(ca_cert), 0o644)]
        files += [(out / "ca.key", _key_pem(ca_key), 0o600)]
    for leaf in leaves:
        key, cert = issue(ca_key, ca_cert, leaf, now, days)
        files += [(out / f"{leaf.stem}.crt", _cert_pem(cert), 0o644)]
        files += [(out / f"{leaf.stem}.key", _key_pem(key), 0o600)]
    existing = [str(path) for path, _, _ in files if path.exists()]
    if existing and not force:
        raise CertificateError(
            f"refusing to overwrite {', '.join(existing)} (--force overwrites; --only NAME"
            " makes one more certificate with the existing CA)"
        )
    out.mkdir(parents=True, exist_ok=True)
    for path, data, mode in files:
        _write(path, data, mode, force)
    return [path for path, _, _ in files]


def with_certificates(cluster: ClusterConfig, out: Path) -> ClusterConfig:
    """``cluster`` with TLS on, using the files :func:`create_certificates` wrote to ``out``:
    [tls], and every replica's and gateway's ``cert_file``/``key_file``."""

    def files(name: str) -> tuple[str, str]:
        return str(out / f"{name}.crt"), str(out / f"{name}.key")

    markets = tuple(
        attrs.evolve(
            market,
            replicas=tuple(
                attrs.evolve(r, cert_file=files(r.name)[0], key_file=files(r.name)[1])
                for r in market.replicas
            ),
        )
        for market in cluster.markets
    )
    gateways = tuple(
        attrs.evolve(g, cert_file=files(g.name)[0], key_file=files(g.name)[1])
        for g in cluster.gateways
    )
    tls = TlsConfig(str(out / "ca.crt"), *files(CLIENT))
    return attrs.evolve(cluster, markets=markets, gateways=gateways, tls=tls)


def config_snippet(out: Path) -> str:
    """The topology keys that use the files written to ``out``."""
    return "\n".join(
        [
            "[tls]",
            f'ca_file = "{out / "ca.crt"}"',
            f'client_cert_file = "{out / "client.crt"}"',
            f'client_key_file = "{out / "client.key"}"',
            "# and in every [[markets.replicas]] (and a [[gateways]] entry to serve wss://):",
            f'#   cert_file = "{out}/NAME.crt"',
            f'#   key_file = "{out}/NAME.key"',
        ]
    )


# list options as module constants: ruff's B008 refuses a call with a mutable type as a default
_ONLY = typer.Option(
    None, "--only", help="Only this replica/gateway/'client' (repeatable), with the existing CA."
)
_GATEWAY_HOST = typer.Option(
    None, "--gateway-host", help="Another name clients reach the gateways by (repeatable)."
)


@admin_app.command("create-certs")
def create_certs(
    config: str = typer.Option(..., "--config", help="Topology file (TOML)."),
    out: str | None = typer.Option(
        None, "--out", help="Directory for the files (default: that of tls.ca_file)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    only: list[str] | None = _ONLY,
    days: int = typer.Option(DEFAULT_DAYS, help="Validity of each certificate (the CA: 10 years)."),
    gateway_host: list[str] | None = _GATEWAY_HOST,
) -> None:
    """Create a cluster CA and the TLS certificates of every replica, gateway and client."""
    try:
        cluster = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    if out is None:
        if cluster.tls is None:
            raise typer.BadParameter(f"{config} has no [tls] table: give --out", param_hint="--out")
        out = str(Path(cluster.tls.ca_file).parent)
    if days <= 0:
        raise typer.BadParameter("must be positive", param_hint="--days")
    try:
        written = create_certificates(
            cluster,
            Path(out),
            force=force,
            only=only or (),
            days=days,
            gateway_hosts=gateway_host or (),
        )
    except CertificateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo("Keep ca.key offline. Topology keys for these files:\n" + config_snippet(Path(out)))
