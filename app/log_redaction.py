"""Some secrets must travel in a URL's query: OAuth's client_secret and code at Meta's token endpoint,
debug_token's input_token. urllib3 logs every URL it requests at DEBUG level; this filter cuts those
values out, so secrets never reach a log whatever the log level."""
import logging
import re

SECRET_PARAMETERS = re.compile(r"(?<=[?&])(access_token|client_secret|input_token|fb_exchange_token|code)=[^&\s\"']*",
                               re.IGNORECASE)


class RedactSecretParameters(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def _redact(text: str) -> str:
    return SECRET_PARAMETERS.sub(r"\1=[redacted]", text)


def redact_secrets_in_request_logs() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, RedactSecretParameters) for f in logger.filters):
        logger.addFilter(RedactSecretParameters())
