//! Change notifications for every language: a server-sent-events stream of a
//! model's events (`GET /api/v1/models/{model}/events`), what
//! [`Registry::watch_model`](crate::Registry::watch_model) gives Rust callers.
//! [`stream`] says what is sent; its annotation documents it in the OpenAPI
//! document.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State as AxumState;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{BoxStream, Stream, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;

use super::State;
use super::error::{ApiError, ApiResult};
use super::extract::{Path, Query};
use super::openapi::{BadRequest, EventStream, NotFound};
use super::rest::ModelAt;
use crate::{Event, ModelName, Registry, WatchOptions};

/// How many events one catch-up read takes.
const BATCH: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// Start after this event number (as `Last-Event-ID` does, which wins);
    /// without either, the stream starts at the next event.
    after: Option<u64>,
}

/// A model's events as they are appended, as server-sent events.
///
/// Each event is sent as `id: <seq>`, `event: <kind>` (`version_registered`,
/// `stage_changed`, …) and `data: <the Event's JSON>`; a failed read is sent
/// as an `error` event and the stream goes on. The stream does not end (a
/// comment every 15 s keeps it open) until the client leaves or the server
/// shuts down. A client that reconnects with `Last-Event-ID` (browsers'
/// `EventSource` do) or `?after=N` first gets every event after that one, so none is missed.
#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/events",
    operation_id = "model_events",
    tag = "events",
    params(
        ModelAt,
        StreamQuery,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "The `id` of the last event the client received: the stream starts after it."),
    ),
    responses(
        (status = 200, description = "The stream of events.", content_type = "text/event-stream", body = inline(EventStream)),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    ),
)]
pub(crate) async fn stream(
    AxumState(s): AxumState<State>,
    Path(ModelAt { model }): Path<ModelAt>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let model = ModelName::new(&model)?;
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event number"))?,
        ),
    };
    let current = s.registry.model(model.clone()).await?.seq();
    let after = last_id.or(q.after).unwrap_or(current);
    let changes = s.registry.watch_model(
        model.clone(),
        WatchOptions::new().interval(s.options.poll_interval),
    )?;
    let follow = Follow {
        registry: s.registry.clone(),
        model,
        after,
        pending: VecDeque::new(),
        changes,
    };
    let mut stopping = s.stopping.subscribe();
    let events = futures::stream::unfold(follow, |mut f| async move {
        let item = f.next().await;
        Some((Ok(item), f))
    })
    // Ends when the server shuts down, so it does not hold the shutdown up.
    .take_until(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A cursor over a model's log that waits for changes when it has caught up.
struct Follow {
    registry: Registry,
    model: ModelName,
    after: u64,
    pending: VecDeque<Event>,
    changes: BoxStream<'static, crate::Result<crate::ModelState>>,
}

impl Follow {
    /// The next SSE event: a log event, or an `error` event.
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.after = e.seq;
                return to_sse(&e);
            }
            match self
                .registry
                .events_after(self.model.clone(), self.after, BATCH)
                .await
            {
                Ok(batch) if !batch.is_empty() => {
                    self.pending.extend(batch);
                    continue;
                }
                Ok(_) => {}
                Err(e) => return SseEvent::default().event("error").data(e.to_string()),
            }
            // Caught up: wait until the watched state moves past the cursor.
            loop {
                match self.changes.next().await {
                    Some(Ok(state)) if state.seq() > self.after => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        return SseEvent::default().event("error").data(e.to_string());
                    }
                    // The watch never ends on its own; treat an end as a change.
                    None => break,
                }
            }
        }
    }
}

fn to_sse(e: &Event) -> SseEvent {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".to_owned());
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.kind.name())
        .data(data)
}
