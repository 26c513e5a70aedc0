//! Webhook signing secrets: read once at load from a file or an environment variable.
//!
//! A secret must never reach an output, log, diagnostic or error, so `Secret` prints as
//! `[redacted]` and every error names where the secret came from, never what it holds.

use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard Webhooks' marker for a secret whose key is the base64 text after it.
pub const STANDARD_WEBHOOKS_PREFIX: &str = "whsec_";

// The reference implementations accept `whsec_` keys with or without base64 padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The key bytes of an HMAC signing secret; prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// Why a secret could not be loaded; names the file or variable, never the content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret file could not be read.
    #[error("cannot read secret file {}: {source}", path.display())]
    Read {
        /// The file named in the source definition.
        path: PathBuf,
        /// Why reading failed (an I/O error carries no file content).
        source: std::io::Error,
    },
    /// The environment variable is not set.
    #[error("secret environment variable {var} is not set")]
    EnvMissing {
        /// The variable named in the source definition.
        var: String,
    },
    /// The secret is empty (after its trailing newline is removed).
    #[error("the secret from {origin} is empty")]
    Empty {
        /// Where it came from: "file PATH" or "environment variable NAME".
        origin: String,
    },
    /// A `whsec_` secret whose remainder is not base64.
    #[error("the secret from {origin} starts with whsec_ but the rest is not valid base64")]
    StandardWebhooks {
        /// Where it came from: "file PATH" or "environment variable NAME".
        origin: String,
    },
}

impl Secret {
    /// Reads a secret file, dropping one trailing "\n" or "\r\n" (editors add one).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(bytes, format!("file {}", path.display()))
    }

    /// Reads a secret from an environment variable (trailing newline dropped as for files).
    pub fn from_env(var: &str) -> Result<Self, SecretError> {
        let value = std::env::var_os(var).ok_or_else(|| SecretError::EnvMissing {
            var: var.to_owned(),
        })?;
        Self::parse(value.into_vec(), format!("environment variable {var}"))
    }

    /// Builds a secret from text as a file would hold it; `origin` names it in errors.
    pub fn parse(mut bytes: Vec<u8>, origin: String) -> Result<Self, SecretError> {
        // Exactly one line ending: a secret may legitimately end in other whitespace.
        if bytes.ends_with(b"\r\n") {
            bytes.truncate(bytes.len() - 2);
        } else if bytes.ends_with(b"\n") {
            bytes.truncate(bytes.len() - 1);
        }
        if let Some(encoded) = bytes.strip_prefix(STANDARD_WEBHOOKS_PREFIX.as_bytes()) {
            // Standard Webhooks senders show the key as whsec_<base64>; the HMAC key is the
            // decoded bytes, so decode once here rather than on every request.
            bytes = LENIENT_BASE64
                .decode(encoded)
                .map_err(|_| SecretError::StandardWebhooks {
                    origin: origin.clone(),
                })?;
        }
        if bytes.is_empty() {
            return Err(SecretError::Empty { origin });
        }
        Ok(Secret(bytes))
    }

    /// The key bytes, for computing an HMAC (the only place they should go).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Secret, SecretError> {
        Secret::parse(
            text.as_bytes().to_vec(),
            "file /etc/untoil/test.secret".into(),
        )
    }

    #[test]
    fn strips_exactly_one_line_ending() {
        assert_eq!(parse("abc\n").map(|s| s.0).ok(), Some(b"abc".to_vec()));
        assert_eq!(parse("abc\r\n").map(|s| s.0).ok(), Some(b"abc".to_vec()));
        assert_eq!(parse("abc\n\n").map(|s| s.0).ok(), Some(b"abc\n".to_vec()));
        assert_eq!(parse("abc ").map(|s| s.0).ok(), Some(b"abc ".to_vec()));
    }

    #[test]
    fn empty_is_an_error_naming_the_origin() {
        for text in ["", "\n", "\r\n", "whsec_"] {
            let err = parse(text).err().map(|e| e.to_string());
            assert_eq!(
                err.as_deref(),
                Some("the secret from file /etc/untoil/test.secret is empty"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn standard_webhooks_form_decodes_to_the_key() {
        // python3 -c 'import base64; print(base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").hex())'
        let key = "31f290f6bf06298aab4f08d43c3f082cf648a362da2da4b0";
        let secret = parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n");
        assert_eq!(secret.map(|s| hex::encode(s.0)).ok().as_deref(), Some(key));
        // Unpadded base64 is accepted as by the reference libraries.
        assert!(parse("whsec_YWJjZA").is_ok());
    }

    #[test]
    fn bad_standard_webhooks_base64_does_not_echo_the_secret() {
        let err = parse("whsec_not*base64!").err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("/etc/untoil/test.secret"), "{err}");
        assert!(!err.contains("not*base64"), "{err}");
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = parse("hunter2").ok();
        assert_eq!(format!("{secret:?}"), "Some([redacted])");
        assert_eq!(secret.map(|s| s.to_string()).as_deref(), Some("[redacted]"));
    }

    #[test]
    fn missing_file_and_variable_name_themselves() {
        let err = Secret::from_file(Path::new("/nonexistent/untoil.secret")).err();
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("/nonexistent/untoil.secret"), "{err}");
        let err = Secret::from_env("UNTOIL_TEST_SECRET_THAT_IS_NOT_SET").err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("secret environment variable UNTOIL_TEST_SECRET_THAT_IS_NOT_SET is not set")
        );
    }

    #[test]
    fn file_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s.secret");
        std::fs::write(&path, "s3cret\r\n")?;
        assert_eq!(Secret::from_file(&path)?.expose(), b"s3cret");
        Ok(())
    }
}
