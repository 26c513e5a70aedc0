//! Signature checks of signed webhooks (HMAC presets, Standard Webhooks, PagerDuty v3,
//! Grafana): a pure function of the configuration, the request headers, the raw body and
//! the current time.
//!
//! Errors explain what was wrong with the request but never contain a secret or a computed
//! signature: a 401 reason must not help anyone forge the next request.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Sha256, Sha512};

use super::secret::Secret;

/// How far a signed timestamp may be from now unless configured (the senders' own default).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// Grafana's default signature header.
pub const GRAFANA_SIGNATURE_HEADER: &str = "X-Grafana-Alerting-Signature";
/// The header Grafana's sender falls back to when its contact point names none
/// (grafana/alerting http/hmac.go; see tests/fixtures/grafana/README.md).
pub const GRAFANA_FALLBACK_SIGNATURE_HEADER: &str = "X-Grafana-Alert-Signature";
/// PagerDuty v3's signature header.
pub const PAGERDUTY_SIGNATURE_HEADER: &str = "X-PagerDuty-Signature";
/// Standard Webhooks' message id header (the delivery id).
pub const STANDARD_WEBHOOKS_ID_HEADER: &str = "webhook-id";
/// Standard Webhooks' timestamp header (Unix seconds).
pub const STANDARD_WEBHOOKS_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks' signature header.
pub const STANDARD_WEBHOOKS_SIGNATURE_HEADER: &str = "webhook-signature";

/// A signature scheme, by the name source files use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Hex HMAC-SHA256 of the body in a named header (GitHub style, optional `sha256=`).
    HmacSha256,
    /// Hex HMAC-SHA512 of the body in a named header.
    HmacSha512,
    /// Standard Webhooks: `v1,<base64>` HMAC-SHA256 of `id.timestamp.body`.
    StandardWebhooks,
    /// PagerDuty v3: `v1=<hex>` HMAC-SHA256 of the body, several during rotation.
    PagerDutyV3,
    /// Grafana's webhook contact point: hex HMAC-SHA256, optionally over `timestamp:body`.
    Grafana,
}

impl Preset {
    /// Every preset, in documentation order.
    pub const ALL: [Preset; 5] = [
        Preset::HmacSha256,
        Preset::HmacSha512,
        Preset::StandardWebhooks,
        Preset::PagerDutyV3,
        Preset::Grafana,
    ];

    /// The name used in source files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::HmacSha256 => "hmac-sha256",
            Preset::HmacSha512 => "hmac-sha512",
            Preset::StandardWebhooks => "standard-webhooks",
            Preset::PagerDutyV3 => "pagerduty-v3",
            Preset::Grafana => "grafana",
        }
    }

    /// The signature header used when none is configured (hmac-* have none: it is required).
    pub fn default_header(self) -> Option<&'static str> {
        match self {
            Preset::HmacSha256 | Preset::HmacSha512 => None,
            Preset::StandardWebhooks => Some(STANDARD_WEBHOOKS_SIGNATURE_HEADER),
            Preset::PagerDutyV3 => Some(PAGERDUTY_SIGNATURE_HEADER),
            Preset::Grafana => Some(GRAFANA_SIGNATURE_HEADER),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A preset name that is not one of [`Preset::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown verify preset {0:?} (expected hmac-sha256, hmac-sha512, standard-webhooks, pagerduty-v3 or grafana)"
)]
pub struct UnknownPreset(pub String);

impl FromStr for Preset {
    type Err = UnknownPreset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPreset(s.to_owned()))
    }
}

/// How one source's requests are verified.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The signature scheme.
    pub preset: Preset,
    /// The signature header; `None` takes the preset's default (required for hmac-*).
    pub header: Option<String>,
    /// Text before the hex digest (`sha256=`), required when set (hmac-*, grafana).
    pub prefix: Option<String>,
    /// hmac-*/grafana: a header holding Unix seconds, signed as `timestamp:body`.
    pub timestamp_header: Option<String>,
    /// Timestamps further than this from now, past or future, are refused.
    pub tolerance: Duration,
    /// The keys; a signature made with any of them passes (secret rotation).
    pub secrets: Vec<Secret>,
}

/// What a valid signature vouched for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    /// The sender's delivery id when the scheme carries one (standard-webhooks: `webhook-id`).
    pub delivery_id: Option<String>,
    /// The signed timestamp, when the scheme or configuration has one.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Why a request was refused (401); never contains a secret or a computed signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error("missing header {header}")]
    MissingHeader {
        /// The header's name.
        header: String,
    },
    /// The signature header is not in the scheme's format.
    #[error("malformed signature header {header}: {reason}")]
    MalformedSignature {
        /// The header's name.
        header: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The timestamp header is not Unix seconds.
    #[error("malformed timestamp header {header}: expected Unix seconds")]
    MalformedTimestamp {
        /// The header's name.
        header: String,
    },
    /// The timestamp is outside the tolerance (a replay or a wrong clock).
    #[error(
        "timestamp in {header} is {}s {}, beyond the tolerance of {}s",
        offset_secs.unsigned_abs(),
        if *offset_secs >= 0 { "old" } else { "in the future" },
        tolerance.as_secs()
    )]
    StaleTimestamp {
        /// The header's name.
        header: String,
        /// How far before now the timestamp is (negative: after now).
        offset_secs: i64,
        /// The configured tolerance.
        tolerance: Duration,
    },
    /// Well-formed signatures, but none made with any configured secret over this request.
    #[error("no signature matches")]
    NoMatch,
    /// The verifier itself is incomplete (a load-time check should have caught it).
    #[error("verification is not configured: {0}")]
    NotConfigured(&'static str),
}

/// The digest of an HMAC scheme.
#[derive(Clone, Copy)]
enum Digest {
    Sha256,
    Sha512,
}

impl Digest {
    fn len(self) -> usize {
        match self {
            Digest::Sha256 => 32,
            Digest::Sha512 => 64,
        }
    }
}

impl Verifier {
    /// A verifier with the preset's defaults: default header, no prefix or timestamp, 5m.
    pub fn new(preset: Preset, secrets: Vec<Secret>) -> Self {
        Verifier {
            preset,
            header: None,
            prefix: None,
            timestamp_header: None,
            tolerance: DEFAULT_TOLERANCE,
            secrets,
        }
    }

    /// The signature header requests must carry (configured, else the preset's default).
    pub fn signature_header(&self) -> Option<&str> {
        self.header.as_deref().or(self.preset.default_header())
    }

    /// Load-time check: a signature header is known and there is at least one secret.
    pub fn check(&self) -> Result<(), VerifyError> {
        if self.signature_header().is_none() {
            return Err(VerifyError::NotConfigured("hmac presets need a header"));
        }
        if self.secrets.is_empty() {
            return Err(VerifyError::NotConfigured("no secret"));
        }
        Ok(())
    }

    /// Checks the request's signature against every secret; `now` judges timestamps.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Verified, VerifyError> {
        self.check()?;
        match self.preset {
            Preset::HmacSha256 | Preset::Grafana => {
                self.verify_hex(Digest::Sha256, headers, body, now)
            }
            Preset::HmacSha512 => self.verify_hex(Digest::Sha512, headers, body, now),
            Preset::PagerDutyV3 => self.verify_pagerduty(headers, body),
            Preset::StandardWebhooks => self.verify_standard_webhooks(headers, body, now),
        }
    }

    /// hmac-*, grafana: one hex digest (after the prefix), optionally over `timestamp:body`.
    fn verify_hex(
        &self,
        digest: Digest,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Verified, VerifyError> {
        let mut name = self.signature_header().unwrap_or_default();
        // Grafana's docs name one header and its sender, left unconfigured, sends another: with
        // no header configured here, either is taken.
        if self.preset == Preset::Grafana
            && self.header.is_none()
            && !headers.contains_key(name)
            && headers.contains_key(GRAFANA_FALLBACK_SIGNATURE_HEADER)
        {
            name = GRAFANA_FALLBACK_SIGNATURE_HEADER;
        }
        let value = header(headers, name)?;
        let hex_text = match &self.prefix {
            Some(prefix) => value
                .strip_prefix(prefix.as_str())
                .ok_or_else(|| malformed(name, "the configured prefix is missing"))?,
            None => value,
        };
        let signature =
            hex::decode(hex_text).map_err(|_| malformed(name, "the signature is not hex"))?;
        if signature.len() != digest.len() {
            return Err(malformed(name, "the signature has the wrong length"));
        }
        let mut verified = Verified::default();
        let matched = match &self.timestamp_header {
            Some(ts_name) => {
                let (text, at) = self.timestamp(headers, ts_name, now)?;
                verified.timestamp = Some(at);
                self.any_matches(digest, &[text.as_bytes(), b":", body], &[signature])
            }
            None => self.any_matches(digest, &[body], &[signature]),
        };
        if matched {
            Ok(verified)
        } else {
            Err(VerifyError::NoMatch)
        }
    }

    /// pagerduty-v3: `v1=<hex>[,v1=<hex>...]` over the body; other versions are ignored.
    fn verify_pagerduty(&self, headers: &HeaderMap, body: &[u8]) -> Result<Verified, VerifyError> {
        let name = self
            .signature_header()
            .unwrap_or(PAGERDUTY_SIGNATURE_HEADER);
        let value = header(headers, name)?;
        let candidates: Vec<Vec<u8>> = value
            .split(',')
            .filter_map(|entry| entry.trim().strip_prefix("v1="))
            // A garbled entry next to a good one must not block it (any match passes).
            .filter_map(|hex_text| hex::decode(hex_text).ok())
            .filter(|sig| sig.len() == Digest::Sha256.len())
            .collect();
        if candidates.is_empty() {
            return Err(malformed(name, "no well-formed v1=<hex> signature"));
        }
        if self.any_matches(Digest::Sha256, &[body], &candidates) {
            Ok(Verified::default())
        } else {
            Err(VerifyError::NoMatch)
        }
    }

    /// standard-webhooks: `v1,<base64>` entries, space-separated, over `id.timestamp.body`.
    fn verify_standard_webhooks(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Verified, VerifyError> {
        let id = header(headers, STANDARD_WEBHOOKS_ID_HEADER)?;
        let name = self
            .signature_header()
            .unwrap_or(STANDARD_WEBHOOKS_SIGNATURE_HEADER);
        let value = header(headers, name)?;
        let (ts_text, at) = self.timestamp(headers, STANDARD_WEBHOOKS_TIMESTAMP_HEADER, now)?;
        let mut candidates = Vec::new();
        for entry in value.split_ascii_whitespace() {
            let (version, signature) = entry
                .split_once(',')
                .ok_or_else(|| malformed(name, "an entry is not <version>,<signature>"))?;
            // The spec reserves other versions (v1a: asymmetric) for schemes not used here.
            if version != "v1" {
                continue;
            }
            if let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature) {
                if sig.len() == Digest::Sha256.len() {
                    candidates.push(sig);
                }
            }
        }
        if candidates.is_empty() {
            return Err(malformed(name, "no well-formed v1,<base64> signature"));
        }
        let signed = [id.as_bytes(), b".", ts_text.as_bytes(), b".", body];
        if self.any_matches(Digest::Sha256, &signed, &candidates) {
            Ok(Verified {
                delivery_id: Some(id.to_owned()),
                timestamp: Some(at),
            })
        } else {
            Err(VerifyError::NoMatch)
        }
    }

    /// The timestamp header's text (as signed) and time, refused outside the tolerance.
    fn timestamp<'h>(
        &self,
        headers: &'h HeaderMap,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(&'h str, DateTime<Utc>), VerifyError> {
        let text = header(headers, name).map_err(|e| match e {
            VerifyError::MalformedSignature { header, .. } => {
                VerifyError::MalformedTimestamp { header }
            }
            other => other,
        })?;
        let malformed_ts = || VerifyError::MalformedTimestamp {
            header: name.to_owned(),
        };
        // Digits only: i64's parser would also take "+5", which signs differently.
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed_ts());
        }
        let secs: i64 = text.parse().map_err(|_| malformed_ts())?;
        let at = DateTime::from_timestamp(secs, 0).ok_or_else(malformed_ts)?;
        let offset_secs = now.timestamp().saturating_sub(secs);
        if offset_secs.unsigned_abs() > self.tolerance.as_secs() {
            return Err(VerifyError::StaleTimestamp {
                header: name.to_owned(),
                offset_secs,
                tolerance: self.tolerance,
            });
        }
        Ok((text, at))
    }

    /// Whether any secret's HMAC of `parts` (concatenated) equals any candidate.
    fn any_matches(&self, digest: Digest, parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
        // Stopping at the first match is fine: which secret matched is no secret, and each
        // comparison itself is constant-time.
        self.secrets.iter().any(|secret| match digest {
            Digest::Sha256 => matches::<Hmac<Sha256>>(secret, parts, candidates),
            Digest::Sha512 => matches::<Hmac<Sha512>>(secret, parts, candidates),
        })
    }
}

/// Whether the HMAC of `parts` under `secret` equals a candidate, compared in constant time.
fn matches<M: Mac + KeyInit + Clone>(
    secret: &Secret,
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> bool {
    // HMAC takes keys of any length, so this cannot fail; refusing is the safe answer anyway.
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret.expose()) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    // verify_slice compares in constant time (subtle), so timing does not leak the digest.
    candidates
        .iter()
        .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
}

/// A header's value as text; absent, empty or non-ASCII values are refused.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, VerifyError> {
    let value = headers
        .get(name)
        .ok_or_else(|| VerifyError::MissingHeader {
            header: name.to_owned(),
        })?;
    let text = value
        .to_str()
        .map_err(|_| malformed(name, "not ASCII text"))?
        .trim();
    if text.is_empty() {
        return Err(VerifyError::MissingHeader {
            header: name.to_owned(),
        });
    }
    Ok(text)
}

fn malformed(header: &str, reason: &'static str) -> VerifyError {
    VerifyError::MalformedSignature {
        header: header.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    // The body the known-answer vectors below sign.
    const BODY: &[u8] = br#"{"status":"firing","alerts":[]}"#;
    // The signed timestamp of the vectors, and "now" a minute later.
    const TS: i64 = 1_764_770_000;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(TS + 60, 0).unwrap_or_default()
    }

    fn secret(text: &str) -> Secret {
        Secret::parse(text.as_bytes().to_vec(), "test".into()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                *name,
                HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        map
    }

    fn hmac256(header: &str, key: &str) -> Verifier {
        Verifier {
            header: Some(header.to_owned()),
            ..Verifier::new(Preset::HmacSha256, vec![secret(key)])
        }
    }

    #[test]
    fn preset_names_round_trip() {
        for preset in Preset::ALL {
            assert_eq!(preset.to_string().parse::<Preset>(), Ok(preset));
        }
        let names: Vec<String> = Preset::ALL.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            names,
            [
                "hmac-sha256",
                "hmac-sha512",
                "standard-webhooks",
                "pagerduty-v3",
                "grafana"
            ]
        );
        assert!("HMAC-SHA256".parse::<Preset>().is_err());
    }

    // GitHub's documented example ("Validating webhook deliveries"), checked with
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"It'"'"'s a Secret to Everybody", b"Hello, World!", hashlib.sha256).hexdigest())'
    const GITHUB_SIG: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn hmac_sha256_github_example_with_prefix() {
        let mut v = hmac256("X-Hub-Signature-256", "It's a Secret to Everybody");
        v.prefix = Some("sha256=".into());
        let h = headers(&[("x-hub-signature-256", &format!("sha256={GITHUB_SIG}"))]);
        assert_eq!(
            v.verify(&h, b"Hello, World!", now()),
            Ok(Verified::default())
        );
        // Header names are case-insensitive; the hex digest may be upper case.
        let h = headers(&[(
            "X-HUB-SIGNATURE-256",
            &format!("sha256={}", GITHUB_SIG.to_uppercase()),
        )]);
        assert!(v.verify(&h, b"Hello, World!", now()).is_ok());
        assert_eq!(
            v.verify(&h, b"Hello, World?", now()),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn prefix_required_when_configured_and_refused_when_not() {
        let mut v = hmac256("X-Hub-Signature-256", "It's a Secret to Everybody");
        v.prefix = Some("sha256=".into());
        let bare = headers(&[("X-Hub-Signature-256", GITHUB_SIG)]);
        assert!(matches!(
            v.verify(&bare, b"Hello, World!", now()),
            Err(VerifyError::MalformedSignature { .. })
        ));
        v.prefix = None;
        assert!(v.verify(&bare, b"Hello, World!", now()).is_ok());
        let prefixed = headers(&[("X-Hub-Signature-256", &format!("sha256={GITHUB_SIG}"))]);
        assert!(matches!(
            v.verify(&prefixed, b"Hello, World!", now()),
            Err(VerifyError::MalformedSignature { .. })
        ));
    }

    // python3 -c 'import hmac,hashlib; print(hmac.new(b"untoil-test-secret", b"{\"status\":\"firing\",\"alerts\":[]}", hashlib.sha256).hexdigest())'
    const SHA256_SIG: &str = "4a59ffd2757dc0da2a4fbc9b37a826feaf2906581d7e2c6dedfd2afa4550f8ea";
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"untoil-test-secret", b"{\"status\":\"firing\",\"alerts\":[]}", hashlib.sha512).hexdigest())'
    const SHA512_SIG: &str = "57db65d97be6410ba6f73e2efca1831b6752ae6e97a77e630ab301e07814b927d7a1672f9307f497ae7d2ef47e780eb996332dd04975238665f6b00053861df5";

    #[test]
    fn hmac_sha512_known_answer() {
        let v = Verifier {
            header: Some("X-Signature".into()),
            ..Verifier::new(Preset::HmacSha512, vec![secret("untoil-test-secret")])
        };
        assert!(
            v.verify(&headers(&[("x-signature", SHA512_SIG)]), BODY, now())
                .is_ok()
        );
        // A SHA-256 digest is the wrong length for sha512: malformed, not a mismatch.
        assert!(matches!(
            v.verify(&headers(&[("x-signature", SHA256_SIG)]), BODY, now()),
            Err(VerifyError::MalformedSignature { .. })
        ));
    }

    #[test]
    fn wrong_secret_is_no_match_and_the_error_leaks_nothing() {
        let v = hmac256("X-Signature", "another-secret");
        let err = v.verify(&headers(&[("X-Signature", SHA256_SIG)]), BODY, now());
        assert_eq!(err, Err(VerifyError::NoMatch));
        let text = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            !text.contains("another-secret") && !text.contains(SHA256_SIG),
            "{text}"
        );
    }

    #[test]
    fn rotation_any_secret_passes() {
        let v = Verifier {
            header: Some("X-Signature".into()),
            ..Verifier::new(
                Preset::HmacSha256,
                vec![secret("the-new-secret"), secret("untoil-test-secret")],
            )
        };
        assert!(
            v.verify(&headers(&[("X-Signature", SHA256_SIG)]), BODY, now())
                .is_ok()
        );
    }

    #[test]
    fn missing_header_names_it() {
        let v = hmac256("X-Signature", "untoil-test-secret");
        assert_eq!(
            v.verify(&HeaderMap::new(), BODY, now()),
            Err(VerifyError::MissingHeader {
                header: "X-Signature".into()
            })
        );
        assert_eq!(
            v.verify(&HeaderMap::new(), BODY, now())
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("missing header X-Signature")
        );
        assert!(matches!(
            v.verify(&headers(&[("X-Signature", " ")]), BODY, now()),
            Err(VerifyError::MissingHeader { .. })
        ));
    }

    #[test]
    fn bad_hex_is_malformed() {
        let v = hmac256("X-Signature", "untoil-test-secret");
        let bad = SHA256_SIG.replace('a', "z");
        assert_eq!(
            v.verify(&headers(&[("X-Signature", &bad)]), BODY, now()),
            Err(VerifyError::MalformedSignature {
                header: "X-Signature".into(),
                reason: "the signature is not hex"
            })
        );
    }

    #[test]
    fn hmac_without_header_is_not_configured() {
        let v = Verifier::new(Preset::HmacSha256, vec![secret("x")]);
        assert!(matches!(v.check(), Err(VerifyError::NotConfigured(_))));
        assert!(matches!(
            v.verify(&HeaderMap::new(), BODY, now()),
            Err(VerifyError::NotConfigured(_))
        ));
        let none = Verifier::new(Preset::Grafana, vec![]);
        assert!(matches!(none.check(), Err(VerifyError::NotConfigured(_))));
    }

    // python3 -c 'import hmac,hashlib; print(hmac.new(b"grafana-secret", b"1764770000:{\"status\":\"firing\",\"alerts\":[]}", hashlib.sha256).hexdigest())'
    const GRAFANA_TS_SIG: &str = "4c257896a32db2b1f199c6a6b04b107e6c88f84186a756104e2422950b9c0fa5";
    const GRAFANA_TS_HEADER: &str = "X-Grafana-Alerting-Signature-Timestamp";

    fn grafana() -> Verifier {
        Verifier {
            timestamp_header: Some(GRAFANA_TS_HEADER.into()),
            ..Verifier::new(Preset::Grafana, vec![secret("grafana-secret")])
        }
    }

    #[test]
    fn grafana_with_timestamp_known_answer() {
        let h = headers(&[
            ("X-Grafana-Alerting-Signature", GRAFANA_TS_SIG),
            (GRAFANA_TS_HEADER, "1764770000"),
        ]);
        let verified = grafana().verify(&h, BODY, now());
        assert_eq!(
            verified,
            Ok(Verified {
                delivery_id: None,
                timestamp: DateTime::from_timestamp(TS, 0)
            })
        );
        // Without timestamp_header the same signature is over the body alone: no match.
        let plain = Verifier::new(Preset::Grafana, vec![secret("grafana-secret")]);
        assert_eq!(plain.verify(&h, BODY, now()), Err(VerifyError::NoMatch));
        // Missing timestamp header.
        let h = headers(&[("X-Grafana-Alerting-Signature", GRAFANA_TS_SIG)]);
        assert_eq!(
            grafana().verify(&h, BODY, now()),
            Err(VerifyError::MissingHeader {
                header: GRAFANA_TS_HEADER.into()
            })
        );
    }

    #[test]
    fn grafana_without_a_configured_header_takes_its_senders_fallback_header_too() {
        let h = headers(&[
            ("X-Grafana-Alert-Signature", GRAFANA_TS_SIG),
            (GRAFANA_TS_HEADER, "1764770000"),
        ]);
        assert!(grafana().verify(&h, BODY, now()).is_ok());
        // A configured header is the only one read.
        let named = Verifier {
            header: Some("X-Grafana-Alerting-Signature".into()),
            ..grafana()
        };
        assert_eq!(
            named.verify(&h, BODY, now()),
            Err(VerifyError::MissingHeader {
                header: "X-Grafana-Alerting-Signature".into()
            })
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let h = headers(&[
            ("X-Grafana-Alerting-Signature", GRAFANA_TS_SIG),
            (GRAFANA_TS_HEADER, "1764770000"),
        ]);
        let late = DateTime::from_timestamp(TS + 301, 0).unwrap_or_default();
        let err = grafana().verify(&h, BODY, late);
        assert_eq!(
            err.err().map(|e| e.to_string()).as_deref(),
            Some(
                "timestamp in X-Grafana-Alerting-Signature-Timestamp is 301s old, beyond the tolerance of 300s"
            )
        );
        let early = DateTime::from_timestamp(TS - 301, 0).unwrap_or_default();
        let err = grafana()
            .verify(&h, BODY, early)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "timestamp in X-Grafana-Alerting-Signature-Timestamp is 301s in the future, beyond the tolerance of 300s"
            )
        );
        // Exactly at the tolerance still passes (as the reference implementations).
        let edge = DateTime::from_timestamp(TS + 300, 0).unwrap_or_default();
        assert!(grafana().verify(&h, BODY, edge).is_ok());
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for ts in [
            "+1764770000",
            "1764770000.5",
            "soon",
            "99999999999999999999",
        ] {
            let h = headers(&[
                ("X-Grafana-Alerting-Signature", GRAFANA_TS_SIG),
                (GRAFANA_TS_HEADER, ts),
            ]);
            assert_eq!(
                grafana().verify(&h, BODY, now()),
                Err(VerifyError::MalformedTimestamp {
                    header: GRAFANA_TS_HEADER.into()
                }),
                "{ts}"
            );
        }
    }

    // python3 -c 'import hmac,hashlib; print(hmac.new(b"pd-old-secret", b"{\"status\":\"firing\",\"alerts\":[]}", hashlib.sha256).hexdigest())'
    const PD_OLD_SIG: &str = "77e1edb8aeedc7cc46b48ea0b1da62681e71c720b74500e47851f8158c89461b";
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"pd-new-secret", b"{\"status\":\"firing\",\"alerts\":[]}", hashlib.sha256).hexdigest())'
    const PD_NEW_SIG: &str = "206ed3361d091b3330be285150125ab76188d3107f21d07521890ca4642594a5";

    #[test]
    fn pagerduty_one_and_two_signatures() {
        let v = Verifier::new(Preset::PagerDutyV3, vec![secret("pd-new-secret")]);
        let one = headers(&[("x-pagerduty-signature", &format!("v1={PD_NEW_SIG}"))]);
        assert_eq!(v.verify(&one, BODY, now()), Ok(Verified::default()));
        // During rotation PagerDuty sends both; the second is the one made with our secret.
        let two = headers(&[(
            "X-PagerDuty-Signature",
            &format!("v1={PD_OLD_SIG},v1={PD_NEW_SIG}"),
        )]);
        assert!(v.verify(&two, BODY, now()).is_ok());
        let old_only = headers(&[("X-PagerDuty-Signature", &format!("v1={PD_OLD_SIG}"))]);
        assert_eq!(v.verify(&old_only, BODY, now()), Err(VerifyError::NoMatch));
        assert_eq!(v.verify(&two, b"{}", now()), Err(VerifyError::NoMatch));
    }

    #[test]
    fn pagerduty_malformed_and_missing() {
        let v = Verifier::new(Preset::PagerDutyV3, vec![secret("pd-new-secret")]);
        for value in ["v1=nothex", PD_NEW_SIG, "v2=00", "v1="] {
            assert!(
                matches!(
                    v.verify(&headers(&[("X-PagerDuty-Signature", value)]), BODY, now()),
                    Err(VerifyError::MalformedSignature { .. })
                ),
                "{value}"
            );
        }
        // A garbled entry does not block a good one.
        let h = headers(&[("X-PagerDuty-Signature", &format!("v1=zz, v1={PD_NEW_SIG}"))]);
        assert!(v.verify(&h, BODY, now()).is_ok());
        assert_eq!(
            v.verify(&HeaderMap::new(), BODY, now()),
            Err(VerifyError::MissingHeader {
                header: PAGERDUTY_SIGNATURE_HEADER.into()
            })
        );
    }

    // The published vector of the Standard Webhooks reference libraries
    // (libraries/go/webhook_test.go TestWebhookSign), re-checked with
    // python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{\"test\": 2432232314}", hashlib.sha256).digest()).decode())'
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", signature),
        ])
    }

    fn sw_now() -> DateTime<Utc> {
        DateTime::from_timestamp(SW_TS + 10, 0).unwrap_or_default()
    }

    #[test]
    fn standard_webhooks_published_vector() {
        let v = Verifier::new(Preset::StandardWebhooks, vec![secret(SW_SECRET)]);
        assert_eq!(
            v.verify(&sw_headers(SW_SIG), SW_BODY, sw_now()),
            Ok(Verified {
                delivery_id: Some(SW_ID.into()),
                timestamp: DateTime::from_timestamp(SW_TS, 0),
            })
        );
        assert_eq!(
            v.verify(&sw_headers(SW_SIG), b"{\"test\": 2432232315}", sw_now()),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn standard_webhooks_several_signatures_other_versions_ignored() {
        let v = Verifier::new(Preset::StandardWebhooks, vec![secret(SW_SECRET)]);
        // As the reference tests: a wrong v1, a v2, the valid one, another wrong v1.
        let wrong = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        let list = format!("v1,{wrong} v2,{wrong} {SW_SIG} v1,{wrong}");
        assert!(v.verify(&sw_headers(&list), SW_BODY, sw_now()).is_ok());
        // The valid digest under another version name does not count.
        let v2 = SW_SIG.replacen("v1,", "v2,", 1);
        assert!(matches!(
            v.verify(&sw_headers(&v2), SW_BODY, sw_now()),
            Err(VerifyError::MalformedSignature { .. })
        ));
    }

    #[test]
    fn standard_webhooks_refusals() {
        let v = Verifier::new(Preset::StandardWebhooks, vec![secret(SW_SECRET)]);
        assert!(matches!(
            v.verify(&sw_headers("v1,not base64!"), SW_BODY, sw_now()),
            Err(VerifyError::MalformedSignature { .. })
        ));
        assert!(matches!(
            v.verify(&sw_headers("g0hM9SsE"), SW_BODY, sw_now()),
            Err(VerifyError::MalformedSignature { .. })
        ));
        for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut h = sw_headers(SW_SIG);
            h.remove(missing);
            assert_eq!(
                v.verify(&h, SW_BODY, sw_now()),
                Err(VerifyError::MissingHeader {
                    header: missing.into()
                })
            );
        }
        let late = DateTime::from_timestamp(SW_TS + 301, 0).unwrap_or_default();
        assert!(matches!(
            v.verify(&sw_headers(SW_SIG), SW_BODY, late),
            Err(VerifyError::StaleTimestamp {
                offset_secs: 301,
                ..
            })
        ));
        let early = DateTime::from_timestamp(SW_TS - 301, 0).unwrap_or_default();
        assert!(matches!(
            v.verify(&sw_headers(SW_SIG), SW_BODY, early),
            Err(VerifyError::StaleTimestamp {
                offset_secs: -301,
                ..
            })
        ));
        // The raw secret text (not its decoded key) does not verify: whsec_ was decoded.
        let raw = Verifier::new(
            Preset::StandardWebhooks,
            vec![secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
        );
        assert_eq!(
            raw.verify(&sw_headers(SW_SIG), SW_BODY, sw_now()),
            Err(VerifyError::NoMatch)
        );
    }
}
