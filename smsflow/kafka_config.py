"""Kafka client configuration in one place: bootstrap servers, TLS and SASL.

Every Kafka client smsflow makes gets its connection settings from here, so a managed cluster
(Confluent Cloud, MSK, Aiven, Strimzi with TLS/SCRAM) is configured once, by environment
variables, for the worker, the webhook server and every CLI command:

=============================  ==================================================================
``confluent_config``           confluent-kafka ``Producer`` / ``Consumer`` / ``AdminClient`` dict
``aiokafka_kwargs``            keyword arguments for ``AIOKafkaProducer`` / ``AIOKafkaConsumer``
``faust_credentials``          Faust's ``broker_credentials`` setting (``None`` for PLAINTEXT)
=============================  ==================================================================

The settings (``streams/settings.py``, env ``SMSFLOW_KAFKA_*``): security protocol
(PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), SASL mechanism (PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512; PLAIN when a SASL protocol is chosen without one), SASL username and
password, and for TLS a CA file (else the system's CAs), a client certificate and key (mutual
TLS). :func:`check` rejects inconsistent combinations with a message that names the variable,
instead of letting a client fail later with a less helpful one.
"""

from __future__ import annotations

import os
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_MECHANISM = "PLAIN"


class KafkaConfigError(ValueError):
    """The Kafka security settings are inconsistent; the message names the variable."""


def _get(settings, name: str, default=None):
    # getattr with a default: settings objects built before these fields existed still work.
    value = getattr(settings, name, default)
    return value if value not in ("", None) else default


def protocol(settings) -> str:
    value = str(_get(settings, "kafka_security_protocol", "PLAINTEXT")).strip().upper()
    if value not in PROTOCOLS:
        raise KafkaConfigError(f"SMSFLOW_KAFKA_SECURITY_PROTOCOL must be one of "
                               f"{', '.join(PROTOCOLS)}, got {value!r}")
    return value


def uses_sasl(settings) -> bool:
    return protocol(settings).startswith("SASL_")


def uses_tls(settings) -> bool:
    return protocol(settings) in ("SSL", "SASL_SSL")


def mechanism(settings) -> str | None:
    """The SASL mechanism, upper case; ``None`` without SASL."""
    if not uses_sasl(settings):
        return None
    value = str(_get(settings, "kafka_sasl_mechanism", DEFAULT_MECHANISM)).strip().upper()
    if value not in MECHANISMS:
        raise KafkaConfigError(f"SMSFLOW_KAFKA_SASL_MECHANISM must be one of "
                               f"{', '.join(MECHANISMS)}, got {value!r}")
    return value


def check(settings) -> None:
    """Raise :class:`KafkaConfigError` on settings that cannot work or would leak secrets."""
    proto = protocol(settings)
    mechanism(settings)
    user = _get(settings, "kafka_sasl_username")
    password = _get(settings, "kafka_sasl_password")
    if proto.startswith("SASL_"):
        if not user or password is None:
            raise KafkaConfigError(f"SMSFLOW_KAFKA_SECURITY_PROTOCOL={proto} needs "
                                   "SMSFLOW_KAFKA_SASL_USERNAME and SMSFLOW_KAFKA_SASL_PASSWORD")
    elif user or password:
        # Refuse rather than guess: never send credentials the user meant for SASL_SSL
        # over a protocol they did not choose.
        raise KafkaConfigError("SMSFLOW_KAFKA_SASL_USERNAME/PASSWORD are set but "
                               f"SMSFLOW_KAFKA_SECURITY_PROTOCOL is {proto}: set SASL_SSL "
                               "(or SASL_PLAINTEXT on a trusted network)")
    tls_files = {"SMSFLOW_KAFKA_SSL_CAFILE": _get(settings, "kafka_ssl_cafile"),
                 "SMSFLOW_KAFKA_SSL_CERTFILE": _get(settings, "kafka_ssl_certfile"),
                 "SMSFLOW_KAFKA_SSL_KEYFILE": _get(settings, "kafka_ssl_keyfile")}
    given = {name: path for name, path in tls_files.items() if path}
    if given and proto not in ("SSL", "SASL_SSL"):
        raise KafkaConfigError(f"{', '.join(given)} set but SMSFLOW_KAFKA_SECURITY_PROTOCOL "
                               f"is {proto}: set SSL or SASL_SSL")
    for name, path in given.items():
        if not os.path.isfile(path):
            raise KafkaConfigError(f"{name}={path}: no such file")
    if bool(tls_files["SMSFLOW_KAFKA_SSL_CERTFILE"]) != bool(tls_files["SMSFLOW_KAFKA_SSL_KEYFILE"]):
        raise KafkaConfigError("SMSFLOW_KAFKA_SSL_CERTFILE and SMSFLOW_KAFKA_SSL_KEYFILE go "
                               "together (client certificate and its private key)")
    replication = int(_get(settings, "topic_replication", 1))
    min_insync = int(_get(settings, "topic_min_insync", 1))
    if replication < 1 or min_insync < 1 or min_insync > replication:
        raise KafkaConfigError(f"need 1 <= SMSFLOW_TOPIC_MIN_INSYNC ({min_insync}) <= "
                               f"SMSFLOW_TOPIC_REPLICATION ({replication})")


def describe(settings) -> str:
    """One line for logs and error messages, never the password:
    ``127.0.0.1:9092 (SASL_SSL, SCRAM-SHA-512 as alice)``."""
    proto = protocol(settings)
    if proto == "PLAINTEXT":
        return settings.bootstrap
    extra = f", {mechanism(settings)} as {_get(settings, 'kafka_sasl_username')}" \
        if uses_sasl(settings) else ""
    return f"{settings.bootstrap} ({proto}{extra})"


def confluent_config(settings, **extra: Any) -> dict:
    """Configuration dict for confluent-kafka ``Producer``/``Consumer``/``AdminClient``:
    ``bootstrap.servers`` and the security properties, then ``extra`` verbatim (librdkafka
    property names contain dots, so pass them as ``**{"group.id": "x"}``; Python-client
    options such as ``logger`` or ``error_cb`` as plain keywords)."""
    check(settings)
    conf: dict[str, Any] = {"bootstrap.servers": settings.bootstrap}
    proto = protocol(settings)
    if proto != "PLAINTEXT":
        conf["security.protocol"] = proto.lower()
    if uses_sasl(settings):
        conf["sasl.mechanism"] = mechanism(settings)
        conf["sasl.username"] = _get(settings, "kafka_sasl_username")
        conf["sasl.password"] = _get(settings, "kafka_sasl_password", "")
    if uses_tls(settings):
        for key, name in (("ssl.ca.location", "kafka_ssl_cafile"),
                          ("ssl.certificate.location", "kafka_ssl_certfile"),
                          ("ssl.key.location", "kafka_ssl_keyfile")):
            if _get(settings, name):
                conf[key] = str(_get(settings, name))
    conf.update(extra)
    return conf


def ssl_context(settings):
    """An ``ssl.SSLContext`` for aiokafka/Faust (hostname checked; the CA file, else the
    system's CAs; the client certificate when set), or ``None`` without TLS."""
    check(settings)
    if not uses_tls(settings):
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=_get(settings, "kafka_ssl_cafile"),
                              certfile=_get(settings, "kafka_ssl_certfile"),
                              keyfile=_get(settings, "kafka_ssl_keyfile"))


def aiokafka_kwargs(settings) -> dict:
    """Security keyword arguments for ``AIOKafkaProducer``/``AIOKafkaConsumer``/
    ``AIOKafkaAdminClient`` (``bootstrap_servers`` is not included)::

        AIOKafkaProducer(bootstrap_servers=settings.bootstrap, **aiokafka_kwargs(settings), ...)
    """
    check(settings)
    kwargs: dict[str, Any] = {"security_protocol": protocol(settings)}
    if uses_sasl(settings):
        kwargs["sasl_mechanism"] = mechanism(settings)
        kwargs["sasl_plain_username"] = _get(settings, "kafka_sasl_username")
        kwargs["sasl_plain_password"] = _get(settings, "kafka_sasl_password", "")
    if uses_tls(settings):
        kwargs["ssl_context"] = ssl_context(settings)
    return kwargs


def faust_credentials(settings):
    """Value for Faust's ``broker_credentials`` setting: ``faust.SASLCredentials`` (with an
    SSL context for SASL_SSL), ``faust.SSLCredentials`` for SSL, ``None`` for PLAINTEXT.
    Faust passes it to every consumer, producer and topic-creating client it makes."""
    check(settings)
    proto = protocol(settings)
    if proto == "PLAINTEXT":
        return None
    import faust

    if proto == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    credentials = faust.SASLCredentials(
        username=_get(settings, "kafka_sasl_username"),
        password=_get(settings, "kafka_sasl_password", ""),
        ssl_context=ssl_context(settings), mechanism=mechanism(settings))
    return credentials


def topic_config(settings) -> dict[str, str]:
    """Topic-level configuration smsflow adds to every topic it creates."""
    return {"min.insync.replicas": str(int(_get(settings, "topic_min_insync", 1)))}


def replication_factor(settings) -> int:
    return int(_get(settings, "topic_replication", 1))
