"""Network helpers shared by adapters: one HTTP call with errors mapped to plain words,
and the guard that keeps user-typed hosts off loopback and private networks."""
from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from .base import GiveUp, ProviderError, RetryLater, UseAnotherProvider

USER_AGENT = "Switchboard/1.0"
_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per thread: sends to the same provider reuse their connection."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
        _local.session.trust_env = False  # proxies and .netrc of the host must not reroute provider calls
    return _local.session


def is_private_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def private_host_error(host: str, allow_private: bool, *, resolve: bool = True) -> str | None:
    """Why `host` may not be used, or None.

    IP literals and localhost are judged as typed; names are resolved when `resolve`
    is set (at connection time), so a name pointing at a private address is refused too.
    """
    if allow_private:
        return None
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "Loopback hosts are not allowed (set ALLOW_PRIVATE_NETWORK=1 for a local relay)."
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        if not resolve:
            return None
        try:
            addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
        except (socket.gaierror, UnicodeError):
            return None  # unresolvable names fail later as "unreachable host"
    if any(is_private_address(a.split("%")[0]) for a in addresses):
        return "Private and loopback addresses are not allowed (set ALLOW_PRIVATE_NETWORK=1 for a local relay)."
    return None


def _host_of(url: str) -> str:
    return urlsplit(url).hostname or url


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def call(
    method: str,
    url: str,
    *,
    timeout: float,
    provider_label: str,
    describe_error: Callable[[requests.Response], str] | None = None,
    **kwargs,
) -> requests.Response:
    """Make one HTTP request; return the 2xx response or raise a typed ProviderError.

    `describe_error` pulls the provider's own reason out of an error response.
    """
    kwargs.setdefault("headers", {}).setdefault("User-Agent", USER_AGENT)
    host = _host_of(url)
    try:
        response = _session().request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.exceptions.SSLError:  # a bad certificate does not mend itself: no retry
        raise UseAnotherProvider(f"TLS failure talking to {host}: the certificate could not be verified.") from None
    except requests.exceptions.Timeout:
        raise RetryLater(f"{provider_label} did not answer within {timeout:g} seconds (timeout).") from None
    except requests.exceptions.ConnectionError:
        raise RetryLater(f"Could not reach {host}: the host is unreachable.") from None
    except requests.exceptions.RequestException as exc:
        raise RetryLater(f"Could not talk to {host}: {type(exc).__name__}.") from None
    if response.status_code < 300:
        return response
    detail = ""
    if describe_error is not None:
        try:
            detail = (describe_error(response) or "").strip()
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            detail = ""
    if not detail:
        detail = (response.text or "").strip()[:200] if "json" not in response.headers.get("Content-Type", "") else ""
    suffix = f": {detail}" if detail else "."
    status = response.status_code
    if status in (401, 403):
        raise UseAnotherProvider(f"{provider_label} refused the credentials (bad credentials){suffix}", http_status=status)
    if status == 429:
        raise RetryLater(f"{provider_label} is rate limiting requests{suffix}", retry_after=_retry_after(response), http_status=status)
    if status >= 500:
        raise RetryLater(f"{provider_label} had a server error (HTTP {status}){suffix}", retry_after=_retry_after(response), http_status=status)
    if status == 404:
        raise GiveUp(f"{provider_label} does not know this account or resource (HTTP 404){suffix}", http_status=status)
    raise GiveUp(f"{provider_label} rejected the request (HTTP {status}){suffix}", http_status=status)


def json_body(response: requests.Response, provider_label: str) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise RetryLater(f"{provider_label} answered with something that is not JSON.") from None
    if not isinstance(body, dict):
        raise RetryLater(f"{provider_label} answered with an unexpected JSON shape.")
    return body


__all__ = ["call", "json_body", "private_host_error", "ProviderError"]
