import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

from ..base import Field, GiveUp, OutboundMessage, Provider, ProviderError, RetryLater, SendResult, UseAnotherProvider
from ..net import private_host_error
from . import SENDER_FIELDS

SECURITY_WORDS = {"starttls": "STARTTLS", "ssl": "implicit TLS"}


class SMTP(Provider):
    integration_type = "email"
    name = "smtp"
    label = "SMTP server"
    has_test_mode = False
    # Each message opens its own session; five a second stays polite to a typical relay (staff can raise it).
    default_rate_limit = 5.0
    fields = SENDER_FIELDS + (
        Field("host", "Host", "host", required=True, placeholder="smtp.example.com"),
        Field("port", "Port", "int", required=True, default=587, min_value=1, max_value=65535,
              help="587 for STARTTLS, 465 for implicit TLS."),
        Field("security", "Security", "choice", required=True, default="starttls",
              choices=(("starttls", "STARTTLS"), ("ssl", "Implicit TLS (SSL)"), ("none", "None (unencrypted)"))),
        Field("username", "Username"),
        Field("password", "Password", "secret"),
    )

    def check(self, config, secrets):
        # Connect, secure the line, sign in, quit: no MAIL FROM and no DATA, so nothing is sent.
        with self.connection(config, secrets) as line:
            pass
        secured = (f"with {SECURITY_WORDS[line.security]} ({line.tls_version})" if line.tls_version
                   else "without encryption")
        signed_in = f"signed in as {line.username}" if line.username else "no username is set, so sign-in was not tried"
        return f"Connected to {line.where} {secured}{' and ' if line.username else '; '}{signed_in}."

    def send(self, config, secrets, message: OutboundMessage, *, sandbox):
        email = build_message(config, message)
        with self.connection(config, secrets) as line:
            line.client.send_message(email, from_addr=config["from_email"], to_addrs=[message.to])
        return SendResult(provider_message_id=email["Message-ID"])

    @contextmanager
    def connection(self, config, secrets) -> Iterator["Line"]:
        """An SMTP session to the configured server: connected to vetted addresses, secured as configured
        (never falling back to clear text), signed in when a username is set; it quits at the end.

        Any failure, in here or in the caller's block, leaves as a typed ProviderError in plain words.
        """
        host, port = str(config["host"]).strip("[]"), int(config["port"])
        security = config.get("security") or "starttls"
        username, password = config.get("username") or "", secrets.get("password") or ""
        where, timeout = f"{host}:{port}", self.settings.timeout
        addresses = vetted_addresses(host, port, self.settings.allow_private_network)
        context = ssl.create_default_context()
        client = None
        try:
            if security == "ssl":
                client = PinnedSMTP_SSL(host, port, addresses=addresses, timeout=timeout, context=context)
            else:
                client = PinnedSMTP(host, port, addresses=addresses, timeout=timeout)
            client.ehlo_or_helo_if_needed()
            if security == "starttls":
                if not client.has_extn("starttls"):
                    raise UseAnotherProvider(f"{where} does not offer STARTTLS, so the connection cannot be encrypted; "
                                             "choose implicit TLS (usually port 465) if the server supports it.")
                client.starttls(context=context)
                client.ehlo_or_helo_if_needed()  # the capabilities seen before TLS no longer count
            tls_version = client.sock.version() if isinstance(client.sock, ssl.SSLSocket) else None
            if username:
                if not client.has_extn("auth"):
                    raise UseAnotherProvider(f"{where} does not offer sign-in (AUTH) on this connection"
                                             f"{'' if tls_version else ' without encryption'}.")
                try:
                    client.login(username, password)
                except UnicodeEncodeError:
                    raise GiveUp("The username or password has characters other than plain ASCII, "
                                 "which SMTP sign-in cannot send.") from None
            yield Line(client, where, security, tls_version, username)
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the work is done; a rude goodbye changes nothing
        except ProviderError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise smtp_error(exc, where, port, security, timeout) from None
        finally:
            if client is not None:
                client.close()


@dataclass(frozen=True)
class Line:
    """An open, secured and signed-in SMTP session."""

    client: smtplib.SMTP
    where: str
    security: str
    tls_version: str | None
    username: str


def build_message(config: dict, message: OutboundMessage) -> EmailMessage:
    """The MIME message: plain text and/or HTML (as alternatives), with our id in its Message-ID."""
    email = EmailMessage()
    sender = config["from_email"]
    try:
        email["From"] = Address(display_name=config.get("from_name") or "", addr_spec=sender)
        email["To"] = message.to
        email["Subject"] = message.subject or ""
        if config.get("reply_to"):
            email["Reply-To"] = config["reply_to"]
    except (ValueError, IndexError) as exc:  # email's header parser refuses line breaks and broken addresses
        raise GiveUp(f"The message cannot be written as an email: {exc}") from None
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = f"<{message.id}@{sender.rpartition('@')[2] or 'switchboard.invalid'}>"
    if message.body:
        email.set_content(message.body)
        if message.html:
            email.add_alternative(message.html, subtype="html")
    else:
        email.set_content(message.html or "", subtype="html")
    return email


def vetted_addresses(host: str, port: int, allow_private: bool) -> list[str]:
    """Resolve `host` once and refuse private and loopback answers (unless allowed).

    The connection then goes to exactly these addresses, so a second DNS answer cannot steer it elsewhere.
    """
    problem = private_host_error(host, allow_private, resolve=False)
    if problem:
        raise GiveUp(f"Refused to connect to {host}: {problem}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise RetryLater(f"Could not find {host} (the DNS lookup failed): the host is unreachable.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        problem = private_host_error(address, allow_private, resolve=False)
        if problem:
            raise GiveUp(f"Refused to connect to {host} ({address}): {problem}")
    return addresses


class _Pinned:
    """Connect to addresses resolved and vetted beforehand; TLS still checks the certificate against the host name."""

    def __init__(self, host: str, port: int, *, addresses: list[str], **kwargs):
        self.addresses = addresses
        super().__init__(host, port, **kwargs)  # connects and reads the greeting

    def _get_socket(self, host, port, timeout):
        failure: OSError = OSError(f"no address for {host}")
        for address in self.addresses:
            try:
                return super()._get_socket(address, port, timeout)
            except ssl.SSLError:
                raise
            except OSError as exc:
                failure = exc
        raise failure


class PinnedSMTP(_Pinned, smtplib.SMTP):
    pass


class PinnedSMTP_SSL(_Pinned, smtplib.SMTP_SSL):
    pass


CERTIFICATE_PROBLEMS = (
    ("expired", "it has expired"),
    ("not yet valid", "it is not valid yet"),
    ("mismatch", "it was issued for another name"),
    ("self-signed", "it is self-signed"),
    ("self signed", "it is self-signed"),
    ("issuer", "it is not signed by an authority we trust"),
)


def smtp_error(exc: Exception, where: str, port: int, security: str, timeout: float) -> ProviderError:
    """Plain words and a type for a failed SMTP exchange, with the server's own reply where there is one."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return UseAnotherProvider(f"{where} refused the username or password (bad credentials): {reply(exc)}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        address, (code, text) = next(iter(exc.recipients.items()))
        said = reply(smtplib.SMTPResponseException(code, text))
        if 400 <= code < 500:
            return RetryLater(f"{where} turned the recipient {address} away for now: {said}")
        if is_relay_refusal(said):  # the server will not relay for us: this account's problem, not the recipient's
            return UseAnotherProvider(f"{where} refused to relay to {address}: {said}")
        return GiveUp(f"{where} refused the recipient {address}: {said}")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        if 400 <= exc.smtp_code < 500:
            return RetryLater(f"{where} turned the sender {exc.sender} away for now: {reply(exc)}")
        return UseAnotherProvider(f"{where} refused the sender {exc.sender}: {reply(exc)}")
    if isinstance(exc, smtplib.SMTPDataError):
        if 400 <= exc.smtp_code < 500:
            return RetryLater(f"{where} could not take the message for now: {reply(exc)}")
        return GiveUp(f"{where} refused the message: {reply(exc)}")
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, TimeoutError):
        exc = exc.__context__  # smtplib reports a read timeout as a disconnection
    elif isinstance(exc, smtplib.SMTPServerDisconnected):
        return RetryLater(f"{where} closed the connection unexpectedly.")
    if isinstance(exc, smtplib.SMTPResponseException):
        kind = RetryLater if 400 <= exc.smtp_code < 500 else UseAnotherProvider
        return kind(f"{where} answered with an error: {reply(exc)}")
    if isinstance(exc, smtplib.SMTPException):
        return UseAnotherProvider(f"{where}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or exc.reason or "unknown reason"
        plain = next((words for key, words in CERTIFICATE_PROBLEMS if key in message.lower()), "")
        return UseAnotherProvider(f"TLS failure talking to {where}: the certificate could not be verified"
                                  f"{f' ({plain}: {message})' if plain else f' ({message})'}.")
    if isinstance(exc, ssl.SSLError):
        hint = ""
        if exc.reason == "WRONG_VERSION_NUMBER" and security == "ssl":
            hint = "; the server did not answer in TLS, so try STARTTLS (usually port 587)"
        return UseAnotherProvider(f"TLS failure talking to {where}: the secure handshake failed "
                                  f"({exc.reason or exc.strerror or 'unknown reason'}){hint}.")
    if isinstance(exc, TimeoutError):
        hint = "; port 465 usually needs implicit TLS" if port == 465 and security != "ssl" else ""
        return RetryLater(f"{where} did not answer within {timeout:g} seconds (timeout){hint}.")
    if isinstance(exc, ConnectionRefusedError):
        return RetryLater(f"Could not reach {where}: the connection was refused (unreachable host).")
    return RetryLater(f"Could not reach {where}: the host is unreachable ({exc.strerror or type(exc).__name__}).")


def is_relay_refusal(said: str) -> bool:
    """A permanent refusal that says relaying is denied ("554 5.7.1 Relay access denied")."""
    return "relay" in said.lower()


def reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {' '.join(text.split())}".strip()
