//! Each command: what it asks the library, and what it prints. This module holds
//! what every command shares (the open registry, the actor, Ctrl-C, how events
//! print); each resource's commands are in a module of their own.

mod audit;
mod lifecycle;
mod maintenance;
mod models;
#[cfg(feature = "serve")]
mod serve;
mod signing;
mod versions;

use audit::{history, lineage, watch};
use lifecycle::{alias, route, split, stage};
use maintenance::{check, gc};
use models::model;
use versions::version;

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use modelreg::chrono::Utc;
use modelreg::{
    Actor, ArtifactSource, CreateModel, Error, Event, FetchOptions, GcOptions, HistoryFilter,
    LineageEdgeKind, LineageSubgraph, LinkMode, MetricName, ModelState, NewVersion, Registry,
    RetentionPolicy, Session, SetAlias, Stage, TrafficSplit, VersionFilter, VersionPage,
    VersionRecord, WatchOptions,
};
use serde_json::json;

use crate::args::*;
use crate::failure::Failure;
use crate::output::{self, Fields, Table};
use crate::parse;
use crate::progress::Bar;

type Out = Result<(), Failure>;

/// What every command shares: the global options and the open registry.
pub struct Ctx {
    pub json: bool,
    pub quiet: bool,
    actor: Option<String>,
    pub registry: Registry,
}

impl Ctx {
    /// A session for a command that writes, acting as the resolved actor.
    fn session(&self) -> Result<Session, Failure> {
        let actor = match &self.actor {
            Some(a) => a.clone(),
            None => default_actor(),
        };
        Ok(self.registry.acting_as(Actor::new(actor)?))
    }

    fn note(&self, message: impl std::fmt::Display) {
        if !self.json {
            output::note(self.quiet, message);
        }
    }
}

/// git's `user.email` (of the current directory), else the OS user.
fn default_actor() -> String {
    let git = std::process::Command::new("git")
        .args(["config", "user.email"])
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(out) = git {
        let email = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !email.is_empty() {
            return email;
        }
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Whether the command may create a local registry that does not exist yet:
/// only the two that start one. Any other command on a missing directory is
/// "not found", and leaves nothing behind.
fn creates(command: &Command) -> bool {
    matches!(
        command,
        Command::Model(ModelCmd::Create { .. }) | Command::Version(VersionCmd::Register(_))
    ) || pulls(command)
}

/// Whether the command pulls a version from an OCI registry (which, like
/// `version register`, may start a registry).
#[cfg(feature = "oci")]
fn pulls(command: &Command) -> bool {
    matches!(command, Command::Version(VersionCmd::Pull { .. }))
}

#[cfg(not(feature = "oci"))]
fn pulls(_: &Command) -> bool {
    false
}

/// Opens the registry at `location`: a URL, or a local directory (which only
/// `model create` and `version register` may create).
async fn open(location: Option<&str>, create: bool) -> Result<Registry, Failure> {
    let Some(location) = location.filter(|l| !l.trim().is_empty()) else {
        return Err(Failure::Usage(
            "no registry given: pass --registry DIR|URL or set MODELREG_REGISTRY".into(),
        ));
    };
    if location.contains("://") {
        return Ok(Registry::open_url(location).await?);
    }
    let dir = Path::new(location);
    if !create && !dir.join("metadata").is_dir() {
        let what = if dir.exists() {
            format!("registry at {location} (the directory holds no registry)")
        } else {
            format!("registry at {location} (no such directory)")
        };
        return Err(Error::NotFound {
            what,
            missing: modelreg::Missing::Other,
        }
        .into());
    }
    Ok(Registry::open_local(dir).await?)
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Out {
    if let Command::Completions(c) = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(c.shell, &mut cmd, "modelreg", &mut std::io::stdout());
        return Ok(());
    }
    let registry = open(cli.registry.as_deref(), creates(&cli.command)).await?;
    let ctx = Ctx {
        json: cli.json,
        quiet: cli.quiet,
        actor: cli.actor,
        registry,
    };
    match cli.command {
        Command::Model(c) => model(&ctx, c).await,
        Command::Version(c) => version(&ctx, c).await,
        Command::Stage(c) => stage(&ctx, c).await,
        Command::Alias(c) => alias(&ctx, c).await,
        Command::Split(c) => split(&ctx, c).await,
        Command::Route(a) => route(&ctx, a).await,
        Command::History(a) => history(&ctx, a).await,
        Command::Lineage(a) => lineage(&ctx, a).await,
        Command::Watch(a) => watch(&ctx, a).await,
        Command::Check => check(&ctx).await,
        Command::Gc(a) => gc(&ctx, a).await,
        #[cfg(feature = "serve")]
        Command::Serve(a) => serve::serve(ctx, a, cli.registry.as_deref()).await,
        Command::Completions(_) => unreachable!("handled above"),
    }
}

/// Runs `work` until it ends or Ctrl-C arrives (then `None`; `work` is dropped,
/// which stops it at its next await point).
async fn interruptible<T>(work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        r = work => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    }
}

/// A JSON value as a person reads it: strings without quotes.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The events a write appended: JSON array, or one line each on stderr.
fn print_events(ctx: &Ctx, events: &[Event]) -> Out {
    if ctx.json {
        return Ok(output::json(events)?);
    }
    if events.is_empty() {
        ctx.note("nothing to do: already there");
    }
    for e in events {
        ctx.note(event_line(e));
    }
    Ok(())
}

/// One event as a line: `#12 2026-12-03 10:00:00Z alice stage_changed fraud/3 staging → production: reason`.
fn event_line(e: &Event) -> String {
    format!(
        "#{} {} {} {} {}",
        e.seq,
        output::time(e.time),
        e.actor,
        e.kind.name(),
        event_detail(e)
    )
    .trim_end()
    .to_owned()
}

/// What an event did, from its serde shape (the reference for every kind).
fn event_detail(e: &Event) -> String {
    let v = serde_json::to_value(&e.kind).unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(n) = e.kind.version() {
        parts.push(format!("{}/{n}", e.model));
    }
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    match (field("from"), field("to")) {
        (Some(from), Some(to)) => parts.push(format!("{from} → {to}")),
        (None, Some(to)) => parts.push(format!("→ {to}")),
        _ => {}
    }
    if let Some(a) = field("alias") {
        parts.push(format!("alias {a}"));
    }
    if let Some(s) = field("stage") {
        parts.push(s);
    }
    if let Some(d) = field("decision") {
        parts.push(d);
    }
    // Maps the event carries (metrics added, tags set): their entries.
    for k in ["metrics", "set"] {
        if let Some(map) = v
            .get(k)
            .and_then(|m| m.as_object())
            .filter(|m| !m.is_empty())
        {
            parts.push(output::pairs(map.iter().map(|(k, x)| (k, plain(x)))));
        }
    }
    // A description set (a model's, a version's): its first words.
    if let Some(d) = field("description").filter(|d| !d.is_empty()) {
        let first: String = d.chars().take(60).collect();
        let more = if first.len() < d.len() { "…" } else { "" };
        parts.push(format!("{:?}", format!("{first}{more}")));
    }
    for k in ["reason", "comment"] {
        if let Some(r) = field(k).filter(|r| !r.is_empty()) {
            parts.push(format!("({r})"));
        }
    }
    if let Some(r) = field("overridden") {
        parts.push(format!("(override: {r})"));
    }
    parts.join(" ")
}
