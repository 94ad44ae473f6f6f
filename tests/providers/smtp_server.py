"""A real SMTP server on loopback (aiosmtpd) that records every command it is sent."""
from __future__ import annotations

import functools
import socket
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    """Accepts whatever it is given (a check must never get this far)."""

    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


class RecordingSMTP(SMTP):
    def __init__(self, handler, *, commands: list[str], **kwargs):
        super().__init__(handler, **kwargs)
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._recorded(commands, name, method)

    @staticmethod
    def _recorded(commands, name, method):
        @functools.wraps(method)
        async def record(arg):
            commands.append(name)
            return await method(arg)
        return record


class RecordingController(Controller):
    def __init__(self, handler, *, commands: list[str], **kwargs):
        self.commands = commands
        super().__init__(handler, **kwargs)

    def factory(self):
        return RecordingSMTP(self.handler, commands=self.commands, **self.SMTP_kwargs)


def password_authenticator(username: str, password: str):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == username.encode() and auth_data.password == password.encode())
        return AuthResult(success=ok, handled=False)
    return authenticate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*, starttls_context: ssl.SSLContext | None = None, implicit_context: ssl.SSLContext | None = None,
                 username: str | None = None, password: str | None = None) -> RecordingController:
    """Start a server on 127.0.0.1: STARTTLS (required) with `starttls_context`, implicit TLS with
    `implicit_context`, or plain; AUTH for one user when `username` is given (only after STARTTLS when it is on)."""
    kwargs = {}
    if starttls_context is not None:
        kwargs.update(tls_context=starttls_context, require_starttls=True)
    if username is not None:
        kwargs.update(authenticator=password_authenticator(username, password or ""),
                      # aiosmtpd only counts STARTTLS as TLS; on an implicit-TLS socket the line is already secure.
                      auth_require_tls=starttls_context is not None)
    controller = RecordingController(Sink(), commands=[], hostname="127.0.0.1", port=free_port(),
                                     server_hostname="mail.test", ssl_context=implicit_context, ready_timeout=5,
                                     **kwargs)
    controller.start()
    return controller
