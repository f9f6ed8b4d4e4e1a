"""A local SMTP server for Warden's email-receiver test (aiosmtpd).

Prints the port it listens on (127.0.0.1), then one JSON line per message received:
{"from", "to", "subject", "body"}. Stops when stdin closes.
"""

import email
import json
import socket
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content)
        body = msg.get_payload(decode=True)
        print(json.dumps({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(msg["Subject"]),
            "body": body.decode("utf-8", "replace") if body else "",
        }), flush=True)
        return "250 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


port = free_port()
controller = Controller(Sink(), hostname="127.0.0.1", port=port)
controller.start()
print(port, flush=True)
sys.stdin.read()
controller.stop()
