"""TLS for the system's network links: every SSLContext is built here, from the topology.

Replica links (``[tls]`` in the topology) use mutual TLS 1.3: a replica's
listeners (Raft peer and client ports) present the replica's certificate and
require a client certificate signed by the cluster CA; whoever connects (a
peer, a gateway, ``clob admin``, a benchmark) presents a certificate too and
verifies the replica's against the CA and the host it dialed. A peer link
also checks that the dialer's certificate names the replica its hello claims
to be (:func:`certificate_name`), so the shared client certificate cannot
speak for a replica. The cluster secret (shard/node/authentication.py), when
configured, is still proven, inside the encrypted stream.

A gateway's client listener is separate: its own ``cert_file``/``key_file``
(from any CA, public or the cluster's) make it serve wss://; clients verify it
against a CA file or the system trust store (:func:`websocket_client_context`).

Handshakes run in the task that owns the connection (never in an accept
loop), and the caller bounds them in time; a failed one raises
:class:`HandshakeFailed`, an ``OSError``, so code that already handles a
refused or broken connection handles it too. Without ``[tls]`` none of this
is used and the links stay plain TCP, with no per-message cost.
"""

from __future__ import annotations

import ssl

import trio

from config.schema import ClusterConfig, GatewayConfig

# The handshake of a connection a replica accepts must finish within this; a
# client that opens connections and sends nothing costs a task this long only.
ACCEPT_HANDSHAKE_S = 5.0

# Streams are made ``https_compatible``: closing one closes the socket at once
# (no waiting on a close_notify exchange with a peer that may have stalled) and
# an EOF without close_notify reads as a plain EOF, as on TCP. Nothing is lost
# to a truncation: every message on these links is length-prefixed, so a cut
# frame is incomplete and never delivered.


class TlsError(ValueError):
    """A TLS file named by the topology cannot be used; the message names the key."""


class HandshakeFailed(ConnectionError):
    """The TLS handshake failed (bad or missing certificate, not TLS at all, EOF)."""


def _check_readable(file: str, key: str) -> None:
    try:
        with open(file, "rb"):
            pass
    except OSError as exc:
        raise TlsError(f"{key}: {file!r}: cannot read: {exc.strerror or exc}") from exc


def _load_chain(context: ssl.SSLContext, cert: tuple[str, str], key: tuple[str, str]) -> None:
    """Load a certificate and its key; ``cert`` and ``key`` are (file, config key)."""
    _check_readable(*cert)
    _check_readable(*key)
    try:
        context.load_cert_chain(cert[0], key[0])
    except (ssl.SSLError, ValueError) as exc:
        raise TlsError(
            f"{cert[1]}, {key[1]}: {cert[0]!r} and {key[0]!r} are not a PEM certificate"
            f" and its private key ({exc})"
        ) from exc


def _load_ca(context: ssl.SSLContext, ca_file: str) -> None:
    _check_readable(ca_file, "tls.ca_file")
    try:
        context.load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"tls.ca_file: {ca_file!r}: not a PEM CA certificate ({exc})") from exc


def _mutual(cluster: ClusterConfig, purpose: int) -> ssl.SSLContext:
    """A context for a replica link: TLS 1.3 only (both ends are ours), peer verified."""
    assert cluster.tls is not None
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    _load_ca(context, cluster.tls.ca_file)
    return context


def replica_contexts(
    cluster: ClusterConfig, name: str
) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """Replica ``name``'s (listener, dialer) contexts; None without ``[tls]``.

    The listener context serves both the peer and the client port and requires
    a CA-signed client certificate; the dialer context presents the same
    certificate to the peers it connects to and checks theirs.
    """
    if cluster.tls is None:
        return None
    for m_index, market in enumerate(cluster.markets):
        for r_index, replica in enumerate(market.replicas):
            if replica.name == name:
                where = f"markets[{m_index}].replicas[{r_index}]"
                break
        else:
            continue
        break
    else:
        raise ValueError(f"no replica named {name!r} in the topology")
    if not replica.cert_file or not replica.key_file:  # the loader refuses this already
        raise TlsError(f"{where}.cert_file, {where}.key_file: required when [tls] is set")
    cert = (replica.cert_file, f"{where}.cert_file")
    key = (replica.key_file, f"{where}.key_file")
    listener = _mutual(cluster, ssl.PROTOCOL_TLS_SERVER)
    _load_chain(listener, cert, key)
    listener.num_tickets = 0  # links are long-lived: no session resumption to offer
    dialer = _mutual(cluster, ssl.PROTOCOL_TLS_CLIENT)
    _load_chain(dialer, cert, key)
    return listener, dialer


def client_context(cluster: ClusterConfig) -> ssl.SSLContext | None:
    """What gateways, ``clob admin`` and the other clients of replicas connect with
    (presenting the shared client certificate); None without ``[tls]``."""
    if cluster.tls is None:
        return None
    context = _mutual(cluster, ssl.PROTOCOL_TLS_CLIENT)
    tls = cluster.tls
    _load_chain(
        context,
        (tls.client_cert_file, "tls.client_cert_file"),
        (tls.client_key_file, "tls.client_key_file"),
    )
    return context


def gateway_context(cluster: ClusterConfig, name: str) -> ssl.SSLContext | None:
    """Gateway ``name``'s wss:// listener context; None when it serves plain ws://."""
    for index, gateway in enumerate(cluster.gateways):
        if gateway.name == name:
            return _gateway_listener(gateway, f"gateways[{index}]")
    raise ValueError(f"no gateway named {name!r} in the topology")


def _gateway_listener(gateway: GatewayConfig, where: str) -> ssl.SSLContext | None:
    if gateway.cert_file is None or gateway.key_file is None:
        return None
    # Browsers and other clients: the library's defaults (TLS 1.2+, no client certificate).
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(
        context, (gateway.cert_file, f"{where}.cert_file"), (gateway.key_file, f"{where}.key_file")
    )
    return context


def websocket_client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """For a wss:// client: verifies the gateway against ``ca_file``, or the system
    trust store when None. Raises :class:`TlsError` (naming ``--ca-file``)."""
    if ca_file is None:
        return ssl.create_default_context()
    _check_readable(ca_file, "--ca-file")
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"--ca-file: {ca_file!r}: not a PEM CA certificate ({exc})") from exc


def probe_context() -> ssl.SSLContext:
    """For a readiness probe that only completes a handshake and sends nothing: it need
    not trust the server (and a probe with no handshake would be logged as a failed one)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: BaseException) -> str:
    """Why a handshake failed, from the ssl error trio wrapped (say, "[SSL:
    CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer ...")."""
    cause = exc.__cause__ or exc.__context__
    return str(cause or exc) or type(cause or exc).__name__


async def open_client_stream(
    tcp: trio.SocketStream, context: ssl.SSLContext, host: str
) -> trio.SSLStream[trio.SocketStream]:
    """TLS over ``tcp``, verifying that the server is ``host``; the handshake is done.

    Raises :class:`HandshakeFailed` (and closes ``tcp``) when TLS itself fails (a
    certificate refused, a protocol alert), and ``ConnectionResetError`` when the
    connection was lost during the handshake (reset, closed: a peer restarting, a
    proxy whose upstream is down), which callers treat as any lost connection. On
    cancellation ``tcp`` is closed too. The caller bounds the time.
    """
    stream = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tcp)
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError):
            raise HandshakeFailed(f"TLS handshake with {host}: {_reason(exc)}") from exc
        raise ConnectionResetError(
            f"TLS handshake with {host}: connection lost ({_reason(exc)})"
        ) from exc
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream


async def accept_stream(
    tcp: trio.SocketStream, context: ssl.SSLContext
) -> trio.SSLStream[trio.SocketStream]:
    """The server side of :func:`open_client_stream`: the client's certificate is
    verified (when ``context`` requires one). Closes ``tcp`` on failure."""
    stream = trio.SSLStream(tcp, context, server_side=True, https_compatible=True)
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tcp)
        raise HandshakeFailed(_reason(exc)) from exc
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream


def certificate_name(stream: trio.abc.Stream) -> str | None:
    """The common name of the certificate the other end presented (None: plain TCP
    or none presented)."""
    if not isinstance(stream, trio.SSLStream):
        return None
    cert = stream.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
