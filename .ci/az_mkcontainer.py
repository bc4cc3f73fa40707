#!/usr/bin/env python3
"""Create a blob container on Azurite, signed with the emulator's well-known
SharedKey (object_store has no create-container call). Standard library only.

usage: az_mkcontainer.py NAME [BLOB_URL]   (BLOB_URL defaults to http://127.0.0.1:10000)
An existing container is success."""
import base64
import hashlib
import hmac
import sys
import urllib.error
import urllib.request
from email.utils import formatdate

ACCOUNT = "devstoreaccount1"
# Azurite's documented development key; not a secret.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
VERSION = "2021-08-06"


def main() -> int:
    name = sys.argv[1]
    base = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:10000"
    date = formatdate(usegmt=True)
    # urllib would otherwise add a form content type that the signature does not cover.
    content_type = "application/octet-stream"
    string_to_sign = (
        "PUT\n" + "\n" * 4 + content_type + "\n" * 7
        + f"x-ms-date:{date}\nx-ms-version:{VERSION}\n"
        + f"/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
    )
    signature = base64.b64encode(
        hmac.new(base64.b64decode(KEY), string_to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    request = urllib.request.Request(
        f"{base}/{ACCOUNT}/{name}?restype=container",
        method="PUT",
        data=b"",
        headers={
            "Content-Type": content_type,
            "x-ms-date": date,
            "x-ms-version": VERSION,
            "Authorization": f"SharedKey {ACCOUNT}:{signature}",
        },
    )
    try:
        print(urllib.request.urlopen(request, timeout=10).status)
    except urllib.error.HTTPError as e:
        if e.code == 409:  # ContainerAlreadyExists
            print("409 exists")
        else:
            print(e.code, e.read().decode(), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
