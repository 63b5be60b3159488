"""A real SMTP server for esalert's tests (aiosmtpd).

Usage: smtp_server.py PORT DIR [USER:PASSWORD]

With USER:PASSWORD, AUTH (without TLS) is required and the login is recorded.

Every accepted message is written to DIR/NNNN.json as
{"mail_from", "rcpt_tos", "data"}. The file DIR/mode, read at every command,
picks the answer: "ok" (default), "451" (transient) or "550" (permanent) to
RCPT, or "slow" (DATA takes 5 seconds). Prints "READY" once listening.
"""
import json
import os
import sys
import time
import asyncio

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    def mode(self):
        try:
            with open(os.path.join(self.directory, "mode")) as f:
                return f.read().strip()
        except FileNotFoundError:
            return "ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        mode = self.mode()
        if mode == "451":
            return "451 4.3.0 Mailbox temporarily unavailable, try later"
        if mode == "550":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.mode() == "slow":
            await asyncio.sleep(5)
        self.count += 1
        path = os.path.join(self.directory, "%04d.json" % self.count)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "data": envelope.content.decode("utf8", errors="replace"),
                    "login": getattr(session, "login", None),
                },
                f,
            )
        os.rename(tmp, path)
        return "250 Message accepted for delivery"


def main():
    port = int(sys.argv[1])
    directory = sys.argv[2]
    kwargs = {}
    if len(sys.argv) > 3:
        user, password = sys.argv[3].split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            from aiosmtpd.smtp import AuthResult, LoginPassword

            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            if ok:
                session.login = user
            return AuthResult(success=ok)

        kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    controller = Controller(Handler(directory), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print("READY", flush=True)
    try:
        # Exit when the test harness closes our stdin (or kills us).
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
