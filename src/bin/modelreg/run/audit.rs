//! `modelreg history`, `lineage` and `watch`: reading what happened.

use super::*;

pub(super) async fn history(ctx: &Ctx, a: HistoryArgs) -> Out {
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

pub(super) async fn lineage(ctx: &Ctx, a: LineageArgs) -> Out {
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

pub(super) async fn watch(ctx: &Ctx, a: WatchArgs) -> Out {
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
