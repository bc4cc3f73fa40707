//! `modelreg check` and `gc`.

use super::*;

pub(super) async fn check(ctx: &Ctx) -> Out {
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

pub(super) async fn gc(ctx: &Ctx, a: GcArgs) -> Out {
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
    if report.packs_repacked + report.packs_retired + report.packs_deleted > 0 {
        let deferred = if report.packs_deletion_deferred {
            "; deleting packs put off (a registration in flight)"
        } else {
            ""
        };
        ctx.note(format!(
            "packs: {} repacked ({} copied), {} retired, {verb} {} ({}){deferred}",
            report.packs_repacked,
            output::bytes(report.pack_bytes_copied),
            report.packs_retired,
            report.packs_deleted,
            output::bytes(report.pack_bytes_deleted),
        ));
    }
    if report.checkpoint_parts > 0 {
        let aborted = match report.checkpoint_part_sweeps_aborted {
            0 => String::new(),
            n => format!("; {n} models left alone (a checkpoint head cannot be decoded)"),
        };
        ctx.note(format!(
            "checkpoint parts: {verb} {} ({}); kept {} named, {} unnamed for now{aborted}",
            report.checkpoint_parts_deleted,
            output::bytes(report.checkpoint_part_bytes_freed),
            report.checkpoint_parts_named,
            report.checkpoint_parts_pending,
        ));
    }
    Ok(())
}
