#!/usr/bin/env python3
"""untoil plugin: send an event to PagerDuty (Events API v2).

Speaks the untoil plugin protocol, version 1 (docs/plugins.md): reads one JSON object on
stdin, writes one JSON result object on stdout. Python 3 standard library only.

Inputs (`with:`):
  routing_key  required  integration key of the service's Events API v2 integration (secret)
  summary      required for trigger: what is wrong (at most 1024 characters are sent)
  action       trigger (default), acknowledge or resolve
  severity     critical, error (default), warning or info
  source       affected host or system; default: the alert's `instance` label, else this host
  dedup_key    incident key; default: the alert's fingerprint (required to ack/resolve
               when the run has no alert)
  component, group, class  optional PagerDuty payload fields
  links        list of URLs or {"href": ..., "text": ...} mappings
  url          events endpoint; default https://events.pagerduty.com/v2/enqueue
Outputs:
  dedup_key    the incident key (PagerDuty's when it returns one)
  http_status  HTTP status of PagerDuty's response

custom_details carry the alert's labels and annotations (when the run has an alert) and the
runbook, run id and step.
"""

import json
import os
import re
import socket
import sys

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
    describe_url,
    finish,
    http_request,
    json_type,
    log,
    one_line,
    read_request,
    run,
    setup,
    string_input,
    url_input,
)

setup("pagerduty-event")


# --- the plugin ------------------------------------------------------------------------------

INPUTS = [
    "routing_key",
    "summary",
    "action",
    "severity",
    "source",
    "dedup_key",
    "component",
    "group",
    "class",
    "links",
    "url",
]
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255


def mapping(value):
    return value if isinstance(value, dict) else {}


def links_input(with_):
    value = with_.get("links")
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        raise InputError(f"input `links` must be a list, not {json_type(value)}")
    links = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item.strip():
            links.append({"href": item.strip()})
        elif (
            isinstance(item, dict)
            and isinstance(item.get("href"), str)
            and item["href"].strip()
            and set(item) <= {"href", "text"}
            and isinstance(item.get("text", ""), str)
        ):
            link = {"href": item["href"].strip()}
            if item.get("text"):
                link["text"] = item["text"]
            links.append(link)
        else:
            raise InputError(
                f"input `links[{i}]` must be a URL or a mapping with `href` and optional `text`"
            )
    return links


def main():
    request, with_ = read_request()
    # The secret first, so that nothing below can print it.
    routing_key = string_input(with_, "routing_key", required=True).strip()
    add_secret(routing_key)
    if re.search(r"\s", routing_key):
        raise InputError("input `routing_key` must not contain whitespace")
    check_unknown(with_, INPUTS)
    action = choice_input(with_, "action", ACTIONS, default="trigger")
    severity = choice_input(with_, "severity", SEVERITIES, default="error")
    url = url_input(with_, "url", default=DEFAULT_URL)
    links = links_input(with_)
    alert = mapping(request.get("alert"))
    run_info = mapping(request.get("run"))
    labels = mapping(alert.get("labels"))
    annotations = mapping(alert.get("annotations"))

    dedup_key = string_input(with_, "dedup_key")
    if dedup_key is None and isinstance(alert.get("fingerprint"), str) and alert["fingerprint"]:
        dedup_key = alert["fingerprint"]
    if dedup_key is not None and len(dedup_key) > MAX_DEDUP_KEY:
        raise InputError(f"input `dedup_key` is longer than {MAX_DEDUP_KEY} characters")

    event = {"routing_key": routing_key, "event_action": action}
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    if action == "trigger":
        summary = string_input(with_, "summary")
        if summary is None:
            raise InputError("input `summary` is required for action `trigger`")
        summary = one_line(summary, MAX_SUMMARY)
        source = string_input(with_, "source")
        if source is None:
            instance = labels.get("instance")
            source = instance if isinstance(instance, str) and instance else socket.gethostname()
        payload = {"summary": summary, "source": source, "severity": severity}
        if isinstance(alert.get("startsAt"), str) and alert["startsAt"]:
            payload["timestamp"] = alert["startsAt"]
        for name in ("component", "group", "class"):
            value = string_input(with_, name)
            if value is not None:
                payload[name] = value
        details = {}
        for key, field in (("runbook", "runbook"), ("run_id", "id"), ("run_cause", "cause")):
            if run_info.get(field):
                details[key] = run_info[field]
        if isinstance(request.get("step"), str):
            details["step"] = request["step"]
        if alert:
            details["alert_status"] = alert.get("status")
            details["labels"] = labels
            details["annotations"] = annotations
        payload["custom_details"] = details
        event["payload"] = payload
        event["client"] = "untoil"
        if isinstance(alert.get("generatorURL"), str) and alert["generatorURL"]:
            event["client_url"] = alert["generatorURL"]
        if links:
            event["links"] = links
    elif dedup_key is None:
        raise InputError(
            f"action `{action}` needs `dedup_key`: set it, or run from an alert to use "
            "the alert's fingerprint"
        )

    where = describe_url(url)
    if request.get("dry_run") is True:
        log(f"dry run: would POST {json.dumps(event, ensure_ascii=False)} to {where}")
        finish(
            "succeeded",
            f"dry run: no {action} event sent to {where}",
            {"dedup_key": dedup_key, "http_status": None},
        )
    log(f"{action} event to {where}" + (f", dedup_key {dedup_key}" if dedup_key else ""))
    try:
        status, data, _headers = http_request(
            "POST",
            url,
            TIMEOUT_SECONDS,
            body=json.dumps(event).encode("utf-8"),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
    except RequestFailed as e:
        finish(
            "failed",
            f"PagerDuty events endpoint {where} not reached: {e}",
            {"dedup_key": dedup_key, "http_status": None},
        )

    try:
        response = mapping(json.loads(data.decode("utf-8")))
    except ValueError:
        response = {}
    if isinstance(response.get("dedup_key"), str) and response["dedup_key"]:
        dedup_key = response["dedup_key"]
    outputs = {"dedup_key": dedup_key, "http_status": status}
    if 200 <= status < 300:
        finish(
            "succeeded",
            f"PagerDuty accepted the {action} event (HTTP {status}, dedup_key {dedup_key})",
            outputs,
        )

    detail = ""
    if response:
        parts = [str(response.get("message") or response.get("status") or "")]
        errors = response.get("errors")
        if isinstance(errors, list):
            parts += [str(e) for e in errors]
        detail = "; ".join(p for p in parts if p)
    if not detail:
        detail = body_snippet(data)
    log(f"HTTP {status}: {detail}")
    reason = {
        400: "PagerDuty rejected the event",
        429: "PagerDuty rate-limited the event (retry later, e.g. with step retries)",
    }.get(status, f"PagerDuty events endpoint {where} failed")
    finish(
        "failed",
        f"{reason} (HTTP {status})" + (f": {detail}" if detail else ""),
        outputs,
    )


if __name__ == "__main__":
    run(main)
