"""The email providers' own SDKs (and, where a provider has none, independent code) checking what
the sandbox signs and signing what Postbud must verify. Used by provider_sdks.rs.

    sendgrid-verify PUBLIC_KEY SIGNATURE TIMESTAMP < body     sendgrid's EventWebhook
    sendgrid-sign < body                                       cryptography, as SendGrid signs
    sns-verify CA_FILE CERT_URL_REGEX < message                aws-sns-message-validator (v1), cryptography (v2)
    sns-sign VERSION KEY_FILE CERT_URL < fields                cryptography, AWS's canonical string
    mailgun-verify KEY TOKEN TIMESTAMP SIGNATURE               mailgun's SecurityGuard.verify_webhook
    mailgun-sign KEY < event-data                              hmac, as Mailgun's documentation signs
    postmark-post URL < record                                 requests, credentials in the URL
"""

import base64
import json
import os
import secrets
import ssl
import sys
import time
import urllib.request


def sendgrid_verify(public_key, signature, timestamp):
    from sendgrid.helpers.eventwebhook import EventWebhook

    body = sys.stdin.buffer.read().decode("utf-8")
    hook = EventWebhook()
    key = hook.convert_public_key_to_ecdsa(public_key)
    print("valid" if hook.verify_signature(body, signature, timestamp, key) else "invalid")


def sendgrid_sign():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    body = sys.stdin.buffer.read()
    key = ec.generate_private_key(ec.SECP256R1())
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    print(json.dumps({
        "public_key": base64.b64encode(public).decode(),
        "signature": base64.b64encode(signature).decode(),
        "timestamp": timestamp,
    }))


def canonical(message):
    """AWS's string to sign: `Key\\nValue\\n` for each present key, in this order."""
    if message["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{k}\n{message[k]}\n" for k in keys if message.get(k) is not None)


def sns_verify(ca_file, cert_url_regex):
    message = json.loads(sys.stdin.read())
    if message["SignatureVersion"] == "1":
        # The validator fetches the certificate with requests, which trusts this CA bundle.
        os.environ["REQUESTS_CA_BUNDLE"] = ca_file
        from sns_message_validator import SNSMessageValidator

        try:
            SNSMessageValidator(cert_url_regex=cert_url_regex).validate_message(message)
            print("valid")
        except Exception as e:  # the validator's exceptions say why
            print(f"invalid: {type(e).__name__}: {e}")
        return
    # Version 2 (SHA256withRSA): the validator knows only version 1; cryptography checks it.
    import re

    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    if not re.search(cert_url_regex, message["SigningCertURL"]):
        print("invalid: certificate URL")
        return
    context = ssl.create_default_context(cafile=ca_file)
    with urllib.request.urlopen(message["SigningCertURL"], context=context) as response:
        certificate = x509.load_pem_x509_certificate(response.read())
    try:
        certificate.public_key().verify(
            base64.b64decode(message["Signature"]),
            canonical(message).encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
        print("valid")
    except InvalidSignature:
        print("invalid: signature")


def sns_sign(version, key_file, cert_url):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    message = json.loads(sys.stdin.read())
    with open(key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(canonical(message).encode(), padding.PKCS1v15(), digest)
    message.update({
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": cert_url,
    })
    print(json.dumps(message))


def mailgun_verify(key, token, timestamp, signature):
    from mailgun.security import SecurityGuard

    print("valid" if SecurityGuard.verify_webhook(key, token, timestamp, signature) else "invalid")


def mailgun_sign(key):
    import hashlib
    import hmac

    event = json.loads(sys.stdin.read())
    timestamp = str(int(time.time()))
    token = secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    print(json.dumps({
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }))


def postmark_post(url):
    import requests

    response = requests.post(url, data=sys.stdin.buffer.read(),
                             headers={"Content-Type": "application/json"}, timeout=20)
    print(response.status_code)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {
        "sendgrid-verify": sendgrid_verify,
        "sendgrid-sign": sendgrid_sign,
        "sns-verify": sns_verify,
        "sns-sign": sns_sign,
        "mailgun-verify": mailgun_verify,
        "mailgun-sign": mailgun_sign,
        "postmark-post": postmark_post,
    }[command](*args)
