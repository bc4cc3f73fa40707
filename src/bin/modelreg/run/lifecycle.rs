//! `modelreg stage|alias|split …` and `route`: moving versions and traffic.

use super::*;

pub(super) async fn stage(ctx: &Ctx, cmd: StageCmd) -> Out {
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

// ----- aliases, splits, routing --------------------------------------------------

pub(super) async fn alias(ctx: &Ctx, cmd: AliasCmd) -> Out {
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

pub(super) async fn split(ctx: &Ctx, cmd: SplitCmd) -> Out {
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

pub(super) async fn route(ctx: &Ctx, a: RouteArgs) -> Out {
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
