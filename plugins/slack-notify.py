#!/usr/bin/env python3
"""untoil plugin: post a message to a Slack or Mattermost incoming webhook.

Speaks the untoil plugin protocol, version 1 (docs/plugins.md): reads one JSON object on
stdin, writes one JSON result object on stdout. Python 3 standard library only.

Inputs (`with:`):
  webhook_url  required  incoming webhook URL (a secret: never printed)
  text         required  message text (Slack mrkdwn / Mattermost markdown)
  channel      optional  channel override, e.g. "#ops" (if the webhook allows it)
  username     optional  display name override
  icon_emoji   optional  icon override, e.g. ":robot_face:"
Outputs:
  http_status  HTTP status of the webhook's response

Try it by hand:
  echo '{"protocol": 1, "with": {"webhook_url": "https://hooks.slack.com/services/...",
         "text": "hello"}}' | ./slack-notify.py
"""

import json
import os
import sys

# The shared protocol helpers live next to this file (untoil_plugin.py, not a plugin).
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
sys.dont_write_bytecode = True  # leave no __pycache__ in the plugins directory
from untoil_plugin import (  # noqa: E402
    RequestFailed,
    TIMEOUT_SECONDS,
    body_snippet,
    check_unknown,
    describe_url,
    finish,
    http_request,
    log,
    read_request,
    run,
    setup,
    string_input,
    url_input,
)

setup("slack-notify")


# --- the plugin ------------------------------------------------------------------------------

INPUTS = ["webhook_url", "text", "channel", "username", "icon_emoji"]


def main():
    request, with_ = read_request()
    # The secret first, so that nothing below can print it.
    webhook_url = url_input(with_, "webhook_url", required=True, secret=True)
    check_unknown(with_, INPUTS)
    payload = {"text": string_input(with_, "text", required=True)}
    for name in ("channel", "username", "icon_emoji"):
        value = string_input(with_, name)
        if value is not None:
            payload[name] = value

    where = describe_url(webhook_url)
    if request.get("dry_run") is True:
        log(f"dry run: would POST {json.dumps(payload, ensure_ascii=False)} to {where}/…")
        finish("succeeded", f"dry run: nothing posted to {where}", {"http_status": None})
    log(f"POST {where}/… ({len(payload['text'])} characters of text)")
    try:
        status, data, _headers = http_request(
            "POST",
            webhook_url,
            TIMEOUT_SECONDS,
            body=json.dumps(payload).encode("utf-8"),
            headers={"Content-Type": "application/json"},
        )
    except RequestFailed as e:
        finish("failed", f"webhook at {where} not reached: {e}", {"http_status": None})

    snippet = body_snippet(data)
    if 200 <= status < 300:
        finish("succeeded", f"posted to {where} (HTTP {status})", {"http_status": status})
    log(f"HTTP {status}: {snippet}")
    finish(
        "failed",
        f"webhook at {where} returned HTTP {status}" + (f": {snippet}" if snippet else ""),
        {"http_status": status},
    )


if __name__ == "__main__":
    run(main)
