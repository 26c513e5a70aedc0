//! Webhook signatures made by independent implementations (the Standard Webhooks reference
//! package from PyPI and Python's own `hmac`) are accepted by untoil's verifier, and tampered
//! bodies are refused. The Python environment comes from `scripts/test-deps`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use untoil::source::secret::Secret;
use untoil::source::verify::{Preset, Verifier, VerifyError};

/// Signs BODY (argv[1]) every way the presets check and prints the headers as JSON.
const SIGNER: &str = r#"
import base64, hashlib, hmac, json, sys, time
from datetime import datetime, timezone
from standardwebhooks import Webhook

body = sys.argv[1]
data = body.encode()
now = int(time.time())
sw_secret = "whsec_" + base64.b64encode(b"untoil-standard-webhooks-key-32b").decode()
sw = Webhook(sw_secret).sign("msg_untoil_1", datetime.fromtimestamp(now, tz=timezone.utc), body)

def hexmac(key, msg, algo):
    return hmac.new(key, msg, algo).hexdigest()

print(json.dumps({
    "standard-webhooks": {
        "secret": sw_secret,
        "headers": {"webhook-id": "msg_untoil_1", "webhook-timestamp": str(now), "webhook-signature": sw},
    },
    "hmac-sha256": {
        "secret": "gh-secret",
        "headers": {"X-Hub-Signature-256": "sha256=" + hexmac(b"gh-secret", data, hashlib.sha256)},
    },
    "hmac-sha512": {
        "secret": "sha512-secret",
        "headers": {"X-Signature-512": hexmac(b"sha512-secret", data, hashlib.sha512)},
    },
    "pagerduty-v3": {
        "secret": "pd-new",
        "headers": {"X-PagerDuty-Signature": "v1=%s,v1=%s" % (
            hexmac(b"pd-old", data, hashlib.sha256), hexmac(b"pd-new", data, hashlib.sha256))},
    },
    "grafana": {
        "secret": "grafana-secret",
        "headers": {
            "X-Grafana-Alerting-Signature": hexmac(b"grafana-secret", b"%d:" % now + data, hashlib.sha256),
            "X-Grafana-Alerting-Signature-Timestamp": str(now),
        },
    },
}))
"#;

const BODY: &str =
    r#"{"receiver":"untoil","status":"firing","alerts":[{"labels":{"alertname":"DiskFull"}}]}"#;

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    // Never skip: a missing reference implementation would silently drop the check.
    assert!(
        python.exists(),
        "{} is missing: run scripts/test-deps (it installs the standardwebhooks reference)",
        python.display()
    );
    python
}

/// Each preset's secret and signed headers, as the Python signer made them.
fn signed() -> Value {
    let out = Command::new(python())
        .args(["-c", SIGNER, BODY])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the test venv's python ({e}): run scripts/test-deps")
        });
    assert!(
        out.status.success(),
        "the Python signer failed (run scripts/test-deps): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("signer output is not JSON: {e}"))
}

fn case(all: &Value, preset: &str) -> (Secret, HeaderMap) {
    let case = &all[preset];
    let secret = case["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("{preset}: no secret"));
    let secret = Secret::parse(secret.as_bytes().to_vec(), format!("test {preset}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut headers = HeaderMap::new();
    for (name, value) in case["headers"]
        .as_object()
        .unwrap_or_else(|| panic!("{preset}: headers"))
    {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let value = HeaderValue::from_str(value.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        headers.insert(name, value);
    }
    (secret, headers)
}

fn verifier(preset: Preset, secret: Secret) -> Verifier {
    let mut v = Verifier::new(preset, vec![secret]);
    match preset {
        Preset::HmacSha256 => {
            v.header = Some("X-Hub-Signature-256".into());
            v.prefix = Some("sha256=".into());
        }
        Preset::HmacSha512 => v.header = Some("X-Signature-512".into()),
        Preset::Grafana => {
            v.timestamp_header = Some("X-Grafana-Alerting-Signature-Timestamp".into());
        }
        Preset::StandardWebhooks | Preset::PagerDutyV3 => {}
    }
    v.tolerance = Duration::from_secs(300);
    v
}

#[test]
fn signatures_from_the_reference_implementations_verify() {
    let all = signed();
    let tampered = BODY.replace("DiskFull", "DiskFine");
    for preset in Preset::ALL {
        let (secret, headers) = case(&all, preset.name());
        let v = verifier(preset, secret);
        let verified = v.verify(&headers, BODY.as_bytes(), Utc::now());
        let verified = verified.unwrap_or_else(|e| panic!("{preset}: refused: {e}"));
        if preset == Preset::StandardWebhooks {
            assert_eq!(verified.delivery_id.as_deref(), Some("msg_untoil_1"));
        }
        assert_eq!(
            v.verify(&headers, tampered.as_bytes(), Utc::now()),
            Err(VerifyError::NoMatch),
            "{preset}: a tampered body must be refused"
        );
    }
}

#[test]
fn signatures_standard_webhooks_wrong_secret_refused() {
    let all = signed();
    let (_, headers) = case(&all, "standard-webhooks");
    let other = Secret::parse(b"whsec_b3RoZXIta2V5".to_vec(), "test".into())
        .unwrap_or_else(|e| panic!("{e}"));
    let v = verifier(Preset::StandardWebhooks, other);
    assert_eq!(
        v.verify(&headers, BODY.as_bytes(), Utc::now()),
        Err(VerifyError::NoMatch)
    );
}
