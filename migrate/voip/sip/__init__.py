"""The hand-written SIP client (OPTIONS, REGISTER with digest) over UDP, TCP and TLS."""

from migrate.voip.sip.client import RegisterResult, SipClient
from migrate.voip.sip.digest import mask_authorization
from migrate.voip.sip.message import SipError, SipProtocolError, SipResponse
from migrate.voip.sip.transport import (
    Exchange,
    SipConnectFailed,
    SipTimeout,
    SipTlsFailed,
    Target,
    Timers,
    TlsInfo,
)

__all__ = [
    "Exchange",
    "RegisterResult",
    "SipClient",
    "SipConnectFailed",
    "SipError",
    "SipProtocolError",
    "SipResponse",
    "SipTimeout",
    "SipTlsFailed",
    "Target",
    "Timers",
    "TlsInfo",
    "mask_authorization",
]
