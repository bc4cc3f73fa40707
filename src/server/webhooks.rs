//! Webhooks: each new event of the chosen kinds and models is `POST`ed to a
//! URL, signed, retried with backoff, and every delivery and failure is kept
//! where an admin can read it (`GET /api/v1/webhooks`).
//!
//! A delivery is a JSON body `{"delivery", "model", "seq", "kind", "event"}`
//! (`event` is the [`Event`]'s own JSON) with headers:
//! - `X-Modelreg-Event`: the event's kind (`stage_changed`, …);
//! - `X-Modelreg-Delivery`: `<model>:<seq>`, the same on every retry and on
//!   every server, so a receiver can drop duplicates;
//! - `X-Modelreg-Signature-256`: `sha256=<hex HMAC-SHA256 of the body with the
//!   hook's secret>` (the scheme GitHub uses; compare in constant time).
//!
//! Events are followed from the moment the server starts (history is not
//! replayed); a delivery that keeps failing is retried `max_attempts` times
//! with exponential backoff (1 s, 2 s, 4 s, … at most 60 s) and then recorded
//! as failed. Deliveries to one hook go out one at a time, in event order.
//! Several servers over one registry would each deliver: configure hooks on
//! one of them (receivers can still dedupe on `X-Modelreg-Delivery`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::State as AxumState;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::State;
use super::auth::Admin;
use crate::{Error, Event, ModelName, Registry, Result};

/// How many deliveries of each hook are kept for `GET /api/v1/webhooks`.
const KEPT: usize = 100;

/// How many events may wait for one hook before new ones are dropped (and
/// each drop recorded as a failure).
const QUEUE: usize = 10_000;

/// One webhook: where to send which events, and the secret that signs them.
///
/// From JSON (`modelreg serve --webhooks FILE` takes a list of these):
/// ```
/// use modelreg::server::Webhook;
/// let hooks: Vec<Webhook> = serde_json::from_str(r#"[
///   {"url": "https://ci.example.com/hooks/modelreg", "secret": "a-long-shared-secret",
///    "events": ["stage_changed", "alias_set"], "models": ["fraud"]}
/// ]"#).unwrap();
/// assert_eq!(hooks[0].events, ["stage_changed", "alias_set"]);
/// hooks[0].check().unwrap();
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// An `http` or `https` URL.
    pub url: String,
    /// The HMAC key (at least 16 bytes).
    pub secret: String,
    /// The event kinds to send (see `EventKind::name`); empty: every kind.
    #[serde(default)]
    pub events: Vec<String>,
    /// The models whose events to send; empty: every model.
    #[serde(default)]
    pub models: Vec<ModelName>,
    /// How many times a delivery is tried before it is recorded as failed.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_attempts() -> u32 {
    6
}

impl std::fmt::Debug for Webhook {
    // Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("models", &self.models)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Checks the URL, the secret and the attempt count.
    pub fn check(&self) -> Result<()> {
        let url = url::Url::parse(&self.url)
            .map_err(|e| Error::invalid_input(format!("webhook {}", self.url), e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::invalid_input(
                format!("webhook {}", self.url),
                "the URL must be http or https",
            ));
        }
        if self.secret.len() < 16 {
            return Err(Error::invalid_input(
                format!("webhook {}", self.url),
                "the secret needs at least 16 bytes",
            ));
        }
        if self.max_attempts == 0 {
            return Err(Error::invalid_input(
                format!("webhook {}", self.url),
                "max_attempts must be at least 1",
            ));
        }
        Ok(())
    }

    fn wants(&self, e: &Event) -> bool {
        (self.events.is_empty() || self.events.iter().any(|k| k == e.kind.name()))
            && (self.models.is_empty() || self.models.contains(&e.model))
    }
}

/// The `X-Modelreg-Signature-256` value of `body` under `secret`.
///
/// ```
/// // A receiver recomputes this over the raw body and compares in constant time.
/// let sig = modelreg::server::webhook_signature(b"a-long-shared-secret", br#"{"seq":1}"#);
/// assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
/// ```
pub fn webhook_signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What happened to one delivery.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct Delivery {
    /// `<model>:<seq>`, as sent in `X-Modelreg-Delivery`.
    delivery: String,
    /// The event's kind, as sent in `X-Modelreg-Event`.
    kind: &'static str,
    outcome: Outcome,
    /// How many times it was sent so far.
    attempts: u32,
    /// The receiver's last HTTP status, if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// When this outcome was recorded.
    at: DateTime<Utc>,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// An attempt failed; another will follow after the backoff.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed, or the hook's queue was full.
    Failed,
}

/// A hook's record, as `GET /api/v1/webhooks` shows it.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct HookStatus {
    /// Where the hook sends (its secret is never shown).
    url: String,
    /// The event kinds it sends; empty: every kind.
    events: Vec<String>,
    /// The models whose events it sends; empty: every model.
    models: Vec<ModelName>,
    /// Deliveries the receiver took, since the server started.
    delivered: u64,
    /// Deliveries given up, since the server started.
    failed: u64,
    /// The latest deliveries (at most 100), oldest first.
    #[schema(value_type = Vec<Delivery>)]
    recent: VecDeque<Delivery>,
}

/// Every webhook with its counts and latest deliveries (admin).
///
/// A hook's secret is never shown. The records live in this server's memory:
/// they start empty when it starts, and another server over the same
/// registry keeps its own.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    operation_id = "webhook_status",
    tag = "webhooks",
    security(("bearer" = ["admin"])),
    responses((status = 200, description = "One record per configured hook, in configuration order.", body = Vec<HookStatus>)),
)]
pub(crate) async fn status(
    AxumState(state): AxumState<State>,
    _: Admin,
) -> Json<Vec<serde_json::Value>> {
    Json(state.hooks.get().map(|h| h.status()).unwrap_or_default())
}

/// The running hooks: their queues and records.
pub(crate) struct Hooks {
    hooks: Vec<(Webhook, mpsc::Sender<Event>)>,
    status: Vec<Arc<Mutex<HookStatus>>>,
}

impl Hooks {
    /// Starts one delivery task per hook and the task that follows every
    /// model's log from its current end; they stop when `stopping` is set.
    pub(crate) fn start(
        registry: Registry,
        hooks: Vec<Webhook>,
        poll: Duration,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Hooks> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("modelreg/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let mut running = Vec::new();
        let mut status = Vec::new();
        for hook in hooks {
            let record = Arc::new(Mutex::new(HookStatus {
                url: hook.url.clone(),
                events: hook.events.clone(),
                models: hook.models.clone(),
                ..HookStatus::default()
            }));
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(deliver_all(
                hook.clone(),
                client.clone(),
                rx,
                record.clone(),
                stopping.clone(),
            ));
            running.push((hook, tx));
            status.push(record);
        }
        let hooks = Arc::new(Hooks {
            hooks: running,
            status,
        });
        if !hooks.hooks.is_empty() {
            tokio::spawn(follow(registry, hooks.clone(), poll, stopping));
        }
        hooks
    }

    /// Every hook's record.
    pub(crate) fn status(&self) -> Vec<serde_json::Value> {
        self.status
            .iter()
            .map(|s| serde_json::to_value(&*lock(s)).unwrap_or_default())
            .collect()
    }

    fn dispatch(&self, event: &Event) {
        for ((hook, tx), record) in self.hooks.iter().zip(&self.status) {
            if hook.wants(event) && tx.try_send(event.clone()).is_err() {
                let mut r = lock(record);
                r.failed += 1;
                push(
                    &mut r,
                    Delivery {
                        delivery: delivery_id(event),
                        kind: event.kind.name(),
                        outcome: Outcome::Failed,
                        attempts: 0,
                        status: None,
                        error: Some(format!("dropped: more than {QUEUE} deliveries waiting")),
                        at: Utc::now(),
                    },
                );
            }
        }
    }
}

fn lock(m: &Mutex<HookStatus>) -> std::sync::MutexGuard<'_, HookStatus> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn push(r: &mut HookStatus, d: Delivery) {
    if r.recent.len() == KEPT {
        r.recent.pop_front();
    }
    r.recent.push_back(d);
}

fn delivery_id(e: &Event) -> String {
    format!("{}:{}", e.model, e.seq)
}

/// Follows every model's log from where it is now, handing new events to the
/// hooks; models created later are followed from their first event.
async fn follow(
    registry: Registry,
    hooks: Arc<Hooks>,
    poll: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut cursors: Option<BTreeMap<ModelName, u64>> = None;
    loop {
        match registry.model_summaries().await {
            Ok(models) => {
                let first = cursors.is_none();
                let seen = cursors.get_or_insert_with(BTreeMap::new);
                for m in models {
                    let at = seen
                        .entry(m.name.clone())
                        .or_insert(if first { m.events } else { 0 });
                    while *at < m.events {
                        match registry.events_after(m.name.clone(), *at, 1000).await {
                            Ok(batch) if !batch.is_empty() => {
                                for e in &batch {
                                    hooks.dispatch(e);
                                }
                                *at = batch.last().map_or(*at, |e| e.seq);
                            }
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!(model = %m.name, error = %e, "webhooks: reading events failed; retrying");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "webhooks: listing models failed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// Delivers one hook's events in order, each until it succeeds or runs out
/// of attempts.
async fn deliver_all(
    hook: Webhook,
    client: reqwest::Client,
    mut queue: mpsc::Receiver<Event>,
    record: Arc<Mutex<HookStatus>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = queue.recv() => match e { Some(e) => e, None => return },
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        let id = delivery_id(&event);
        let body = serde_json::to_vec(&serde_json::json!({
            "delivery": id,
            "model": event.model,
            "seq": event.seq,
            "kind": event.kind.name(),
            "event": event,
        }))
        .unwrap_or_default();
        let signature = webhook_signature(hook.secret.as_bytes(), &body);
        let mut attempt = 0;
        let (outcome, status, error) = loop {
            attempt += 1;
            let sent = client
                .post(&hook.url)
                .header("content-type", "application/json")
                .header("x-modelreg-event", event.kind.name())
                .header("x-modelreg-delivery", &id)
                .header("x-modelreg-signature-256", &signature)
                .body(body.clone())
                .send()
                .await;
            let (status, error) = match sent {
                Ok(r) if r.status().is_success() => {
                    break (Outcome::Delivered, Some(r.status().as_u16()), None);
                }
                Ok(r) => (
                    Some(r.status().as_u16()),
                    format!("the receiver answered {}", r.status()),
                ),
                Err(e) => (None, format!("sending failed: {e}")),
            };
            if attempt >= hook.max_attempts {
                break (Outcome::Failed, status, Some(error));
            }
            {
                let mut r = lock(&record);
                push(
                    &mut r,
                    Delivery {
                        delivery: id.clone(),
                        kind: event.kind.name(),
                        outcome: Outcome::Pending,
                        attempts: attempt,
                        status,
                        error: Some(error),
                        at: Utc::now(),
                    },
                );
            }
            let backoff =
                Duration::from_secs(1u64 << (attempt - 1).min(6)).min(Duration::from_secs(60));
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        };
        if outcome == Outcome::Failed {
            tracing::warn!(url = %hook.url, delivery = %id, error = ?error, "webhook delivery failed");
        }
        let mut r = lock(&record);
        if outcome == Outcome::Delivered {
            r.delivered += 1;
        } else {
            r.failed += 1;
        }
        // The pending entries of this delivery give way to its outcome.
        r.recent.retain(|d| d.delivery != id);
        push(
            &mut r,
            Delivery {
                delivery: id,
                kind: event.kind.name(),
                outcome,
                attempts: attempt,
                status,
                error,
                at: Utc::now(),
            },
        );
    }
}
