"""A local SMTP server for Warden's email-receiver test (aiosmtpd).

    smtp_sink.py [--auth LOGIN] [--refuse-first N]

Prints the port it listens on (127.0.0.1), then one JSON line per message received:
{"from", "to" (the envelope's), "header_from", "header_to", "subject", "body", "login"}, and
{"refused": N} for each of the first N messages it answers with 451 (so the sender must retry).
With --auth, it offers AUTH PLAIN/LOGIN without TLS and takes mail only after a login as LOGIN
with the password in $SMTP_SINK_PASSWORD (never on the command line); a failed login prints
{"auth_failed": login}. Stops when stdin closes.
"""

import argparse
import email
import json
import logging
import os
import socket
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def say(obj):
    print(json.dumps(obj), flush=True)


class Sink:
    def __init__(self, refuse):
        self.refuse = refuse

    async def handle_DATA(self, server, session, envelope):
        if self.refuse > 0:
            self.refuse -= 1
            say({"refused": 451})
            return "451 4.3.0 Try again later"
        msg = email.message_from_bytes(envelope.original_content)
        body = msg.get_payload(decode=True)
        say({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "header_from": str(msg["From"]),
            "header_to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "body": body.decode("utf-8", "replace") if body else "",
            "login": getattr(session, "auth_data", None),
        })
        return "250 OK"


def authenticator_for(login, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            got = auth_data.login.decode()
            if got == login and auth_data.password.decode() == password:
                return AuthResult(success=True, auth_data=got)
            say({"auth_failed": got})
        return AuthResult(success=False, handled=False)

    return authenticate


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


args = argparse.ArgumentParser()
args.add_argument("--auth", metavar="LOGIN")
args.add_argument("--refuse-first", type=int, default=0, metavar="N")
opts = args.parse_args()
# AUTH without TLS is this test's point (a local relay); aiosmtpd's warnings about it and its
# own deprecation notices are noise in the test's output.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
logging.getLogger("mail.log").setLevel(logging.ERROR)
smtp = {}
if opts.auth:
    smtp = {
        "authenticator": authenticator_for(opts.auth, os.environ["SMTP_SINK_PASSWORD"]),
        "auth_required": True,
        "auth_require_tls": False,
    }
port = free_port()
controller = Controller(Sink(opts.refuse_first), hostname="127.0.0.1", port=port, **smtp)
controller.start()
print(port, flush=True)
sys.stdin.read()
controller.stop()
