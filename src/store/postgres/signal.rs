//! The fleet's signals ([`Signal`]) on the wire: JSON payloads of NOTIFY on one channel,
//! [`CHANNEL`], sent with `pg_notify` and bind parameters. PostgreSQL refuses a payload of 8000
//! bytes or more, so a batch of events is split over as many payloads as it needs (each says
//! where its first event stands, `seq`), and an event too large for one payload on its own has
//! its text cut, with a marker, rather than be dropped: the run's record keeps all of it.
//!
//! Every replica (and any other database user) may write to the channel: what arrives is
//! parsed as data, and anything that does not parse is ignored.

use async_trait::async_trait;

use crate::run::event::RunEvent;
use crate::store::error::StoreError;
use crate::store::postgres::tx::{backend, no_connection};
use crate::store::signals::{Signal, Signals};

/// The channel every replica of a fleet listens on.
pub const CHANNEL: &str = "untoil_fleet";

/// Most bytes of one payload (PostgreSQL's limit is just under 8000).
pub const PAYLOAD_LIMIT: usize = 7900;

/// What replaces the end of a text cut to fit a payload.
pub const CUT: &str = " [… cut in transit between replicas; the run's record has all of it]";

/// The payloads that carry `signal`, in order (none when even a cut one cannot fit).
pub fn encode(signal: &Signal) -> Vec<String> {
    let Signal::Events { token, seq, events } = signal else {
        return fitting(signal).into_iter().collect();
    };
    // What a payload costs besides its events (the largest seq, to be safe).
    let frame = size(&Signal::Events {
        token: token.clone(),
        seq: u64::MAX,
        events: Vec::new(),
    });
    let room = PAYLOAD_LIMIT.saturating_sub(frame + 1);
    let mut payloads = Vec::new();
    let mut batch: Vec<RunEvent> = Vec::new();
    let mut used = 0;
    let mut first = *seq;
    let mut flush = |batch: &mut Vec<RunEvent>, first: &mut u64| {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let events = Signal::Events {
            token: token.clone(),
            seq: *first,
            events: std::mem::take(batch),
        };
        payloads.extend(fitting(&events));
        *first += n;
    };
    for event in events {
        let Some((event, len)) = fit(event, room) else {
            // Not even its frame fits (a huge step name): it is skipped, and the follower sees
            // a gap in `seq`.
            tracing::debug!("an event too large to forward was skipped");
            flush(&mut batch, &mut first);
            used = 0;
            first += 1;
            continue;
        };
        if !batch.is_empty() && used + 1 + len > room {
            flush(&mut batch, &mut first);
            used = 0;
        }
        used += len + usize::from(!batch.is_empty());
        batch.push(event);
    }
    flush(&mut batch, &mut first);
    payloads
}

/// A payload read from the channel, when it is a signal of this untoil's.
pub fn decode(payload: &str) -> Option<Signal> {
    match serde_json::from_str(payload) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::debug!("ignored a notification on {CHANNEL} that is not a signal: {e}");
            None
        }
    }
}

/// The payload of `signal`, when it fits.
fn fitting(signal: &Signal) -> Option<String> {
    let text = serde_json::to_string(signal).ok()?;
    (text.len() <= PAYLOAD_LIMIT).then_some(text)
}

fn size<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_string(value).map_or(usize::MAX, |t| t.len())
}

/// `event` and its size, cut until it takes at most `room` bytes (None when it cannot).
fn fit(event: &RunEvent, room: usize) -> Option<(RunEvent, usize)> {
    let len = size(event);
    if len <= room {
        return Some((event.clone(), len));
    }
    let mut cap = room;
    while cap > 0 {
        cap /= 2;
        let cut = cut_event(event, cap);
        let len = size(&cut);
        if len <= room {
            return Some((cut, len));
        }
    }
    None
}

/// `event` with each of its texts cut to `cap` bytes (and what is not text dropped).
fn cut_event(event: &RunEvent, cap: usize) -> RunEvent {
    match event {
        RunEvent::Output {
            index,
            stream,
            line,
        } => RunEvent::Output {
            index: *index,
            stream: stream.clone(),
            line: cut(line, cap),
        },
        RunEvent::StepStarted {
            index,
            name,
            attempt,
            detail,
        } => RunEvent::StepStarted {
            index: *index,
            name: name.clone(),
            attempt: *attempt,
            detail: cut(detail, cap),
        },
        RunEvent::StepFinished { index, result } => {
            let mut r = (**result).clone();
            for text in [
                &mut r.stdout,
                &mut r.stderr,
                &mut r.body,
                &mut r.command,
                &mut r.message,
            ] {
                *text = cut(text, cap);
            }
            r.error = r.error.as_deref().map(|e| cut(e, cap));
            r.json = None;
            r.outputs = None;
            r.headers.clear();
            RunEvent::StepFinished {
                index: *index,
                result: Box::new(r),
            }
        }
        other => other.clone(),
    }
}

/// `text` cut to at most `cap` bytes (on a character boundary), marked when cut.
fn cut(text: &str, cap: usize) -> String {
    if text.len() <= cap {
        return text.to_string();
    }
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT}", &text[..end])
}

/// Signals sent through the database's pool.
pub struct PgSignals {
    pool: deadpool_postgres::Pool,
    /// The database's URL without its password, for messages.
    name: String,
}

impl PgSignals {
    /// Signals through `pool` to the database named `name`.
    pub fn new(pool: deadpool_postgres::Pool, name: String) -> PgSignals {
        PgSignals { pool, name }
    }
}

#[async_trait]
impl Signals for PgSignals {
    async fn send(&self, signal: &Signal) -> Result<(), StoreError> {
        let what = "signalling the fleet's replicas";
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| no_connection(&self.name, what, &e))?;
        // One statement each, in order: notifications are delivered in commit order.
        for payload in encode(signal) {
            client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .await
                .map_err(|e| backend(&self.name, what, &e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::id::RunId;
    use crate::run::step::StepResult;

    fn output(line: &str) -> RunEvent {
        RunEvent::Output {
            index: 0,
            stream: "stdout".into(),
            line: line.into(),
        }
    }

    fn events_of(payloads: &[String]) -> Vec<(u64, Vec<RunEvent>)> {
        payloads
            .iter()
            .map(|p| match decode(p) {
                Some(Signal::Events { seq, events, .. }) => (seq, events),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn signals_survive_the_wire_and_a_big_batch_is_split_under_the_limit_in_order() {
        let run = RunId::new();
        for s in [
            Signal::Cancel { run: run.clone() },
            Signal::Follow {
                run,
                token: "t".into(),
            },
            Signal::End { token: "t".into() },
        ] {
            let payloads = encode(&s);
            assert_eq!(payloads.len(), 1);
            assert_eq!(decode(&payloads[0]), Some(s));
        }
        let lines: Vec<RunEvent> = (0..500)
            .map(|i| output(&format!("line {i} {}", "x".repeat(100))))
            .collect();
        let payloads = encode(&Signal::Events {
            token: "t".into(),
            seq: 7,
            events: lines.clone(),
        });
        assert!(payloads.len() > 1, "split");
        assert!(payloads.iter().all(|p| p.len() <= PAYLOAD_LIMIT));
        let mut next = 7;
        let mut got = Vec::new();
        for (seq, events) in events_of(&payloads) {
            assert_eq!(seq, next, "each part says where it stands");
            next += events.len() as u64;
            got.extend(events);
        }
        assert_eq!(got, lines, "all of them, in order");
    }

    #[test]
    fn an_oversized_event_is_cut_with_a_marker_not_dropped() {
        let long = "é".repeat(20_000);
        let controls = "\u{1}".repeat(20_000);
        let mut result = StepResult {
            name: "s".into(),
            stdout: long.clone(),
            json: Some(serde_json::json!({ "big": long })),
            ..StepResult::default()
        };
        result.stderr = controls.clone();
        let events = vec![
            output(&long),
            output(&controls),
            RunEvent::StepFinished {
                index: 0,
                result: Box::new(result),
            },
            output("after"),
        ];
        let payloads = encode(&Signal::Events {
            token: "t".into(),
            seq: 0,
            events,
        });
        assert!(payloads.iter().all(|p| p.len() <= PAYLOAD_LIMIT));
        let got: Vec<RunEvent> = events_of(&payloads)
            .into_iter()
            .flat_map(|(_, e)| e)
            .collect();
        assert_eq!(got.len(), 4, "none dropped: {got:?}");
        match &got[0] {
            RunEvent::Output { line, .. } => {
                assert!(line.starts_with("éé") && line.ends_with(CUT), "{line}")
            }
            other => panic!("{other:?}"),
        }
        match &got[2] {
            RunEvent::StepFinished { result, .. } => {
                assert!(result.stdout.ends_with(CUT) && result.json.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[3], output("after"));
    }

    #[test]
    fn malformed_payloads_are_ignored() {
        for payload in [
            "",
            "not json",
            "{}",
            "[1,2]",
            r#"{"signal":"cancel"}"#,
            r#"{"signal":"launch","run":"x"}"#,
            r#"{"signal":"events","token":"t","seq":-1,"events":[]}"#,
            r#"{"signal":"events","token":"t","seq":0,"events":[{"event":"nope"}]}"#,
            &"[".repeat(10_000),
        ] {
            assert_eq!(decode(payload), None, "{payload:.40}");
        }
    }
}
