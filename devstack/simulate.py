"""Play Twilio: post a signed inbound WhatsApp message (or a status callback) to the webhook.

python -m devstack.simulate --from +573001112233 --to +14155238886 "Hola"
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

import requests
from twilio.request_validator import RequestValidator

from devstack.stack import read_env


def inbound_form(
    customer: str,
    advisor_number: str,
    body: str,
    account_sid: str,
    message_sid: str | None = None,
    profile_name: str = "Cliente Demo",
) -> dict[str, str]:
    """The form Twilio posts for an inbound WhatsApp text (fields as in Twilio's docs)."""
    sid = message_sid or "SM" + uuid.uuid4().hex
    return {
        "SmsMessageSid": sid, "NumMedia": "0", "ProfileName": profile_name, "MessageType": "text",
        "SmsSid": sid, "WaId": customer.lstrip("+"), "SmsStatus": "received", "Body": body,
        "To": f"whatsapp:{advisor_number}", "NumSegments": "1", "ReferralNumMedia": "0",
        "MessageSid": sid, "AccountSid": account_sid, "From": f"whatsapp:{customer}",
        "ApiVersion": "2010-04-01",
    }  # fmt: skip


def post_signed(
    url: str,
    auth_token: str,
    params: dict[str, str],
    timeout: float = 20,
    signed_url: str | None = None,
) -> requests.Response:
    """POST as Twilio does; `signed_url` is the URL Twilio was configured with, when the
    request goes to another address (one of several instances behind it)."""
    signature = RequestValidator(auth_token).compute_signature(signed_url or url, params)
    return requests.post(
        url, data=params, headers={"X-Twilio-Signature": signature}, timeout=timeout
    )


def send_inbound(env: dict[str, str], customer: str, advisor_number: str, body: str,
                 message_sid: str | None = None,
                 media: tuple[str, str] | None = None) -> tuple[requests.Response, str]:  # fmt: skip
    """A signed inbound message; `media` is (MediaUrl, content type) of one attachment."""
    params = inbound_form(customer, advisor_number, body, env["TWILIO_ACCOUNT_SID"], message_sid)
    if media:
        params.update(NumMedia="1", MessageType="image" if media[1].startswith("image/") else "document",
                      MediaUrl0=media[0], MediaContentType0=media[1])  # fmt: skip
    response = post_signed(env["WEBHOOK_URL"], env["TWILIO_AUTH_TOKEN"], params)
    return response, params["MessageSid"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from", dest="customer", required=True, help="customer phone, E.164")
    parser.add_argument(
        "--to", dest="advisor", required=True, help="advisor's Twilio number, E.164"
    )
    parser.add_argument("--sid", help="MessageSid to use (repeat one to try a duplicate delivery)")
    parser.add_argument("body")
    args = parser.parse_args(argv)
    env = read_env(Path(os.environ.get("DEV_DIR", ".dev")))
    if not env:
        print("no .dev/env: start the stack first with `make dev`", file=sys.stderr)
        return 2
    response, sid = send_inbound(env, args.customer, args.advisor, args.body, args.sid)
    print(f"{response.status_code} {sid} {response.text.strip()}")
    return 0 if response.ok else 1


if __name__ == "__main__":
    sys.exit(main())
