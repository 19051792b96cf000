#!/usr/bin/env python3
"""Fetch an account's avatar (XEP-0084, else its vCard photo) and save it as an image file.

    python samples/display_avatar.py --jid bob@localhost --password password \
        --host 127.0.0.1 --port 5222 --ca-file certs/localhost.crt alice@localhost alice

The file name's extension comes from the image's content type (``alice`` -> ``alice.png``);
the path written is printed. Exits with status 1 when the account has no avatar we may see
(PEP avatars are usually visible to contacts only).
"""

import mimetypes
import sys
from pathlib import Path

from _common import client_from, parser

# mimetypes knows these on every platform, but picks odd extensions for some (.jpe).
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
               "image/webp": ".webp", "image/svg+xml": ".svg", "image/bmp": ".bmp"}


def extension_for(content_type: str) -> str:
    """The file extension for a MIME type (``.bin`` when unknown)."""
    base = content_type.split(";")[0].strip().lower()
    return _EXTENSIONS.get(base) or mimetypes.guess_extension(base) or ".bin"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("account", help="whose avatar to fetch (bare JID)")
    p.add_argument("path", help="where to save it; the extension is set from the image type")
    p.add_argument("--no-vcard", action="store_true",
                   help="do not fall back to the vCard photo (XEP-0153)")
    args = p.parse_args()
    with client_from(args) as client:
        image = client.avatar.fetch(args.account, vcard_fallback=not args.no_vcard)
    if image is None:
        print(f"{args.account} has no avatar we can see", file=sys.stderr)
        sys.exit(1)
    path = Path(args.path)
    path = path.with_suffix(extension_for(image.content_type)) if path.name else path
    path.write_bytes(image.data)
    print(path)


if __name__ == "__main__":
    main()
