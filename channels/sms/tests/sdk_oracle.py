"""Signs and verifies SMS delivery reports with the providers' own SDKs, for channels/sms/tests/sdk.rs.

Reads one JSON request per line on stdin, answers one JSON line each on stdout:

- {"op": "twilio_sign", "secret", "url", "params" | "body", "algorithm"} -> {"signature"}
- {"op": "twilio_validate", "secret", "url", "params" | "body", "signature", "algorithm"} -> {"valid"}
- {"op": "sinch_sign", "secret", "body", "nonce", "timestamp"} -> {"signature"}
- {"op": "sinch_validate", "secret", "headers", "body"} -> {"valid"}
- {"op": "vonage_sign", "secret", "method", "params"} -> {"signature"}
- {"op": "vonage_validate", "secret", "method", "params"} -> {"valid"}

Twilio: PyPI `twilio` (twilio.request_validator.RequestValidator). Sinch: PyPI `sinch`
(SmsSinchEvent.validate_authentication_header and its authentication_validation helpers).
Vonage: PyPI `vonage-http-client` (Auth.sign_params / check_signature) for the HMAC methods,
and PyPI `nexmo` (Client.signature / check_signature, signature_method None) for `md5hash`,
which the current SDK no longer computes.
"""

import json
import sys

from twilio.request_validator import RequestValidator
from sinch.domains.sms.sinch_events.v1.sms_sinch_event import SmsSinchEvent
from sinch.domains.authentication.sinch_events.v1.authentication_validation import (
    calculate_sinch_event_signature,
    compute_signed_data,
)
from vonage_http_client.auth import Auth
import nexmo


def vonage(secret, method):
    if method == "md5hash":
        return nexmo.Client(key="k", secret="s", signature_secret=secret, signature_method=None)
    return Auth(api_key="k", signature_secret=secret, signature_method=method)


def answer(request):
    op = request["op"]
    if op == "twilio_sign":
        params = request.get("params")
        return {
            "signature": RequestValidator(request["secret"]).compute_signature(
                request["url"], params, request.get("algorithm")
            )
        }
    if op == "twilio_validate":
        params = request["params"] if "params" in request else request["body"]
        return {
            "valid": RequestValidator(request["secret"]).validate(
                request["url"], params, request["signature"], request.get("algorithm")
            )
        }
    if op == "sinch_sign":
        signed = compute_signed_data(request["body"], request["nonce"], str(request["timestamp"]))
        return {"signature": calculate_sinch_event_signature(signed, request["secret"])}
    if op == "sinch_validate":
        event = SmsSinchEvent(request["secret"])
        return {"valid": event.validate_authentication_header(request["headers"], request["body"])}
    if op == "vonage_sign":
        client = vonage(request["secret"], request["method"])
        params = dict(request["params"])
        if request["method"] == "md5hash":
            return {"signature": client.signature(params)}
        return {"signature": client.sign_params(params)}
    if op == "vonage_validate":
        return {"valid": vonage(request["secret"], request["method"]).check_signature(dict(request["params"]))}
    raise ValueError(f"unknown op {op}")


for line in sys.stdin:
    print(json.dumps(answer(json.loads(line))), flush=True)
