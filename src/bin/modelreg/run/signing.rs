//! `modelreg version sign|attach|signatures` and `version verify --key`.

use std::path::Path;

use modelreg::signing::{KeyId, PublicKey, SigningKey, TrustPolicy};
use modelreg::{SignatureReport, VersionSignature};

use super::*;

/// Reads a PEM file, or fails with a usage error naming it.
fn read_pem(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read the {what} {}: {e}", path.display())))
}

pub(super) async fn sign(ctx: &Ctx, reference: &str, key: &Path, reason: String) -> Out {
    let key = SigningKey::from_pem(&read_pem(key, "private key")?)?;
    let s = ctx.session()?.sign_version(reference, &key, reason).await?;
    if ctx.json {
        return Ok(output::json(&s)?);
    }
    println!("{}", s.key);
    ctx.note(format!(
        "{reference} signed with key {} (bundle {})",
        s.key.short(),
        s.bundle
    ));
    Ok(())
}

pub(super) async fn attach(
    ctx: &Ctx,
    reference: &str,
    bundle: &Path,
    key: &Path,
    reason: String,
) -> Out {
    let key = PublicKey::from_pem(&read_pem(key, "public key")?)?;
    let bytes = std::fs::read(bundle)
        .map_err(|e| Failure::Usage(format!("cannot read the bundle {}: {e}", bundle.display())))?;
    let s = ctx
        .session()?
        .add_signature(reference, bytes, &key, reason)
        .await?;
    if ctx.json {
        return Ok(output::json(&s)?);
    }
    println!("{}", s.key);
    ctx.note(format!(
        "{reference}: signature by key {} verified and attached",
        s.key.short()
    ));
    Ok(())
}

pub(super) async fn signatures(ctx: &Ctx, reference: &str, export: Option<&Path>) -> Out {
    let sigs = ctx.registry.signatures(reference).await?;
    if let Some(dir) = export {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Other(format!("{}: {e}", dir.display())))?;
        for b in ctx.registry.signature_bundles(reference).await? {
            let path = dir.join(format!("{}.sig.json", b.signature.key));
            std::fs::write(&path, &b.bytes)
                .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        }
    }
    if ctx.json {
        return Ok(output::json(&sigs)?);
    }
    print_signatures(&sigs, None)?;
    ctx.note(format!(
        "{reference}: {}",
        output::count(sigs.len() as u64, "signature")
    ));
    Ok(())
}

fn print_signatures(
    sigs: &[VersionSignature],
    report: Option<&SignatureReport>,
) -> std::io::Result<()> {
    let mut t = Table::new(if report.is_some() {
        &["KEY", "HASH", "BY", "AT", "REASON", "STATUS"][..]
    } else {
        &["KEY", "HASH", "BY", "AT", "REASON"][..]
    });
    for (i, s) in sigs.iter().enumerate() {
        let mut row = vec![
            s.key.short().to_owned(),
            s.hash.to_string(),
            s.by.to_string(),
            s.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            s.reason.clone(),
        ];
        if let Some(c) = report.and_then(|r| r.checks.get(i)) {
            row.push(match (&c.problem, c.trusted) {
                (Some(p), _) => format!("INVALID: {p}"),
                (None, true) => "valid, trusted".into(),
                (None, false) => "valid, not trusted".into(),
            });
        }
        t.row(row);
    }
    t.print()
}

/// A trusted key from the command line: a PEM file, else a key id.
fn trusted(arg: &str) -> Result<KeyId, Failure> {
    let path = Path::new(arg);
    if path.is_file() {
        return Ok(PublicKey::from_pem(&read_pem(path, "public key")?)?
            .id()
            .clone());
    }
    arg.parse::<KeyId>().map_err(|_| {
        Failure::Usage(format!(
            "--key {arg}: neither a readable PEM file nor a key id (64 hex digits)"
        ))
    })
}

pub(super) async fn verify(ctx: &Ctx, reference: &str, keys: &[String], min: usize) -> Out {
    let mut policy = TrustPolicy::new().min(min);
    for k in keys {
        policy = policy.key_id(trusted(k)?);
    }
    let bar = Bar::new(ctx.quiet, "verifying");
    let files = ctx
        .registry
        .verify_with_progress(reference, bar.progress())
        .await;
    bar.finish();
    let files = files?;
    let report = ctx.registry.verify_signatures(reference, &policy).await?;
    if ctx.json {
        output::json(&json!({ "files": files, "signatures": report }))?;
    } else {
        let sigs: Vec<VersionSignature> =
            report.checks.iter().map(|c| c.signature.clone()).collect();
        print_signatures(&sigs, Some(&report))?;
    }
    // A policy not met is reported once, as the error (one line on stderr).
    let report = report.into_result()?;
    if !ctx.json {
        ctx.note(format!(
            "{reference}: {} re-hashed; {} of {} required trusted key(s) signed",
            output::count(files.files, "file"),
            report.trusted.len(),
            report.required
        ));
    }
    Ok(())
}
