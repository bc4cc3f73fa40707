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
//! A hook seen for the first time follows events from the moment the server
//! starts (history is not replayed); a delivery that keeps failing is retried
//! `max_attempts` times with exponential backoff (1 s, 2 s, 4 s, … at most
//! 60 s) and then recorded as failed. Deliveries to one hook go out one at a
//! time, in event order. Several servers over one registry would each
//! deliver: configure hooks on one of them (receivers can still dedupe on
//! `X-Modelreg-Delivery`).
//!
//! # Across restarts: at least once
//!
//! With a state directory ([`ServerOptions::state_dir`], by default the
//! staging directory when one is set), each hook's position in every model's
//! log is kept in `<state>/webhook-cursors/<hook id>.json` (see [`Cursors`]),
//! rewritten atomically (temp file, fsync, rename, directory fsync) after each
//! delivery's outcome and whenever the follower moves past events the hook
//! does not want. A server that starts with that file resumes each model
//! after the saved position, so events made while it was down (or
//! restarting) are delivered; a model the file does not name was created
//! meanwhile and is delivered from its first event. A delivery that was in
//! flight or waiting for a retry when the server stopped is sent again:
//! receivers dedupe on `X-Modelreg-Delivery`. One that ran out of attempts is
//! not retried after a restart. This is server-side state, not registry
//! metadata: several servers over one bucket each keep their own.
//!
//! [`ServerOptions::state_dir`]: super::ServerOptions::state_dir

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
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
use crate::store::fsutil::{self, PublishMode};
use crate::{Error, Event, ModelName, Registry, Result};

/// How many deliveries of each hook are kept for `GET /api/v1/webhooks`.
const KEPT: usize = 100;

/// How many events may wait for one hook before new ones are dropped (and
/// each drop recorded as a failure).
const QUEUE: usize = 10_000;

/// The directory of the hooks' saved positions, below the state directory.
const CURSORS_DIR: &str = "webhook-cursors";

/// The format of a saved position file ([`Cursors`]).
const CURSORS_FORMAT: u32 = 1;

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
            && self.follows(&e.model)
    }

    fn follows(&self, model: &ModelName) -> bool {
        self.models.is_empty() || self.models.contains(model)
    }

    /// A name for the hook that stays the same across restarts: 32 hex
    /// digits of a BLAKE3 hash of its URL, kinds and models (in any order).
    /// Its secret and attempt count are not part of it, so rotating the
    /// secret keeps the hook's position; changing what it subscribes to makes
    /// a new hook, which starts from now.
    fn id(&self) -> String {
        let sorted = |items: Vec<&str>| -> Vec<String> {
            let set: BTreeSet<&str> = items.into_iter().collect();
            set.into_iter().map(str::to_owned).collect()
        };
        let key = serde_json::json!([
            "modelreg-webhook-v1",
            self.url,
            sorted(self.events.iter().map(String::as_str).collect()),
            sorted(self.models.iter().map(ModelName::as_str).collect()),
        ]);
        let hex = blake3::hash(key.to_string().as_bytes()).to_hex();
        hex[..32].to_owned()
    }
}

/// A hook's saved positions, `<state>/webhook-cursors/<hook id>.json`:
///
/// ```json
/// {"format": 1, "url": "https://…", "events": ["stage_changed"], "models": [],
///  "cursors": {"fraud": 42, "churn": 7}}
/// ```
///
/// `cursors` holds, for every model the hook follows, the number of the last
/// event it is done with: delivered, failed for good, or not of a kind it
/// wants. `url`, `events` and `models` are there for the reader; the file
/// name is what identifies the hook.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Cursors {
    format: u32,
    url: String,
    events: Vec<String>,
    models: Vec<ModelName>,
    cursors: BTreeMap<ModelName, u64>,
}

/// Where one hook's positions are saved (nowhere without a state directory),
/// and what they are.
struct Saved {
    path: Option<PathBuf>,
    cursors: Cursors,
}

impl Saved {
    /// The positions saved for `hook` in `dir` (`id` names its file): `None`
    /// if there are none (or no directory). A file this server cannot read is
    /// reported and set aside: the hook then starts from now.
    fn load(dir: Option<&Path>, id: &str, hook: &Webhook) -> (Saved, bool) {
        let mut saved = Saved {
            path: dir.map(|d| d.join(CURSORS_DIR).join(format!("{id}.json"))),
            cursors: Cursors {
                format: CURSORS_FORMAT,
                url: hook.url.clone(),
                events: hook.events.clone(),
                models: hook.models.clone(),
                cursors: BTreeMap::new(),
            },
        };
        let Some(path) = &saved.path else {
            return (saved, false);
        };
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (saved, false),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "webhooks: cannot read the saved positions; this hook starts from now");
                return (saved, false);
            }
        };
        match serde_json::from_slice::<Cursors>(&text) {
            Ok(c) if c.format == CURSORS_FORMAT => {
                saved.cursors.cursors = c.cursors;
                (saved, true)
            }
            Ok(c) => {
                tracing::error!(file = %path.display(), format = c.format, "webhooks: saved positions of an unknown format; this hook starts from now");
                (saved, false)
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "webhooks: cannot parse the saved positions; this hook starts from now");
                (saved, false)
            }
        }
    }

    /// Moves `model`'s position to `seq` (never back); whether it moved.
    fn advance(&mut self, model: &ModelName, seq: u64) -> bool {
        let at = self.cursors.cursors.entry(model.clone()).or_insert(0);
        let moved = seq > *at;
        *at = (*at).max(seq);
        moved
    }

    /// Writes the positions durably, replacing the file atomically. A
    /// failure is logged: the positions stay in memory and the next write
    /// tries again; a restart before then re-delivers.
    async fn write(&self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let bytes = match serde_json::to_vec_pretty(&self.cursors) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "webhooks: cannot encode the positions");
                return;
            }
        };
        let written = tokio::task::spawn_blocking(move || {
            let dir = path.parent().unwrap_or(Path::new("."));
            fsutil::publish(&path, dir, PublishMode::Replace, |f| f.write_all(&bytes))
                .map(|_| ())
                .map_err(|e| (path, e))
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err((path, e))) => {
                tracing::warn!(file = %path.display(), error = %e, "webhooks: cannot save the positions; a restart now would deliver some events again")
            }
            Err(e) => tracing::warn!(error = %e, "webhooks: saving the positions failed"),
        }
    }
}

/// What the follower hands a hook's delivery task, in order.
enum Job {
    /// An event of a kind and model the hook wants.
    Deliver(Event),
    /// The follower has handed over every event of these models up to these
    /// numbers: those the hook does not want are done with.
    Reached(Vec<(ModelName, u64)>),
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
    hooks: Vec<(Webhook, mpsc::Sender<Job>)>,
    status: Vec<Arc<Mutex<HookStatus>>>,
}

impl Hooks {
    /// Starts one delivery task per hook and the task that follows every
    /// model's log, from each hook's saved positions in `state_dir` or else
    /// from the log's current end; they stop when `stopping` is set.
    pub(crate) fn start(
        registry: Registry,
        hooks: Vec<Webhook>,
        poll: Duration,
        state_dir: Option<PathBuf>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Hooks> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("modelreg/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let mut running = Vec::new();
        let mut status = Vec::new();
        let mut queues = Vec::new();
        for hook in hooks {
            let record = Arc::new(Mutex::new(HookStatus {
                url: hook.url.clone(),
                events: hook.events.clone(),
                models: hook.models.clone(),
                ..HookStatus::default()
            }));
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.push(rx);
            running.push((hook, tx));
            status.push(record);
        }
        let hooks = Arc::new(Hooks {
            hooks: running,
            status,
        });
        if !hooks.hooks.is_empty() {
            let started = hooks.clone();
            tokio::spawn(async move {
                let loaded = load_all(&started, state_dir).await;
                let mut resume = Vec::new();
                for ((((hook, _), record), queue), (saved, found)) in started
                    .hooks
                    .iter()
                    .zip(&started.status)
                    .zip(queues)
                    .zip(loaded)
                {
                    resume.push(found.then(|| saved.cursors.cursors.clone()));
                    tokio::spawn(deliver_all(
                        hook.clone(),
                        client.clone(),
                        queue,
                        saved,
                        record.clone(),
                        stopping.clone(),
                    ));
                }
                follow(registry, started, resume, poll, stopping).await;
            });
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

    /// Hands `event` to each hook that wants it and has not seen it (its
    /// position in that model, `from[i]`, is below the event).
    fn dispatch(&self, event: &Event, from: &[BTreeMap<ModelName, u64>]) {
        for (i, ((hook, tx), record)) in self.hooks.iter().zip(&self.status).enumerate() {
            let seen = from[i].get(&event.model).is_some_and(|&at| event.seq <= at);
            if hook.wants(event) && !seen && tx.try_send(Job::Deliver(event.clone())).is_err() {
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

/// Each hook's saved positions in `dir` and whether it had any. Hooks that
/// would share an id (the same URL, kinds and models) are told apart by
/// their order in the configuration.
async fn load_all(hooks: &Hooks, dir: Option<PathBuf>) -> Vec<(Saved, bool)> {
    let list: Vec<Webhook> = hooks.hooks.iter().map(|(h, _)| h.clone()).collect();
    let ids = {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        list.iter()
            .map(|h| {
                let id = h.id();
                let n = seen.entry(id.clone()).or_insert(0);
                *n += 1;
                if *n > 1 { format!("{id}-{n}") } else { id }
            })
            .collect::<Vec<_>>()
    };
    let hooks_again = list.clone();
    let ids_again = ids.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        list.iter()
            .zip(&ids)
            .map(|(h, id)| Saved::load(dir.as_deref(), id, h))
            .collect::<Vec<_>>()
    })
    .await;
    loaded.unwrap_or_else(|e| {
        tracing::error!(error = %e, "webhooks: loading the saved positions failed; every hook starts from now, in memory only");
        hooks_again
            .iter()
            .zip(&ids_again)
            .map(|(h, id)| Saved::load(None, id, h))
            .collect()
    })
}

/// Follows every model's log, handing new events to the hooks. Each hook
/// resumes after its saved position in each model (`resume`), a model its
/// saved positions do not name from its first event, and a hook without
/// saved positions from each log's end; models created later are followed
/// from their first event. After each round every hook is told how far the
/// follower read ([`Job::Reached`]).
async fn follow(
    registry: Registry,
    hooks: Arc<Hooks>,
    resume: Vec<Option<BTreeMap<ModelName, u64>>>,
    poll: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    // Per hook: the position in each model up to which it has seen events.
    let mut from: Vec<BTreeMap<ModelName, u64>> = vec![BTreeMap::new(); hooks.hooks.len()];
    // Per hook: whether its next `Reached` names every model it follows (the
    // first does, and the next after one was dropped on a full queue).
    let mut full = vec![true; hooks.hooks.len()];
    // How far the follower read each model's log.
    let mut read: Option<BTreeMap<ModelName, u64>> = None;
    loop {
        match registry.model_summaries().await {
            Ok(models) => {
                let first = read.is_none();
                let read = read.get_or_insert_with(BTreeMap::new);
                let mut moved = BTreeSet::new();
                for m in models {
                    let at = match read.get(&m.name) {
                        Some(&at) => at,
                        None => {
                            let mut lowest = None;
                            for (i, (hook, _)) in hooks.hooks.iter().enumerate() {
                                if !hook.follows(&m.name) {
                                    continue;
                                }
                                let start = match (first, &resume[i]) {
                                    (false, _) => 0,
                                    (true, None) => m.events,
                                    (true, Some(saved)) => match saved.get(&m.name) {
                                        None => 0,
                                        Some(&at) if at > m.events => {
                                            tracing::warn!(model = %m.name, saved = at, events = m.events, url = %hook.url, "webhooks: the saved position is past the model's log (a state directory of another registry?); following from its end");
                                            m.events
                                        }
                                        Some(&at) => at,
                                    },
                                };
                                from[i].insert(m.name.clone(), start);
                                lowest = Some(lowest.map_or(start, |l: u64| l.min(start)));
                            }
                            let at = lowest.unwrap_or(m.events);
                            read.insert(m.name.clone(), at);
                            at
                        }
                    };
                    let mut at = at;
                    while at < m.events {
                        match registry.events_after(m.name.clone(), at, 1000).await {
                            Ok(batch) if !batch.is_empty() => {
                                for e in &batch {
                                    hooks.dispatch(e, &from);
                                }
                                at = batch.last().map_or(at, |e| e.seq);
                            }
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!(model = %m.name, error = %e, "webhooks: reading events failed; retrying");
                                break;
                            }
                        }
                    }
                    if read.insert(m.name.clone(), at) != Some(at) {
                        moved.insert(m.name);
                    }
                }
                for (i, (hook, tx)) in hooks.hooks.iter().enumerate() {
                    let reached: Vec<(ModelName, u64)> = read
                        .iter()
                        .filter(|(name, _)| {
                            hook.follows(name) && (full[i] || moved.contains(*name))
                        })
                        .map(|(name, &at)| (name.clone(), at))
                        .collect();
                    if !reached.is_empty() || full[i] {
                        full[i] = tx.try_send(Job::Reached(reached)).is_err();
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
/// of attempts, saving the hook's position after each outcome and each
/// [`Job::Reached`] that moves it.
async fn deliver_all(
    hook: Webhook,
    client: reqwest::Client,
    mut queue: mpsc::Receiver<Job>,
    mut saved: Saved,
    record: Arc<Mutex<HookStatus>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    // The first `Reached` is written even if it moves nothing, so that the
    // next start finds the positions of every model that exists now.
    let mut written = false;
    loop {
        let job = tokio::select! {
            j = queue.recv() => match j { Some(j) => j, None => return },
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        let event = match job {
            Job::Deliver(event) => event,
            Job::Reached(models) => {
                let mut moved = false;
                for (model, seq) in &models {
                    moved |= saved.advance(model, *seq);
                }
                if moved || !written {
                    saved.write().await;
                    written = true;
                }
                continue;
            }
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
        // Done with, either way: saved before it is reported.
        saved.advance(&event.model, event.seq);
        saved.write().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Webhook {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_hook_id_names_what_it_subscribes_to() {
        let a = hook(serde_json::json!({
            "url": "https://ci.example.com/h", "secret": "a-long-shared-secret",
            "events": ["stage_changed", "alias_set"], "models": ["fraud", "churn"],
        }));
        let same = hook(serde_json::json!({
            "url": "https://ci.example.com/h", "secret": "another-long-secret!",
            "events": ["alias_set", "stage_changed", "alias_set"], "models": ["churn", "fraud"],
            "max_attempts": 2,
        }));
        assert_eq!(a.id(), same.id(), "order, secret and attempts do not count");
        assert_eq!(a.id().len(), 32);
        assert!(a.id().bytes().all(|b| b.is_ascii_hexdigit()));
        for other in [
            serde_json::json!({"url": "https://ci.example.com/other", "secret": "a-long-shared-secret",
                "events": ["stage_changed", "alias_set"], "models": ["fraud", "churn"]}),
            serde_json::json!({"url": "https://ci.example.com/h", "secret": "a-long-shared-secret",
                "events": ["stage_changed"], "models": ["fraud", "churn"]}),
            serde_json::json!({"url": "https://ci.example.com/h", "secret": "a-long-shared-secret",
                "events": ["stage_changed", "alias_set"]}),
        ] {
            assert_ne!(a.id(), hook(other).id());
        }
    }

    #[tokio::test]
    async fn positions_are_saved_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let h = hook(
            serde_json::json!({"url": "https://x.example/h", "secret": "a-long-shared-secret"}),
        );
        let (mut saved, found) = Saved::load(Some(dir.path()), &h.id(), &h);
        assert!(!found);
        let fraud = ModelName::new("fraud").unwrap();
        assert!(saved.advance(&fraud, 7));
        assert!(!saved.advance(&fraud, 3), "never back");
        saved.write().await;
        let (again, found) = Saved::load(Some(dir.path()), &h.id(), &h);
        assert!(found);
        assert_eq!(again.cursors.cursors.get(&fraud), Some(&7));
        // Only the file: the temp file is gone.
        let names: Vec<_> = std::fs::read_dir(dir.path().join(CURSORS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [std::ffi::OsString::from(format!("{}.json", h.id()))]
        );
        // A file of a later format is set aside: the hook starts from now.
        std::fs::write(
            again.path.as_ref().unwrap(),
            br#"{"format":2,"url":"","events":[],"models":[],"cursors":{}}"#,
        )
        .unwrap();
        assert!(!Saved::load(Some(dir.path()), &h.id(), &h).1);
    }
}
