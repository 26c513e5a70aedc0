#!/usr/bin/env python3
"""Writes the malformed-input corpus of tests/bad_input.rs (run once; the output is committed).

runbooks/: every file must be rejected with at least one error diagnostic.
webhooks/: every body must be rejected by Notification::from_json, except `ok-*.json`.

Inputs of several MB (a 5 MB runbook, a 1 MiB label, 10,000 alerts in one body) are generated
by the tests instead, to keep the committed corpus small.
"""

import json
import os

ROOT = os.path.dirname(os.path.abspath(__file__))
RB = os.path.join(ROOT, "runbooks")
WH = os.path.join(ROOT, "webhooks")


def write(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


GOOD_RUNBOOK = """\
name: disk-cleanup
description: Frees disk space on a database host
owner: team-storage
toil:
  manual_minutes: 15
triggers:
  - schedule: "0 3 * * *"
    timezone: Europe/Berlin
steps:
  - name: usage
    run: df -h /var/lib/postgresql
  - name: clean
    run: find /tmp -mtime +7 -delete
"""

# --- runbooks --------------------------------------------------------------------------------

write(RB, "empty.yaml", "")
write(RB, "only-comments.yaml", "# nothing here\n\n   \n# still nothing\n")
write(RB, "only-document-markers.yaml", "---\n...\n")
write(RB, "scalar.yaml", "just a string\n")
write(RB, "number.yaml", "42\n")
write(RB, "list.yaml", "- name: a\n  owner: x\n- name: b\n  owner: y\n")
write(RB, "tagged-root.yaml", "!runbook\nname: x\nowner: y\n")
write(RB, "truncated-quote.yaml", GOOD_RUNBOOK[: GOOD_RUNBOOK.index('"0 3') + 5])
write(RB, "truncated-flow.yaml", "name: x\nowner: y\ntags: [a, b, {c: [d, \n")
write(RB, "tabs-indentation.yaml", GOOD_RUNBOOK.replace("\n  ", "\n\t"))
write(RB, "tab-after-dash.yaml", "name: x\nowner: y\nsteps:\n  -\tname: a\n  \t run: echo\n")
write(RB, "duplicate-keys.yaml", GOOD_RUNBOOK + "owner: team-other\nname: disk-cleanup-2\n")
write(
    RB,
    "duplicate-keys-nested.yaml",
    GOOD_RUNBOOK.replace("    run: df -h", "    run: echo\n    run: df -h"),
)
write(RB, "bom.yaml", b"\xef\xbb\xbf" + GOOD_RUNBOOK.replace("name: disk-cleanup", "name: Disk_Cleanup").encode())
write(RB, "bom-twice.yaml", b"\xef\xbb\xbf\xef\xbb\xbf" + GOOD_RUNBOOK.encode())
write(RB, "crlf.yaml", (GOOD_RUNBOOK + "nmae: typo\n").replace("\n", "\r\n"))
write(RB, "cr-only.yaml", (GOOD_RUNBOOK + "nmae: typo\n").replace("\n", "\r"))
write(RB, "multiple-documents.yaml", GOOD_RUNBOOK + "---\n" + GOOD_RUNBOOK.replace("disk-cleanup", "disk-cleanup-2"))
write(RB, "document-end-then-garbage.yaml", GOOD_RUNBOOK + "...\ngarbage: [\n")
write(RB, "invalid-utf8.yaml", GOOD_RUNBOOK.encode().replace(b"Frees disk", b"Frees \xff\xfe disk"))
write(RB, "invalid-utf8-truncated-sequence.yaml", b"name: caf\xc3\nowner: x\n")
write(RB, "latin1.yaml", "name: x\nowner: équipe\n".encode("latin-1"))
write(RB, "utf16.yaml", GOOD_RUNBOOK.encode("utf-16"))
write(RB, "nul-byte.yaml", GOOD_RUNBOOK.replace("Frees disk", "Frees\x00disk"))
write(RB, "control-characters.yaml", GOOD_RUNBOOK.replace("Frees disk", "Frees\x07\x1b[31mdisk"))
write(RB, "bad-escape.yaml", GOOD_RUNBOOK.replace('"0 3 * * *"', '"0 3 \\q * *"'))

depth = 10_000
write(
    RB,
    "nested-10k-flow-sequences.yaml",
    "name: deep\nowner: x\nsteps:\n  - name: a\n    plugin: notify\n    with: "
    + "[" * depth
    + "]" * depth
    + "\n",
)
write(
    RB,
    "nested-100-block-mappings.yaml",
    "name: deep\nowner: x\nsteps:\n  - name: a\n    plugin: notify\n    with:\n"
    + "".join("  " * (i + 3) + "k:\n" for i in range(100))
    + "  " * 103
    + "v\n",
)

# "Billion laughs": 9 levels of 9 aliases each, 9^9 strings once expanded.
laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
for prev, cur in zip("abcdefgh", "bcdefghi"):
    laughs.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
write(RB, "billion-laughs.yaml", "\n".join(laughs) + "\n")
write(
    RB,
    "billion-laughs-in-with.yaml",
    "name: lol\nowner: x\nsteps:\n  - name: a\n    plugin: notify\n    with:\n"
    + "".join(f"      {l}\n" for l in laughs),
)
merges = ["base: &m0 {a: 1, b: 2, c: 3}"]
for i in range(1, 12):
    merges.append(f"m{i}: &m{i} {{<<: [*m{i-1}, *m{i-1}, *m{i-1}, *m{i-1}], k{i}: {i}}}")
write(RB, "merge-key-bomb.yaml", "name: merge\nowner: x\n" + "\n".join(merges) + "\n")
write(RB, "merge-key-scalar.yaml", "name: merge\nowner: x\n<<: 5\n")
write(RB, "undefined-alias.yaml", "name: x\nowner: *nosuch\n")
write(RB, "alias-as-key.yaml", "name: &n x\nowner: y\n*n : z\n")
write(RB, "recursive-alias.yaml", "name: x\nowner: y\ntags: &t [a, *t]\n")
write(RB, "complex-key.yaml", "? [name, owner]\n: x\n")
write(RB, "binary-tag.yaml", "name: !!binary aGVsbG8=\nowner: !custom x\nsteps: !!str nope\n")

write(
    RB,
    "wrong-types.yaml",
    "name: [not, a, string]\nowner: {a: b}\ntags: 5\ntoil: lots\ntriggers: {schedule: daily}\n"
    "guards: [concurrency]\nparams: [x]\nenv: HOME\nsecrets: true\nverify: 15m\nsteps: run it\n",
)
write(
    RB,
    "wrong-types-in-steps.yaml",
    "name: x\nowner: y\nsteps:\n  - name: [a]\n    run: {cmd: echo}\n    retries: many\n"
    "    timeout: 5\n    continue_on_error: maybe\n    env: [A]\n  - just a string\n  - 42\n  - null\n",
)
write(
    RB,
    "number-overflow.yaml",
    "name: x\nowner: y\nguards:\n  concurrency: 99999999999999999999\n  trip_after_failures: -1\n"
    "toil:\n  manual_minutes: .nan\nsteps:\n  - name: a\n    http:\n      url: http://x\n"
    "      expect_status: [70000, -1]\n",
)
write(
    RB,
    "non-string-keys.yaml",
    GOOD_RUNBOOK + "1: one\ntrue: yes\n",
)
write(RB, "non-string-key-in-toil.yaml", GOOD_RUNBOOK.replace("  manual_minutes: 15", "  15: manual_minutes"))
write(
    RB,
    "json-style.yaml",
    json.dumps(
        {
            "name": "json-style",
            "owner": "x",
            "triggers": [{"schedule": "0 3 * * *", "timezone": "Mars/Olympus_Mons"}],
            "steps": [{"name": "a", "run": "echo {{params.nosuch}}"}],
        }
    )
    + "\n",
)
write(
    RB,
    "long-line.yaml",
    "name: long\nowner: x\ntags: [" + ", ".join(f"tag-{i}" for i in range(500)) + "]\nsteps: 5\n",
)
write(
    RB,
    "extreme-values.yaml",
    "name: extreme\nowner: x\ntriggers:\n"
    "  - schedule: \"" + " ".join(["*"] * 1000) + "\"\n"
    "  - schedule: \"0 0 30 2 *\"\n"
    "  - schedule: \"99999999999999999999 * * * *\"\n"
    "  - schedule: \"*/99999999999999999999 * * * *\"\n"
    "  - schedule: \"@reboot\"\n"
    "  - alert:\n      matchers: ['a=~\"(x{1000}){1000}\"', 'a=~\"(\"', '\"\"=x', 'a!~\".*\"']\n"
    "  - alert:\n      matchers: []\n"
    "timeout: 99999999999999999999999h\n"
    "steps:\n"
    "  - name: a\n    run: \"" + "{{#if x}}" * 500 + "{{/if}}" * 500 + "\"\n"
    "  - name: b\n    run: \"{{upper " + "(upper " * 1000 + "params.x" + ")" * 1000 + "}}\"\n"
    "  - name: c\n    run: \"{{\"\n",
)

# --- webhooks --------------------------------------------------------------------------------

def alert(i=0, **over):
    a = {
        "status": "firing",
        "labels": {"alertname": "DiskFull", "instance": f"db-{i}", "severity": "critical"},
        "annotations": {"summary": "disk almost full"},
        "startsAt": "2026-11-28T14:43:50.307Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1/fire.sh",
        "fingerprint": "",
    }
    a.update(over)
    return a


def notification(**over):
    n = {
        "version": "4",
        "groupKey": '{}:{alertname="DiskFull"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "untoil",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [alert()],
    }
    n.update(over)
    return n


def dump(v):
    return json.dumps(v, indent=1)


good = dump(notification())
write(WH, "ok-minimal.json", '{"version":"4","status":"firing"}')
write(WH, "ok-full.json", good)
write(
    WH,
    "ok-nulls.json",
    dump(
        notification(
            groupLabels=None,
            commonLabels=None,
            commonAnnotations=None,
            alerts=[alert(labels=None, annotations=None, endsAt=None)],
        )
    ),
)
write(
    WH,
    "ok-unicode-and-shell-metacharacters.json",
    dump(notification(alerts=[alert(labels={"alertname": "Ünïcødé 🔥", "instance": "$(rm -rf /); `id` 'x\" \\n"})])),
)
write(WH, "ok-unknown-fields.json", dump(notification(extra={"nested": [1, 2, 3]}, alerts=[alert(extra=True)])))

write(WH, "empty.json", "")
write(WH, "whitespace.json", " \n\t ")
write(WH, "not-json.json", "alertname=DiskFull\n")
write(WH, "truncated-half.json", good[: len(good) // 2])
write(WH, "truncated-in-string.json", good[: good.index("DiskFull") + 4])
write(WH, "truncated-after-colon.json", '{"version":')
write(WH, "trailing-garbage.json", good + " {}")
write(WH, "trailing-comma.json", '{"version":"4","status":"firing",}')
write(WH, "single-quotes.json", "{'version':'4','status':'firing'}")
write(WH, "top-level-array.json", "[" + good + "]")
write(WH, "top-level-string.json", '"4"')
write(WH, "null.json", "null")
write(WH, "version-3.json", dump(notification(version="3")))
write(WH, "version-number.json", dump(notification(version=4)))
write(WH, "version-missing.json", dump({k: v for k, v in notification().items() if k != "version"}))
write(WH, "version-null.json", dump(notification(version=None)))
write(WH, "version-empty.json", dump(notification(version="")))
write(WH, "status-missing.json", dump({k: v for k, v in notification().items() if k != "status"}))
write(WH, "status-unknown.json", dump(notification(status="pending")))
write(WH, "wrong-type-alerts-object.json", dump(notification(alerts={"0": alert()})))
write(WH, "wrong-type-alerts-string.json", dump(notification(alerts="none")))
write(WH, "wrong-type-alert-is-number.json", dump(notification(alerts=[1])))
write(WH, "wrong-type-labels-list.json", dump(notification(alerts=[alert(labels=["alertname", "x"])])))
write(WH, "wrong-type-label-value-number.json", dump(notification(alerts=[alert(labels={"alertname": 1})])))
write(WH, "wrong-type-label-value-object.json", dump(notification(commonLabels={"a": {"b": "c"}})))
write(WH, "wrong-type-starts-at-number.json", dump(notification(alerts=[alert(startsAt=1700000000)])))
write(WH, "wrong-type-truncated-alerts-negative.json", dump(notification(truncatedAlerts=-1)))
write(WH, "wrong-type-truncated-alerts-float.json", dump(notification(truncatedAlerts=1.5)))
write(WH, "huge-number.json", dump(notification(truncatedAlerts=10**30)))
write(WH, "huge-exponent.json", good.replace('"truncatedAlerts": 0', '"truncatedAlerts": 1e999999'))
write(WH, "bad-timestamp.json", dump(notification(alerts=[alert(startsAt="yesterday")])))
write(WH, "bad-timestamp-year-0.json", dump(notification(alerts=[alert(startsAt="0000-00-00T00:00:00Z")])))
write(WH, "ok-leap-second.json", dump(notification(alerts=[alert(endsAt="2026-12-31T23:59:60.5Z")])))
write(WH, "bad-timestamp-far-future.json", dump(notification(alerts=[alert(startsAt="99999-01-01T00:00:00Z")])))
write(WH, "alert-status-missing.json", dump(notification(alerts=[{k: v for k, v in alert().items() if k != "status"}])))
write(WH, "alert-starts-at-missing.json", dump(notification(alerts=[{k: v for k, v in alert().items() if k != "startsAt"}])))
write(WH, "duplicate-field.json", good.replace('"version": "4"', '"version": "4", "version": "4"'))
write(WH, "nul-in-label-value.json", dump(notification(alerts=[alert(labels={"alertname": "x", "instance": "db-1\u0000; rm -rf /"})])))
write(WH, "nul-in-label-name.json", dump(notification(alerts=[alert(labels={"alertname": "x", "inst\u0000ance": "db-1"})])))
write(WH, "nul-in-annotation.json", dump(notification(alerts=[alert(annotations={"summary": "\u0000"})])))
write(WH, "nul-in-group-labels.json", dump(notification(groupLabels={"alertname": "\u0000"})))
write(WH, "raw-nul-byte.json", good.replace("DiskFull", "Disk\x00Full", 1))
write(WH, "raw-control-character.json", good.replace("DiskFull", "Disk\nFull", 1))
write(WH, "lone-surrogate.json", dump(notification(alerts=[alert(labels={"alertname": "Disk\ud800"})])))
write(WH, "bad-escape.json", good.replace("DiskFull", "Disk\\qFull", 1))
write(WH, "invalid-utf8.json", good.encode().replace(b"DiskFull", b"Disk\xff\xfeFull", 1))
write(WH, "invalid-utf8-outside-strings.json", b"\xff" + good.encode())
write(WH, "bom.json", b"\xef\xbb\xbf" + good.encode())
write(WH, "utf16.json", good.encode("utf-16"))
write(WH, "nested-10k-arrays.json", "[" * 10_000 + "]" * 10_000)
write(WH, "nested-1k-alerts.json", '{"version":"4","status":"firing","alerts":' + "[" * 1000 + "]" * 1000 + "}")
write(
    WH,
    "ok-nested-10k-in-unknown-field.json",
    '{"version":"4","status":"firing","extra":' + "[" * 10_000 + "]" * 10_000 + "}",
)
write(
    WH,
    "ok-nested-10k-in-unknown-alert-field.json",
    '{"version":"4","status":"firing","alerts":[{"status":"firing","startsAt":"2026-11-28T14:43:50Z","extra":'
    + "[" * 10_000
    + "]" * 10_000
    + "}]}",
)
write(WH, "nested-labels.json", '{"version":"4","status":"firing","commonLabels":' + '{"a":' * 1000 + '"x"' + "}" * 1000 + "}")
