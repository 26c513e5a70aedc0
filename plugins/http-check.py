#!/usr/bin/env python3
"""untoil plugin: HTTP health check, with retries.

Speaks the untoil plugin protocol, version 1 (docs/plugins.md): reads one JSON object on
stdin, writes one JSON result object on stdout. Python 3 standard library only.

Inputs (`with:`):
  url               required  http:// or https:// URL to check
  method            GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS
  expect_status     status code or list of codes that count as healthy; default any 2xx
  contains          text the response body must contain
  timeout_seconds   per-attempt timeout (default 10)
  attempts          how many times to try before giving up (default 1)
  interval_seconds  wait between attempts (default 2)
Outputs:
  http_status  status of the last response (null when no response came)
  latency_ms   duration of the last attempt, in milliseconds
  attempts     attempts made

Redirects are followed; the standard http_proxy / https_proxy / no_proxy variables apply.
Messages show the URL without its query string and credentials.
"""

import os
import re
import sys
import time
import urllib.parse

# The shared protocol helpers live next to this file (untoil_plugin.py, not a plugin).
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
sys.dont_write_bytecode = True  # leave no __pycache__ in the plugins directory
from untoil_plugin import (  # noqa: E402
    InputError,
    RequestFailed,
    TIMEOUT_SECONDS,
    add_secret,
    body_snippet,
    check_unknown,
    choice_input,
    finish,
    http_request,
    int_input,
    log,
    number_input,
    read_request,
    run,
    setup,
    shown,
    string_input,
    url_input,
)

setup("http-check", max_body=1024 * 1024)


# --- the plugin ------------------------------------------------------------------------------

INPUTS = [
    "url",
    "method",
    "expect_status",
    "contains",
    "timeout_seconds",
    "attempts",
    "interval_seconds",
]
METHODS = ("get", "head", "post", "put", "patch", "delete", "options")
MAX_ATTEMPTS = 100


def status_input(with_):
    """None (any 2xx) or a list of codes; accepts 200, "200", [200, "204"], "200, 204"."""
    value = with_.get("expect_status")
    if value is None or value == "" or value == []:
        return None
    items = value if isinstance(value, list) else [value]
    codes = []
    for item in items:
        if isinstance(item, str):
            words = [w for w in re.split(r"[\s,]+", item) if w]
        else:
            words = [item]
        for word in words:
            code = None
            if isinstance(word, int) and not isinstance(word, bool):
                code = word
            elif isinstance(word, float) and word == int(word):
                code = int(word)
            elif isinstance(word, str) and re.fullmatch(r"[0-9]{1,3}", word):
                code = int(word)
            if code is None or not 100 <= code <= 599:
                raise InputError(
                    "input `expect_status` must be a status code 100-599 or a list of them, "
                    f"got {shown(value)}"
                )
            codes.append(code)
    return sorted(set(codes))


def shown_url(url):
    """The URL without credentials and query string, which may carry tokens."""
    parts = urllib.parse.urlsplit(url)
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}{query}"


def main():
    request, with_ = read_request()
    check_unknown(with_, INPUTS)
    url = url_input(with_, "url", required=True)
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        add_secret(parts.password or "")
        raise InputError("input `url` must not contain credentials (user:password@)")
    method = choice_input(with_, "method", METHODS, default="get").upper()
    expect = status_input(with_)
    contains = string_input(with_, "contains")
    timeout = number_input(with_, "timeout_seconds", TIMEOUT_SECONDS, minimum=0, exclusive=True)
    attempts = int_input(with_, "attempts", 1, 1, MAX_ATTEMPTS)
    interval = number_input(with_, "interval_seconds", 2, minimum=0)
    if contains is not None and method == "HEAD":
        raise InputError("input `contains` cannot be checked with method HEAD: it has no body")
    expected = "2xx" if expect is None else " or ".join(str(c) for c in expect)
    target = f"{method} {shown_url(url)}"
    if request.get("dry_run") is True:
        finish(
            "succeeded",
            f"dry run: would check {target}, expecting {expected}",
            {"http_status": None, "latency_ms": 0, "attempts": 0},
        )

    status = None
    latency_ms = 0
    problem = ""
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        try:
            status, data, _headers = http_request(method, url, timeout)
            problem = None
        except RequestFailed as e:
            status, data, problem = None, b"", str(e)
        latency_ms = round((time.monotonic() - started) * 1000)
        if problem is None:
            ok = 200 <= status < 300 if expect is None else status in expect
            body = data.decode("utf-8", "replace")
            if not ok:
                snippet = body_snippet(data, 100)
                problem = f"HTTP {status}, expected {expected}" + (
                    f": {snippet}" if snippet else ""
                )
            elif contains is not None and contains not in body:
                problem = f"HTTP {status}, but the body does not contain {shown(contains)}"
        outputs = {"http_status": status, "latency_ms": latency_ms, "attempts": attempt}
        if problem is None:
            tries = f" on attempt {attempt}" if attempt > 1 else ""
            finish("succeeded", f"{target}: HTTP {status} in {latency_ms} ms{tries}", outputs)
        log(f"attempt {attempt}/{attempts}: {target}: {problem}")
        if attempt < attempts:
            time.sleep(interval)

    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    finish(
        "failed",
        f"{target}: {problem}{tries}",
        {"http_status": status, "latency_ms": latency_ms, "attempts": attempts},
    )


if __name__ == "__main__":
    run(main)
