"""Shared helpers of the plugins shipped with untoil (docs/plugins.md), protocol version 1.

Not a plugin: this file is not executable, so untoil's plugin discovery passes it over. Each
plugin in this directory imports it (Python 3 standard library only):

    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
    from untoil_plugin import ...
    setup("my-plugin")

It reads the JSON request on stdin, checks the protocol version and the `with:` inputs, masks
secrets in every message, log line and output, makes HTTP requests, and writes the JSON result
on stdout (exit 0), or explains a protocol violation on stderr (exit 2).
"""

import json
import re
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

PROTOCOL = 1
TIMEOUT_SECONDS = 10
MASK = "***"

# Set by setup(): the plugin's name (in messages, log lines and the User-Agent) and the most
# bytes of an HTTP response body that are read.
NAME = "untoil-plugin"
MAX_BODY = 64 * 1024

_secrets = []


def setup(name, max_body=64 * 1024):
    """Names the plugin; call it once, before anything else."""
    global NAME, MAX_BODY
    NAME = name
    MAX_BODY = max_body


# --- protocol helpers -------------------------------------------------------------------------


class InputError(Exception):
    """A bad `with:` input: reported as a failed step, not a traceback."""


def add_secret(value):
    """Masks `value` in every message, log line and output from now on."""
    if isinstance(value, str) and len(value) >= 4 and value not in _secrets:
        _secrets.append(value)
        _secrets.sort(key=len, reverse=True)


def redact(text):
    text = str(text)
    for s in _secrets:
        text = text.replace(s, MASK)
    return text


def redact_json(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    if isinstance(value, dict):
        return {redact(k): redact_json(v) for k, v in value.items()}
    return value


def log(message):
    print(f"{NAME}: {redact(message)}", file=sys.stderr, flush=True)


def one_line(text, limit=500):
    text = re.sub(r"\s+", " ", redact(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value, limit=100):
    """A value as JSON, for messages."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def finish(status, message, outputs=None):
    result = {"status": status, "message": one_line(message)}
    if outputs is not None:
        result["outputs"] = redact_json(outputs)
    sys.stdout.buffer.write((json.dumps(result, ensure_ascii=False) + "\n").encode("utf-8"))
    sys.stdout.flush()
    sys.exit(0)


def misuse(message):
    """The caller broke the protocol: no result can be written."""
    print(f"{NAME}: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def read_request():
    if sys.stdin.isatty():
        misuse(
            "this is an untoil plugin: it reads one JSON object on stdin "
            "(see docs/plugins.md), e.g. "
            'echo \'{"protocol": 1, "with": {...}}\' | ' + sys.argv[0]
        )
    raw = sys.stdin.read()
    try:
        request = json.loads(raw)
    except ValueError as e:
        misuse(f"stdin is not JSON ({e}); expected one untoil plugin request object")
    if not isinstance(request, dict):
        misuse(f"stdin is a JSON {type(request).__name__}, expected an object")
    if request.get("protocol") != PROTOCOL:
        misuse(
            f"unsupported protocol version {shown(request.get('protocol'))}; "
            f"this plugin speaks version {PROTOCOL}"
        )
    with_ = request.get("with")
    if with_ is None:
        with_ = {}
    if not isinstance(with_, dict):
        finish("failed", "`with` must be a mapping of inputs")
    return request, with_


def json_type(value):
    return {
        dict: "a mapping",
        list: "a list",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def string_input(with_, name, required=False, default=None):
    """A string input; numbers are accepted and converted, "" counts as not set."""
    value = with_.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if value is not None and not isinstance(value, str):
        raise InputError(f"input `{name}` must be a string, not {json_type(value)}")
    if value is None or value.strip() == "":
        if required:
            raise InputError(
                f"input `{name}` is required"
                + (" but empty" if value is not None else "")
            )
        return default
    return value


def choice_input(with_, name, choices, default):
    """One of `choices` (case-insensitive)."""
    value = string_input(with_, name, default=default)
    if value.strip().lower() not in choices:
        raise InputError(
            f"input `{name}` must be one of {', '.join(choices)}, got {shown(value)}"
        )
    return value.strip().lower()


def number_input(with_, name, default, minimum=None, exclusive=False):
    """A finite number (numeric strings, i.e. rendered templates, are accepted)."""
    value = with_.get(name)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return default
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
    if number is None or number != number or abs(number) == float("inf"):
        raise InputError(f"input `{name}` must be a number, got {shown(value)}")
    if minimum is not None and (number < minimum or (exclusive and number == minimum)):
        bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
        raise InputError(f"input `{name}` must be a number {bound}, got {shown(value)}")
    return number


def int_input(with_, name, default, minimum, maximum):
    """A whole number in [minimum, maximum]; numeric strings are accepted."""
    try:
        value = number_input(with_, name, default)
    except InputError:
        value = None
    if value is None or value != int(value) or not minimum <= value <= maximum:
        raise InputError(
            f"input `{name}` must be a whole number from {minimum} to {maximum}, "
            f"got {shown(with_.get(name))}"
        )
    return int(value)


def url_input(with_, name, required=False, default=None, secret=False):
    value = string_input(with_, name, required=required, default=default)
    if value is None:
        return None
    value = value.strip()
    if secret:
        add_secret(value)
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = "(redacted)" if secret else repr(value)
        raise InputError(f"input `{name}` must be an http:// or https:// URL, got {shown}")
    if secret:
        # Webhook URLs carry their secret in the path and query.
        add_secret(parts.path + (("?" + parts.query) if parts.query else ""))
        add_secret(parts.path.rstrip("/").rsplit("/", 1)[-1])
    return value


def check_unknown(with_, known):
    unknown = sorted(set(with_) - set(known))
    if unknown:
        raise InputError(
            "unknown input(s) "
            + ", ".join(f"`{u}`" for u in unknown)
            + "; this plugin takes "
            + ", ".join(f"`{k}`" for k in known)
        )


def describe_url(url):
    """scheme://host[:port] only: paths and queries of webhooks are secret."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


class RequestFailed(Exception):
    """The request got no HTTP response."""


def describe_reason(reason, timeout):
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g}s"
    if isinstance(reason, socket.gaierror):
        return "could not resolve the host name"
    if isinstance(reason, ssl.SSLError):
        detail = getattr(reason, "verify_message", None) or getattr(reason, "reason", None)
        return f"TLS error: {detail or reason}"
    return str(reason) or type(reason).__name__


def http_request(method, url, timeout, body=None, headers=None):
    """Returns (status, body bytes, headers); HTTP errors are responses too."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    request.add_header("User-Agent", f"untoil-{NAME}/1")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(MAX_BODY), response.headers
    except urllib.error.HTTPError as e:
        try:
            data = e.read(MAX_BODY)
        except Exception:  # the error body is best effort
            data = b""
        return e.code, data, e.headers
    except urllib.error.URLError as e:
        raise RequestFailed(describe_reason(e.reason, timeout)) from None
    except (OSError, ValueError, urllib.error.ContentTooShortError) as e:
        raise RequestFailed(describe_reason(e, timeout)) from None
    except Exception as e:  # http.client.HTTPException and friends
        raise RequestFailed(f"{type(e).__name__}: {e}") from None


def body_snippet(data, limit=200):
    text = data.decode("utf-8", "replace").strip()
    return one_line(text, limit) if text else ""


def run(main):
    try:
        main()
    except InputError as e:
        finish("failed", str(e))
    except Exception as e:
        log(f"internal error: {type(e).__name__}: {e}")
        finish("failed", f"{NAME} internal error: {type(e).__name__}: {e}")
