//! Each command: what it asks the library, and what it prints.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use modelreg::chrono::Utc;
use modelreg::{
    Actor, ArtifactSource, CreateModel, Error, Event, FetchOptions, GcOptions, HistoryFilter,
    LineageEdgeKind, LineageSubgraph, LinkMode, MetricName, ModelState, NewVersion, Registry,
    Session, SetAlias, Stage, TrafficSplit, VersionFilter, VersionPage, VersionRecord,
    WatchOptions,
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
    )
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
        Command::Completions(_) => unreachable!("handled above"),
    }
}

// ----- models --------------------------------------------------------------------

async fn model(ctx: &Ctx, cmd: ModelCmd) -> Out {
    match cmd {
        ModelCmd::List => {
            let models = ctx.registry.model_summaries().await?;
            if ctx.json {
                return Ok(output::json(&models)?);
            }
            let mut t = Table::new(&[
                "MODEL",
                "VERSIONS",
                "PRODUCTION",
                "LATEST",
                "ALIASES",
                "UPDATED",
            ]);
            for m in &models {
                t.row(vec![
                    m.name.to_string(),
                    m.versions.to_string(),
                    m.production.map(|v| v.to_string()).unwrap_or_default(),
                    m.latest.map(|v| v.to_string()).unwrap_or_default(),
                    output::pairs(m.aliases.iter()),
                    output::time(m.updated_at),
                ]);
            }
            t.print()?;
            Ok(())
        }
        ModelCmd::Show { model } => {
            let state = ctx.registry.model(model.as_str()).await?;
            if ctx.json {
                return Ok(output::json(&state)?);
            }
            show_model(&state)
        }
        ModelCmd::Create {
            model,
            description,
            tags,
            metric_goals,
            exist_ok,
        } => {
            let mut options = CreateModel::new();
            if let Some(d) = description {
                options = options.description(d);
            }
            for (k, v) in parse::tags(&tags)? {
                options = options.tag(k.as_str(), v);
            }
            for g in &metric_goals {
                let (name, spec) = parse::metric_goal(g)?;
                options = options.metric(name, spec);
            }
            let session = ctx.session()?;
            let state = if exist_ok {
                session.ensure_model(model.as_str(), options).await?
            } else {
                session.create_model(model.as_str(), options).await?
            };
            if ctx.json {
                return Ok(output::json(&state)?);
            }
            ctx.note(format!("model {} (by {})", state.name(), session.actor()));
            Ok(())
        }
        ModelCmd::Tag { model, set, remove } => {
            let state = ctx
                .session()?
                .set_model_tags(
                    model.as_str(),
                    parse::tags(&set)?,
                    parse::tag_keys(&remove)?,
                )
                .await?;
            if ctx.json {
                return Ok(output::json(&state)?);
            }
            ctx.note(format!(
                "tags of {}: {}",
                state.name(),
                output::pairs(state.tags().iter())
            ));
            Ok(())
        }
    }
}

fn show_model(state: &ModelState) -> Out {
    let mut f = Fields::default();
    f.add("model", state.name().to_string())
        .add("description", state.description())
        .add(
            "created",
            format!(
                "{} by {}",
                output::time(state.created_at()),
                state.created_by()
            ),
        )
        .add("updated", output::time(state.updated_at()))
        .add("versions", state.versions().len().to_string())
        .add(
            "production",
            state
                .production()
                .map(|v| v.number.to_string())
                .unwrap_or_else(|| "none".into()),
        )
        .add("tags", output::pairs(state.tags().iter()))
        .add(
            "metric goals",
            output::pairs(state.metric_specs().iter().map(|(k, s)| (k, s.goal))),
        )
        .add(
            "aliases",
            output::pairs(state.aliases().iter().map(|(a, t)| (a, t.version))),
        );
    for stage in [Stage::Staging, Stage::Validation, Stage::Production] {
        let in_stage: Vec<String> = state
            .versions()
            .iter()
            .filter(|v| v.stage == stage)
            .map(|v| v.number.to_string())
            .collect();
        f.add(format!("in {stage}"), in_stage.join(", "));
    }
    if let Some(split) = state.traffic_split() {
        f.add(
            "traffic split",
            output::pairs(split.routes().iter().map(|r| (&r.target, r.weight))),
        );
    }
    let gates = state.gates();
    if !gates.is_empty() {
        f.add("gates", serde_json::to_string(gates).unwrap_or_default());
    }
    Ok(f.print()?)
}

// ----- versions ------------------------------------------------------------------

async fn version(ctx: &Ctx, cmd: VersionCmd) -> Out {
    match cmd {
        VersionCmd::Register(a) => register(ctx, *a).await,
        VersionCmd::List(a) => list(ctx, a).await,
        VersionCmd::Show { reference, files } => {
            let v = ctx.registry.resolve(reference.as_str()).await?;
            let manifest = if files {
                Some(ctx.registry.manifest(reference.as_str()).await?)
            } else {
                None
            };
            if ctx.json {
                match manifest {
                    Some(m) => output::json(&json!({ "version": v, "manifest": m }))?,
                    None => output::json(&v)?,
                }
                return Ok(());
            }
            show_version(&v)?;
            if let Some(m) = manifest {
                println!();
                let mut t = Table::new(&["PATH", "SIZE", "DIGEST"]);
                for e in m.entries() {
                    t.row(vec![
                        e.path.to_string(),
                        output::bytes(e.size),
                        e.digest.to_string(),
                    ]);
                }
                t.print()?;
            }
            Ok(())
        }
        VersionCmd::Fetch {
            reference,
            dest,
            link,
        } => {
            let bar = Bar::new(ctx.quiet, "fetching");
            let options = FetchOptions::new()
                .link(link_mode(link))
                .progress(bar.progress());
            let fetch = ctx.registry.fetch(reference.as_str(), &dest, options);
            let report = match interruptible(fetch).await {
                Some(r) => r,
                None => {
                    bar.abandon();
                    return Err(Failure::Interrupted(format!(
                        "interrupted: nothing was written to {} (the partial download was removed)",
                        dest.display()
                    )));
                }
            };
            bar.finish();
            let report = report?;
            if ctx.json {
                return Ok(output::json(&report)?);
            }
            ctx.note(format!(
                "fetched {reference} into {}: {}, {}, {} linked",
                report.path.display(),
                output::count(report.files, "file"),
                output::bytes(report.bytes),
                report.linked
            ));
            Ok(())
        }
        VersionCmd::Verify { reference } => {
            let bar = Bar::new(ctx.quiet, "verifying");
            let report = ctx
                .registry
                .verify_with_progress(reference.as_str(), bar.progress())
                .await;
            bar.finish();
            let report = report?;
            if ctx.json {
                return Ok(output::json(&report)?);
            }
            ctx.note(format!(
                "{reference} verified: {}, {} re-hashed",
                output::count(report.files, "file"),
                output::bytes(report.bytes)
            ));
            Ok(())
        }
        VersionCmd::Tag {
            reference,
            set,
            remove,
        } => {
            let v = ctx
                .session()?
                .set_version_tags(
                    reference.as_str(),
                    parse::tags(&set)?,
                    parse::tag_keys(&remove)?,
                )
                .await?;
            print_version_change(ctx, &v, "tags")
        }
        VersionCmd::Metrics { reference, metrics } => {
            let mut m = modelreg::Metrics::new();
            for input in &metrics {
                let (name, value) = parse::metric(input)?;
                m.insert(MetricName::new(name)?, value)?;
            }
            let v = ctx.session()?.add_metrics(reference.as_str(), m).await?;
            print_version_change(ctx, &v, "metrics")
        }
        VersionCmd::Deprecate { reference, reason } => {
            let v = ctx.session()?.deprecate(reference.as_str(), reason).await?;
            print_version_change(ctx, &v, "deprecated")
        }
        VersionCmd::Diff { a, b } => {
            let diff = ctx.registry.compare(a.as_str(), b.as_str()).await?;
            if ctx.json {
                return Ok(output::json(&diff)?);
            }
            print_diff(&diff)
        }
    }
}

fn link_mode(link: Link) -> LinkMode {
    match link {
        Link::Copy => LinkMode::Copy,
        Link::Reflink => LinkMode::Reflink,
        Link::Hardlink => LinkMode::HardLink,
    }
}

fn print_version_change(ctx: &Ctx, v: &VersionRecord, what: &str) -> Out {
    if ctx.json {
        return Ok(output::json(v)?);
    }
    let detail = match what {
        "tags" => output::pairs(v.tags.iter()),
        "metrics" => output::pairs(v.metrics.iter().map(|(k, x)| (k, output::float(x)))),
        _ => v
            .deprecated
            .as_ref()
            .map(|d| format!("by {}: {}", d.by, d.reason))
            .unwrap_or_default(),
    };
    ctx.note(format!("{}/{} {what}: {detail}", v.model, v.number));
    Ok(())
}

async fn register(ctx: &Ctx, a: RegisterArgs) -> Out {
    let source = match std::fs::metadata(&a.path) {
        Ok(m) if m.is_dir() => ArtifactSource::dir(&a.path),
        Ok(m) if m.is_file() => ArtifactSource::file(&a.path),
        Ok(_) => {
            return Err(Error::InvalidPath {
                path: a.path.display().to_string(),
                reason: "is neither a directory nor a regular file".into(),
            }
            .into());
        }
        Err(e) => {
            return Err(Error::Io {
                path: a.path.clone(),
                source: e,
            }
            .into());
        }
    };
    let mut v = NewVersion::new().link(link_mode(a.link));
    for m in &a.metrics {
        let (name, value) = parse::metric(m)?;
        v = v.metric(name, value);
    }
    for p in &a.params {
        let (name, value) = parse::param(p)?;
        v = v.param(name, value);
    }
    for (k, value) in parse::tags(&a.tags)? {
        v = v.tag(k.as_str(), value);
    }
    if let Some(s) = &a.semver {
        v = v.semver(s.as_str());
    }
    if let Some(d) = a.description {
        v = v.description(d);
    }
    for p in &a.parents {
        let (reference, relation) = parse::parent(p)?;
        v = v.parent(reference, relation);
    }
    for d in &a.datasets {
        v = v.dataset(parse::dataset(d)?);
    }
    match (&a.code_commit, a.no_code) {
        (Some(sha), _) => v = v.code_commit(sha.as_str()),
        (None, false) => v = v.code_from_git(std::env::current_dir().map_err(Failure::Output)?),
        (None, true) => {}
    }
    for f in &a.frameworks {
        let (name, version) = parse::key_value("framework", f)?;
        v = v.framework(name, version);
    }
    if !a.no_env {
        v = v.environment_captured();
    }
    let bar = Bar::new(ctx.quiet, "registering");
    v = v.progress(bar.progress());
    let session = ctx.session()?;
    // The model is created on first use; what it held before tells, after a
    // Ctrl-C, whether the version made it.
    let before = session
        .ensure_model(a.model.as_str(), CreateModel::new())
        .await?
        .versions()
        .len();
    let registered = match interruptible(session.register(a.model.as_str(), source, v)).await {
        Some(r) => r,
        None => {
            bar.abandon();
            return Err(Failure::Interrupted(
                interrupted_register(ctx, &session, &a.model, before).await,
            ));
        }
    };
    bar.finish();
    let registered = registered?;
    if ctx.json {
        return Ok(output::json(&json!({
            "version": &*registered,
            "report": registered.report,
        }))?);
    }
    let r = &registered.report;
    ctx.note(format!(
        "registered {}/{} by {}: {}, {} ({} stored new, {} already stored)",
        registered.model,
        registered.number,
        registered.created_by,
        output::count(registered.files, "file"),
        output::bytes(registered.size),
        output::bytes(r.bytes_stored),
        output::bytes(r.bytes_present),
    ));
    // The reference on stdout, so `v=$(modelreg version register …)` works.
    println!("{}/{}", registered.model, registered.number);
    Ok(())
}

/// What a register interrupted by Ctrl-C left: the version, if its event was
/// appended before the interrupt; else nothing visible.
async fn interrupted_register(ctx: &Ctx, session: &Session, model: &str, before: usize) -> String {
    let mine = ctx.registry.model(model).await.ok().and_then(|s| {
        s.versions()
            .iter()
            .skip(before)
            .find(|v| &v.created_by == session.actor())
            .map(|v| format!("{}/{}", v.model, v.number))
    });
    match mine {
        Some(r) => format!("interrupted after the version was registered: {r} is kept"),
        None => format!(
            "interrupted: no version of {model} was registered; files already copied into the \
             store are unreferenced, and `modelreg gc` removes them"
        ),
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

async fn list(ctx: &Ctx, a: ListArgs) -> Out {
    let mut filter = VersionFilter::new();
    if let Some(s) = &a.stage {
        filter = filter.stage(parse::stage(s)?);
    }
    if let Some(t) = &a.tag {
        filter = match t.split_once('=') {
            Some((k, v)) => filter.tag_value(k, v),
            None => filter.tag(t),
        };
    }
    if a.no_deprecated {
        filter = filter.exclude_deprecated();
    }
    let mut page = VersionPage::new().limit(a.limit.max(1));
    let mut descending = a.reverse;
    if let Some(m) = &a.by {
        page = page.by_metric(m);
        // Best first: highest unless the model's goal for it is to minimize.
        let state = ctx.registry.model(a.model.as_str()).await?;
        let minimize = state
            .metric_specs()
            .iter()
            .any(|(k, s)| k.as_str() == m && s.goal == modelreg::Goal::Minimize);
        descending = descending == minimize;
    }
    if descending {
        page = page.descending();
    }
    if let Some(t) = a.after {
        page = page.after(t);
    }
    let page = ctx
        .registry
        .list_versions_page(a.model.as_str(), &filter, page)
        .await?;
    if ctx.json {
        return Ok(output::json(&page)?);
    }
    let mut metric_names: Vec<&MetricName> = Vec::new();
    for v in &page.items {
        for (k, _) in v.metrics.iter() {
            if !metric_names.contains(&k) && metric_names.len() < 4 {
                metric_names.push(k);
            }
        }
    }
    let mut t = Table::new(&[
        "VERSION", "SEMVER", "STAGE", "CREATED", "BY", "SIZE", "METRICS",
    ]);
    for v in &page.items {
        let mut stage = v.stage.to_string();
        if v.deprecated.is_some() {
            stage.push_str(" (deprecated)");
        }
        t.row(vec![
            v.number.to_string(),
            v.semver.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            stage,
            output::time(v.created_at),
            v.created_by.to_string(),
            output::bytes(v.size),
            output::pairs(
                metric_names
                    .iter()
                    .filter_map(|k| v.metrics.get(k.as_str()).map(|x| (k, output::float(x)))),
            ),
        ]);
    }
    t.print()?;
    if let Some(next) = &page.next {
        ctx.note(format!(
            "{} of {} shown; next page: --after {next}",
            page.items.len(),
            page.total.unwrap_or(0)
        ));
    }
    Ok(())
}

fn show_version(v: &VersionRecord) -> Out {
    let mut f = Fields::default();
    let p = &v.provenance;
    f.add("version", format!("{}/{}", v.model, v.number))
        .add(
            "semver",
            v.semver.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        )
        .add("stage", {
            let since = v
                .stage_since
                .map(|t| format!(" since {}", output::time(t)))
                .unwrap_or_default();
            format!("{}{since}", v.stage)
        })
        .add(
            "created",
            format!("{} by {}", output::time(v.created_at), v.created_by),
        )
        .add("description", v.description.as_str())
        .add("artifact", v.artifact.to_string())
        .add(
            "size",
            format!(
                "{} in {}",
                output::bytes(v.size),
                output::count(v.files, "file")
            ),
        )
        .add(
            "metrics",
            output::pairs(v.metrics.iter().map(|(k, x)| (k, output::float(x)))),
        )
        .add(
            "params",
            output::pairs(
                modelreg::flatten_hyperparameters(&p.hyperparameters)
                    .iter()
                    .map(|(k, x)| (k, plain(&serde_json::to_value(x).unwrap_or_default()))),
            ),
        )
        .add("tags", output::pairs(v.tags.iter()))
        .add(
            "code",
            p.code
                .as_ref()
                .map(|c| {
                    let repo = c
                        .repository
                        .as_ref()
                        .map(|r| format!("{r} "))
                        .unwrap_or_default();
                    let dirty = if c.dirty { " (dirty)" } else { "" };
                    format!("{repo}{}{dirty}", c.commit)
                })
                .unwrap_or_default(),
        )
        .add(
            "datasets",
            p.datasets
                .iter()
                .map(|d| match &d.version {
                    Some(ver) => format!("{}:{}@{ver}", d.role, d.name),
                    None => format!("{}:{}", d.role, d.name),
                })
                .collect::<Vec<_>>()
                .join(", "),
        )
        .add(
            "parents",
            p.parents
                .iter()
                .map(|pr| format!("{}/{} ({})", pr.model, pr.version, pr.relation))
                .collect::<Vec<_>>()
                .join(", "),
        )
        .add("environment", output::pairs(p.environment.flatten().iter()))
        .add(
            "reached",
            v.reached
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        );
    for (stage, by) in &v.approvals {
        f.add(
            format!("approvals {stage}"),
            by.iter()
                .map(|(who, a)| format!("{who} {}", a.decision))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    if let Some(d) = &v.deprecated {
        f.add(
            "deprecated",
            format!("{} by {}: {}", output::time(d.at), d.by, d.reason),
        );
    }
    Ok(f.print()?)
}

fn print_diff(d: &modelreg::VersionDiff) -> Out {
    use std::io::Write;
    Ok(std::io::stdout()
        .lock()
        .write_all(d.to_table().as_bytes())?)
}

/// A JSON value as a person reads it: strings without quotes.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

// ----- lifecycle -----------------------------------------------------------------

async fn stage(ctx: &Ctx, cmd: StageCmd) -> Out {
    let session = ctx.session()?;
    let events = match cmd {
        StageCmd::Transition {
            reference,
            stage,
            reason,
        } => vec![
            session
                .transition(reference.as_str(), parse::stage(&stage)?, reason)
                .await?,
        ],
        StageCmd::Promote {
            reference,
            to,
            reason,
        } => {
            session
                .promote_to(reference.as_str(), parse::stage(&to)?, reason)
                .await?
        }
        StageCmd::Approve {
            reference,
            stage,
            comment,
        } => vec![
            session
                .approve(reference.as_str(), parse::stage(&stage)?, comment)
                .await?,
        ],
        StageCmd::Reject {
            reference,
            stage,
            comment,
        } => vec![
            session
                .reject(reference.as_str(), parse::stage(&stage)?, comment)
                .await?,
        ],
        StageCmd::Rollback { model, reason } => {
            vec![session.rollback(model.as_str(), reason).await?]
        }
    };
    print_events(ctx, &events)
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
    for k in ["reason", "comment"] {
        if let Some(r) = field(k).filter(|r| !r.is_empty()) {
            parts.push(format!("({r})"));
        }
    }
    parts.join(" ")
}

// ----- aliases, splits, routing --------------------------------------------------

async fn alias(ctx: &Ctx, cmd: AliasCmd) -> Out {
    match cmd {
        AliasCmd::Set {
            reference,
            alias,
            protected,
            reason,
        } => {
            let e = ctx
                .session()?
                .set_alias(
                    reference.as_str(),
                    &alias,
                    SetAlias::new().protected(protected).reason(reason),
                )
                .await?;
            print_events(ctx, &[e])
        }
        AliasCmd::Rm {
            model,
            alias,
            reason,
        } => {
            let e = ctx
                .session()?
                .remove_alias(model.as_str(), &alias, reason)
                .await?;
            print_events(ctx, &[e])
        }
        AliasCmd::List { model } => {
            let state = ctx.registry.model(model.as_str()).await?;
            if ctx.json {
                return Ok(output::json(state.aliases())?);
            }
            let mut t = Table::new(&["ALIAS", "VERSION", "PROTECTED", "SET", "BY"]);
            for (name, target) in state.aliases() {
                t.row(vec![
                    name.to_string(),
                    target.version.to_string(),
                    if target.protected { "yes" } else { "no" }.into(),
                    output::time(target.set_at),
                    target.set_by.to_string(),
                ]);
            }
            t.print()?;
            Ok(())
        }
    }
}

async fn split(ctx: &Ctx, cmd: SplitCmd) -> Out {
    match cmd {
        SplitCmd::Set {
            model,
            routes,
            salt,
            reason,
        } => {
            let mut pairs = Vec::with_capacity(routes.len());
            for r in &routes {
                let (target, weight) = parse::key_value("route", r)?;
                let weight: u32 = weight.parse().map_err(|_| Error::InvalidInput {
                    what: format!("route {r:?}"),
                    reason: "the weight is not a whole number".into(),
                })?;
                pairs.push((target, weight));
            }
            let mut split = TrafficSplit::new(pairs)?;
            if let Some(s) = salt {
                split = split.with_salt(s)?;
            }
            let e = ctx
                .session()?
                .set_traffic_split(model.as_str(), split, reason)
                .await?;
            print_events(ctx, &[e])
        }
        SplitCmd::Show { model } => {
            let state = ctx.registry.model(model.as_str()).await?;
            let Some(split) = state.traffic_split() else {
                return Err(Error::NotFound {
                    what: format!("traffic split of model '{model}'"),
                    missing: modelreg::Missing::TrafficSplit {
                        model: model.clone(),
                    },
                }
                .into());
            };
            let name = state.name().clone();
            let resolved: Vec<(String, u32, Option<u64>)> = split
                .routes()
                .iter()
                .map(|r| {
                    let version = state
                        .resolve(&r.target.in_model(&name).selector)
                        .ok()
                        .map(|v| v.number.get());
                    (r.target.to_string(), r.weight, version)
                })
                .collect();
            if ctx.json {
                return Ok(output::json(&json!({
                    "split": split,
                    "resolved": resolved.iter().map(|(t, w, v)| json!({
                        "target": t, "weight": w, "version": v,
                    })).collect::<Vec<_>>(),
                }))?);
            }
            let total = split.total_weight().max(1);
            let mut t = Table::new(&["TARGET", "WEIGHT", "SHARE", "VERSION"]);
            for (target, weight, version) in &resolved {
                t.row(vec![
                    target.clone(),
                    weight.to_string(),
                    format!("{:.1}%", f64::from(*weight) * 100.0 / total as f64),
                    version
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "unresolved".into()),
                ]);
            }
            t.print()?;
            Ok(())
        }
        SplitCmd::Clear { model, reason } => {
            let e = ctx
                .session()?
                .clear_traffic_split(model.as_str(), reason)
                .await?;
            print_events(ctx, &[e])
        }
    }
}

async fn route(ctx: &Ctx, a: RouteArgs) -> Out {
    let routed = ctx.registry.route(a.model.as_str(), &a.key).await?;
    if ctx.json {
        return Ok(output::json(&json!({
            "model": a.model,
            "key": a.key,
            "target": routed.target.to_string(),
            "from_split": routed.from_split,
            "version": &*routed.version,
        }))?);
    }
    println!(
        "{}/{}\t{}{}",
        routed.version.model,
        routed.version.number,
        routed.target,
        if routed.from_split {
            " (traffic split)"
        } else {
            ""
        }
    );
    Ok(())
}

// ----- history, lineage, watch ---------------------------------------------------

async fn history(ctx: &Ctx, a: HistoryArgs) -> Out {
    let mut filter = HistoryFilter::new();
    if let Some(k) = a.kind {
        filter = filter.kind(k);
    }
    if let Some(who) = a.actor_is {
        filter = filter.actor(Actor::new(who)?);
    }
    if let Some(n) = a.version {
        filter = filter.version(modelreg::VersionNumber::new(n)?);
    }
    if let Some(s) = &a.since {
        filter = filter.since(parse::since(s, Utc::now())?);
    }
    let page = ctx
        .registry
        .history_page(a.model.as_str(), &filter, None, a.limit.max(1))
        .await?;
    if ctx.json {
        return Ok(output::json(&page)?);
    }
    let mut t = Table::new(&["SEQ", "TIME", "ACTOR", "EVENT", "DETAIL"]);
    for e in &page.items {
        t.row(vec![
            e.seq.to_string(),
            output::time(e.time),
            e.actor.to_string(),
            e.kind.name().to_owned(),
            event_detail(e),
        ]);
    }
    t.print()?;
    if page.next.is_some() {
        ctx.note(format!(
            "{} newest shown; more with --limit",
            page.items.len()
        ));
    }
    Ok(())
}

async fn lineage(ctx: &Ctx, a: LineageArgs) -> Out {
    let graph = if a.downstream {
        ctx.registry
            .downstream(a.reference.as_str(), a.depth)
            .await?
    } else {
        ctx.registry.upstream(a.reference.as_str(), a.depth).await?
    };
    match a.format {
        _ if ctx.json => output::json(&graph)?,
        LineageFormat::Dot => print!("{}", graph.to_dot()),
        LineageFormat::Mermaid => print!("{}", graph.to_mermaid()),
        LineageFormat::Tree => print!("{}", tree(&graph)),
    }
    Ok(())
}

/// The subgraph as an indented tree from its origin; a node reached twice is
/// printed in full once.
fn tree(g: &LineageSubgraph) -> String {
    let mut out = String::new();
    let mut seen = HashSet::new();
    fn walk(
        g: &LineageSubgraph,
        i: usize,
        depth: usize,
        how: Option<LineageEdgeKind>,
        seen: &mut HashSet<usize>,
        out: &mut String,
    ) {
        let node = &g.nodes()[i];
        let how = match how {
            Some(kind @ LineageEdgeKind::Dataset { .. }) => format!(" ({kind} data)"),
            Some(kind) => format!(" ({kind})"),
            None => String::new(),
        };
        let again = !seen.insert(i);
        out.push_str(&"  ".repeat(depth));
        out.push_str(&format!(
            "{}{how}{}\n",
            node.node,
            if again { " …" } else { "" }
        ));
        if again {
            return;
        }
        for e in g.edges() {
            let next = if e.from == i && g.nodes()[e.to].depth > node.depth {
                e.to
            } else if e.to == i && g.nodes()[e.from].depth > node.depth {
                e.from
            } else {
                continue;
            };
            walk(g, next, depth + 1, Some(e.kind), seen, out);
        }
    }
    if !g.nodes().is_empty() {
        walk(g, 0, 0, None, &mut seen, &mut out);
    }
    out
}

async fn watch(ctx: &Ctx, a: WatchArgs) -> Out {
    if !(a.interval.is_finite() && a.interval > 0.0) {
        return Err(Failure::Usage(format!(
            "--interval {} is not a positive number of seconds",
            a.interval
        )));
    }
    let options = WatchOptions::new().interval(Duration::from_secs_f64(a.interval));
    let mut stream = ctx.registry.watch(a.reference.as_str(), options)?;
    let mut printed = 0;
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(item) = next else { return Ok(()) };
        match item {
            Ok(v) => {
                if ctx.json {
                    output::json_line(&v)?;
                } else {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "{}\t{}\t{}/{}\t{}",
                        output::time(Utc::now()),
                        a.reference,
                        v.model,
                        v.number,
                        v.stage
                    )?;
                    out.flush()?;
                }
                printed += 1;
                if a.count.is_some_and(|c| printed >= c) {
                    return Ok(());
                }
            }
            // Reported once per outage; the watch goes on.
            Err(e) => eprintln!("modelreg: {}", Failure::Registry(e)),
        }
    }
}

// ----- maintenance ---------------------------------------------------------------

async fn check(ctx: &Ctx) -> Out {
    let bar = Bar::new(ctx.quiet, "checking");
    let report = ctx.registry.check_with_progress(bar.progress()).await;
    bar.finish();
    let report = report?;
    if ctx.json {
        output::json(&report)?;
    } else {
        for p in &report.problems {
            let at = p
                .location
                .as_ref()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            println!("problem: {}: {}{at}", p.subject, p.detail);
        }
        ctx.note(format!(
            "checked {}, {}, {}, {}, {} ({}): {}",
            output::count(report.models, "model"),
            output::count(report.events, "event"),
            output::count(report.checkpoints, "checkpoint"),
            output::count(report.versions, "version"),
            output::count(report.blobs, "blob"),
            output::bytes(report.bytes),
            output::count(report.problems.len() as u64, "problem")
        ));
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(Failure::Problems(report.problems.len()))
    }
}

async fn gc(ctx: &Ctx, a: GcArgs) -> Out {
    let grace = parse::age("--grace", &a.grace)?;
    let bar = Bar::files(
        ctx.quiet,
        if a.dry_run {
            "marking (dry run)"
        } else {
            "marking"
        },
        "manifests",
    );
    let report = ctx
        .registry
        .gc_with_progress(GcOptions::new(grace).dry_run(a.dry_run), bar.progress())
        .await;
    bar.finish();
    let report = report?;
    if ctx.json {
        return Ok(output::json(&report)?);
    }
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    ctx.note(format!(
        "{verb} {} blobs ({}); kept {} referenced, {} younger than {}, {} in flight; {} stale temp files",
        report.deleted.len(),
        output::bytes(report.bytes_freed),
        report.referenced,
        report.young,
        a.grace,
        report.in_flight,
        report.temp_files
    ));
    Ok(())
}
