//! `modelreg serve`: the registry over HTTP (feature `serve`).

use std::net::SocketAddr;
use std::time::Duration;

use modelreg::server::{Server, ServerOptions, Tokens, Webhook};

use super::*;
use crate::args::ServeArgs;

/// Where the tokens come from when no file is given.
const TOKENS_ENV: &str = "MODELREG_SERVE_TOKENS";

pub(super) async fn serve(ctx: Ctx, a: ServeArgs, location: Option<&str>) -> Out {
    let addr: SocketAddr = a.listen.parse().map_err(|_| {
        Failure::Usage(format!(
            "--listen {:?} is not an address such as 127.0.0.1:8080",
            a.listen
        ))
    })?;
    let mut tokens = match (&a.tokens_file, std::env::var(TOKENS_ENV).ok()) {
        (Some(file), _) => Tokens::from_file(file)?,
        (None, Some(text)) if !text.trim().is_empty() => Tokens::parse(&text)?,
        _ => Tokens::none(),
    };
    if a.anonymous_read {
        tokens = tokens.anonymous_read(true);
    }
    if tokens.is_empty() && !addr.ip().is_loopback() {
        return Err(Failure::Usage(format!(
            "refusing to listen on {addr} without tokens: a server without tokens is read-only \
             and for this machine only; give tokens ({TOKENS_ENV} or --tokens-file) or listen \
             on 127.0.0.1"
        )));
    }
    let mut options = ServerOptions::new()
        .tokens(tokens)
        .max_upload_bytes(a.max_upload_bytes)
        .staged_upload_max_age(parse::age(
            "--staged-upload-max-age",
            &a.staged_upload_max_age,
        )?);
    let mut hooked = false;
    if let Some(file) = &a.webhooks {
        let text = std::fs::read(file)
            .map_err(|e| Failure::Usage(format!("--webhooks {}: {e}", file.display())))?;
        let hooks: Vec<Webhook> = serde_json::from_slice(&text)
            .map_err(|e| Failure::Usage(format!("--webhooks {}: {e}", file.display())))?;
        hooked = !hooks.is_empty();
        options = options.webhooks(hooks)?;
    }
    // Staged uploads on the registry's own filesystem are linked into the store
    // rather than copied.
    let staging = a.staging_dir.clone().or_else(|| {
        location
            .filter(|l| !l.contains("://"))
            .map(|dir| std::path::Path::new(dir).join("serve-staging"))
    });
    // The state follows the staging directory unless told otherwise (the
    // library's default too); never the shared system temp dir.
    let stateless = a.state_dir.is_none() && staging.is_none();
    if let Some(dir) = staging {
        options = options.staging_dir(dir);
    }
    if let Some(dir) = &a.state_dir {
        options = options.state_dir(dir);
    }
    let server = Server::new(ctx.registry, options);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::Other(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Failure::Other(format!("cannot listen on {addr}: {e}")))?;
    if ctx.json {
        // One line a script can wait for (and read the port from, for `:0`).
        let url = format!("http://{bound}");
        let line = serde_json::json!({
            "listening": url,
            "read_only": server.read_only(),
            "rest": format!("{url}/api/v1"),
            "openapi": format!("{url}/openapi.json"),
            "hf_endpoint": url,
            "mlflow_tracking_uri": url,
            "ui": format!("{url}/ui/"),
        });
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| Failure::Other(format!("cannot write to stdout: {e}")))?;
    }
    if !ctx.quiet {
        let access = if server.read_only() {
            "read-only (no tokens configured; loopback only)"
        } else {
            "tokens required for writes"
        };
        eprintln!("modelreg serve: listening on http://{bound}, {access}");
        eprintln!("  Web UI: http://{bound}/ui/");
        eprintln!(
            "  Hugging Face: HF_ENDPOINT=http://{bound}   MLflow: MlflowClient(tracking_uri=\"http://{bound}\")   REST: http://{bound}/api/v1/models"
        );
        if hooked && stateless {
            eprintln!(
                "  webhooks: positions kept in memory only (no --state-dir or --staging-dir): \
                 events made while the server is down will not be delivered"
            );
        }
    }
    let grace = Duration::from_secs_f64(a.shutdown_grace.max(0.0));
    let quiet = ctx.quiet;
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown_signal().await;
        if !quiet {
            eprintln!("modelreg serve: stopping; waiting up to {grace:?} for requests in flight");
        }
        let _ = stopped_tx.send(());
    };
    let serving = server.serve(listener, shutdown);
    tokio::pin!(serving);
    tokio::select! {
        r = &mut serving => r.map_err(|e| Failure::Other(format!("serving on {bound} failed: {e}")))?,
        _ = async {
            let _ = stopped_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            if !quiet {
                eprintln!("modelreg serve: requests still in flight after {grace:?} were abandoned");
            }
        }
    }
    Ok(())
}

/// Ctrl-C or SIGTERM (what service managers and `docker stop` send).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
