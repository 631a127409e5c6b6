"""A real SMTP server for Postbud's email tests: aiosmtpd with STARTTLS and AUTH required.

Every accepted message is written to MAILDIR/<n>.eml with MAILDIR/<n>.json holding the
envelope. Recipients starting with `reject` get `550 5.1.1` at RCPT; those starting with
`greylist` get `451 4.7.1` the first time each is seen. Prints READY when listening.
"""

import argparse
import json
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, maildir):
        self.maildir = maildir
        self.count = 0
        self.greylisted = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 <%s>: no such user" % address
        if address.startswith("greylist") and address not in self.greylisted:
            self.greylisted.add(address)
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        with open(os.path.join(self.maildir, "%d.eml" % n), "wb") as f:
            f.write(envelope.original_content)
        with open(os.path.join(self.maildir, "%d.json" % n), "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                       "tls": session.ssl is not None,
                       "auth": session.authenticated}, f)
        return "250 2.0.0 queued as %d" % n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--maildir", required=True)
    args = parser.parse_args()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and \
            auth_data.login.decode() == args.user and auth_data.password.decode() == args.password
        return AuthResult(success=ok, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    controller = Controller(
        Handler(args.maildir), hostname="127.0.0.1", port=args.port,
        tls_context=context, require_starttls=True,
        authenticator=authenticator, auth_required=True, auth_require_tls=True,
        decode_data=False,
    )
    controller.start()
    print("READY", flush=True)
    try:
        sys.stdin.read()  # runs until the test closes our stdin or kills us
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
