"""A real SMTP server for the tests (aiosmtpd): each message it accepts is
appended to a JSON-lines file as {mail_from, rcpt_tos, subject, text, html}.

Usage: smtp_sink.py PORT OUTPUT [--reject-first N]
  --reject-first N  answer the first N messages `451 4.3.0 Try again later`
                    (a transient failure the sender must retry).
Prints `ready` once listening; runs until terminated.
"""
import argparse
import asyncio
import email
import email.policy
import json
import signal

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, output, reject_first):
        self.output = output
        self.rejections_left = reject_first

    async def handle_DATA(self, server, session, envelope):
        if self.rejections_left > 0:
            self.rejections_left -= 1
            return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message["from"]),
            "subject": str(message["subject"]),
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
        }
        with open(self.output, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return "250 2.0.0 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("output")
    parser.add_argument("--reject-first", type=int, default=0)
    args = parser.parse_args()
    controller = Controller(
        Sink(args.output, args.reject_first), hostname="127.0.0.1", port=args.port
    )
    controller.start()
    print("ready", flush=True)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
