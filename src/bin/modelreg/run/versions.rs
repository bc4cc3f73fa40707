//! `modelreg version …`.

use super::*;

pub(super) async fn version(ctx: &Ctx, cmd: VersionCmd) -> Out {
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
        VersionCmd::Verify {
            reference,
            keys,
            min,
        } if !keys.is_empty() => super::signing::verify(ctx, &reference, &keys, min).await,
        VersionCmd::Sign {
            reference,
            key,
            reason,
        } => super::signing::sign(ctx, &reference, &key, reason).await,
        VersionCmd::Attach {
            reference,
            bundle,
            key,
            reason,
        } => super::signing::attach(ctx, &reference, &bundle, &key, reason).await,
        VersionCmd::Signatures { reference, export } => {
            super::signing::signatures(ctx, &reference, export.as_deref()).await
        }
        VersionCmd::Verify { reference, .. } => {
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
        VersionCmd::Scan { reference } => {
            let scan = ctx.session()?.scan_formats(reference.as_str()).await?;
            if ctx.json {
                return Ok(output::json(&scan)?);
            }
            for f in &scan.files {
                println!(
                    "{}",
                    if f.passed() {
                        format!("ok       {f}")
                    } else {
                        format!("REFUSED  {f}")
                    }
                );
            }
            ctx.note(format!(
                "{reference}: {} scanned, {} refused, {} plain data",
                output::count(scan.files.len() as u64 + scan.data_files, "file"),
                scan.refused().count(),
                scan.data_files
            ));
            Ok(())
        }
        VersionCmd::Tag {
            reference,
            set,
            remove,
            override_reason,
        } => {
            let session = ctx.session()?;
            let (set, remove) = (parse::tags(&set)?, parse::tag_keys(&remove)?);
            let v = match override_reason {
                Some(why) => {
                    session
                        .override_immutable(why)
                        .set_version_tags(reference.as_str(), set, remove)
                        .await?
                }
                None => {
                    session
                        .set_version_tags(reference.as_str(), set, remove)
                        .await?
                }
            };
            print_version_change(ctx, &v, "tags")
        }
        VersionCmd::Describe {
            reference,
            description,
            override_reason,
        } => {
            let session = ctx.session()?;
            let v = match override_reason {
                Some(why) => {
                    session
                        .override_immutable(why)
                        .set_version_description(reference.as_str(), description)
                        .await?
                }
                None => {
                    session
                        .set_version_description(reference.as_str(), description)
                        .await?
                }
            };
            print_version_change(ctx, &v, "description")
        }
        VersionCmd::Metrics {
            reference,
            metrics,
            override_reason,
        } => {
            let mut m = modelreg::Metrics::new();
            for input in &metrics {
                let (name, value) = parse::metric(input)?;
                m.insert(MetricName::new(name)?, value)?;
            }
            let session = ctx.session()?;
            let v = match override_reason {
                Some(why) => {
                    session
                        .override_immutable(why)
                        .add_metrics(reference.as_str(), m)
                        .await?
                }
                None => session.add_metrics(reference.as_str(), m).await?,
            };
            print_version_change(ctx, &v, "metrics")
        }
        VersionCmd::Deprecate { reference, reason } => {
            let v = ctx.session()?.deprecate(reference.as_str(), reason).await?;
            print_version_change(ctx, &v, "deprecated")
        }
        #[cfg(feature = "oci")]
        VersionCmd::Push {
            model,
            version,
            reference,
            plain_http,
        } => push(ctx, &model, &version, &reference, plain_http).await,
        #[cfg(feature = "oci")]
        VersionCmd::Pull {
            reference,
            model,
            plain_http,
        } => pull(ctx, &reference, &model, plain_http).await,
        VersionCmd::Purge { reference, reason } => {
            let v = ctx
                .session()?
                .purge_version(reference.as_str(), reason)
                .await?;
            print_version_change(ctx, &v, "purged")
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

/// `MODEL` and `VERSION` as one reference: `3` → `MODEL/3`, `@production`,
/// `:1.4.0` or `#blake3:…` appended as written, any other word an alias or
/// stage (`MODEL@WORD`).
#[cfg(feature = "oci")]
fn version_of(model: &str, version: &str) -> String {
    if version.bytes().all(|b| b.is_ascii_digit()) && !version.is_empty() {
        format!("{model}/{version}")
    } else if version.starts_with(['@', ':', '#', '/']) {
        format!("{model}{version}")
    } else {
        format!("{model}@{version}")
    }
}

#[cfg(feature = "oci")]
async fn push(ctx: &Ctx, model: &str, version: &str, reference: &str, plain_http: bool) -> Out {
    let options = modelreg::oci::OciOptions::new().plain_http(plain_http);
    let version = version_of(model, version);
    let report = ctx
        .registry
        .push_oci(version.as_str(), reference, &options, Vec::new())
        .await?;
    if ctx.json {
        return Ok(output::json(&report)?);
    }
    ctx.note(format!(
        "pushed {version} to {reference}: {}, {} ({} already there)",
        output::count(report.layers, "layer"),
        output::bytes(report.bytes),
        report.layers_present
    ));
    println!("{}", report.digest);
    Ok(())
}

#[cfg(feature = "oci")]
async fn pull(ctx: &Ctx, reference: &str, model: &str, plain_http: bool) -> Out {
    let options = modelreg::oci::OciOptions::new().plain_http(plain_http);
    let report = ctx
        .session()?
        .pull_oci(reference, model, &options, NewVersion::new())
        .await?;
    if ctx.json {
        return Ok(output::json(&report)?);
    }
    ctx.note(format!(
        "pulled {reference} ({}): {}, {}",
        report.digest,
        output::count(report.files, "file"),
        output::bytes(report.bytes)
    ));
    println!("{}/{}", report.version.model, report.version.number);
    Ok(())
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
        "description" if v.description.is_empty() => "(cleared)".to_owned(),
        "description" => v.description.clone(),
        "metrics" => output::pairs(v.metrics.iter().map(|(k, x)| (k, output::float(x)))),
        "purged" => v
            .purged
            .as_ref()
            .map(|p| {
                format!(
                    "by {}: {} ({} of files; `modelreg gc` frees what no other version uses)",
                    p.by,
                    p.reason,
                    output::bytes(v.size)
                )
            })
            .unwrap_or_default(),
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
    // What went over the network, for a store on object storage (local
    // stores send nothing and report 0).
    let sent = if r.requests_sent > 0 {
        format!(
            "; sent {} in {}",
            output::bytes(r.bytes_sent),
            output::count(r.requests_sent, "request"),
        )
    } else {
        String::new()
    };
    ctx.note(format!(
        "registered {}/{} by {}: {}, {} ({} stored new, {} already stored{sent})",
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
        if v.purged.is_some() {
            stage.push_str(" (purged)");
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
    if let Some(p) = &v.purged {
        f.add(
            "purged",
            format!("{} by {}: {}", output::time(p.at), p.by, p.reason),
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
