//! `modelreg model …`.

use super::*;

pub(super) async fn model(ctx: &Ctx, cmd: ModelCmd) -> Out {
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
        ModelCmd::Retain(a) => retain(ctx, a).await,
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

async fn retain(ctx: &Ctx, a: RetainArgs) -> Out {
    let mut policy = RetentionPolicy::new();
    if let Some(n) = a.keep_last {
        policy = policy.keep_last(n);
    }
    if let Some(age) = &a.older_than {
        policy = policy.older_than(parse::age("--older-than", age)?);
    }
    if policy.keep_last.is_none() && policy.older_than.is_none() {
        return Err(Failure::Usage(
            "give --keep-last, --older-than or both: which versions to keep".into(),
        ));
    }
    let report = ctx
        .session()?
        .apply_retention(a.model.as_str(), &policy, !a.apply)
        .await?;
    if ctx.json {
        return Ok(output::json(&report)?);
    }
    let verb = if report.dry_run {
        "would purge"
    } else {
        "purged"
    };
    let mut t = Table::new(&["VERSION", "ACTION"]);
    for n in &report.purged {
        t.row(vec![n.to_string(), verb.to_owned()]);
    }
    for p in &report.protected {
        let why: Vec<String> = p.protections.iter().map(ToString::to_string).collect();
        t.row(vec![
            p.version.to_string(),
            format!("kept: {}", why.join("; ")),
        ]);
    }
    t.print()?;
    ctx.note(format!(
        "{verb} {} of {} ({} of files){}",
        output::count(report.purged.len() as u64, "version"),
        report.model,
        output::bytes(report.bytes),
        if report.dry_run {
            "; nothing written: add --apply to purge, then `modelreg gc` to free the space"
        } else {
            "; run `modelreg gc` to free the space"
        }
    ));
    Ok(())
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
        .add("versions", state.version_count().to_string())
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
