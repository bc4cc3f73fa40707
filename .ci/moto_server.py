"""moto's S3 server with atomic conditional writes.

moto 5.2 checks `If-None-Match: *` and `If-Match` and then stores the object in
separate steps, on the threads of a threaded HTTP server, so two racing PUTs of
one key can both pass the check and both succeed (seen in CI: two appends of
one log record, each told it won). Real S3 decides a conditional PUT
atomically; the registry's create-if-absent appends and its concurrency tests
rely on that. This wrapper serializes moto's PutObject and CopyObject, and the POSTs to a key
(CompleteMultipartUpload, which takes the same headers), behind one lock, so the
server tests run against S3's semantics, then starts moto's own server.

Usage: python .ci/moto_server.py -H 127.0.0.1 -p PORT  (moto_server's flags)
"""

import sys
import threading

from moto.s3.responses import S3Response
from moto.server import main

_LOCK = threading.Lock()


def _atomic(method):
    def wrapped(self, *args, **kwargs):
        with _LOCK:
            return method(self, *args, **kwargs)

    wrapped.__name__ = method.__name__
    wrapped.__doc__ = method.__doc__
    return wrapped


for _name in ("put_object", "copy_object", "_key_response_post"):
    _method = getattr(S3Response, _name, None)
    if _method is None:
        sys.exit(f"moto_server.py: moto's S3Response has no {_name}; update the wrapper")
    setattr(S3Response, _name, _atomic(_method))

if __name__ == "__main__":
    sys.exit(main())
