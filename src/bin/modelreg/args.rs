//! The command line's grammar: `modelreg [GLOBAL OPTIONS] <RESOURCE> <ACTION> [ARGS]`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// What `--help` ends with: the exit codes and the environment, so a script's
/// author finds them where they look first.
const AFTER_HELP: &str = "\
Registry and actor:
  --registry (or MODELREG_REGISTRY) is a local directory or a URL: file:///abs/dir,
  s3://bucket/prefix, gs://bucket/prefix, az://container/prefix (credentials and
  endpoints from the usual AWS_*, GOOGLE_* and AZURE_* variables). The actor written
  to the audit trail is --actor, else MODELREG_ACTOR, else git's user.email, else the
  OS user.

Output:
  Data goes to stdout, messages and progress bars to stderr. --json prints the
  records' serde shape (stable within a major version), one JSON document per
  command (`watch`: one per line); errors then go to stderr as
  {\"error\":{\"kind\":…,\"exit_code\":…,\"message\":…}}.

Exit codes:
  0    success
  1    any other error (storage, I/O, a loader)
  2    usage: unknown flag, bad name, reference, metric, path or URL
  3    not found: model, version, alias, traffic split or blob
  4    conflict: already exists, or lost a race with another writer (safe to retry)
  5    refused: a gate or approval refused the move, the stage move is not allowed,
       or the version is protected from purging (stage, alias, split, rollback, `keep` tag)
  6    integrity: a blob or record does not match its digest (`check` found problems),
       or a layer pulled from an OCI registry does not match its SHA-256
  7    remote: an OCI registry is unreachable or refused, or the artifact is not ModelPack
  8    purged: the version's files were purged (its record and history remain)
  9    signature: a signature bundle does not verify, or too few trusted keys signed
  130  interrupted (Ctrl-C); what was kept is printed";

/// modelreg: a content-addressed model registry, from the shell.
///
/// Registers, fetches, verifies, promotes and rolls back model versions on a
/// local directory or object storage, with every change in the audit trail.
#[derive(Debug, Parser)]
#[command(
    name = "modelreg",
    version,
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict, 5 refused, 6 integrity, 7 remote, 8 purged, 9 signature, 130 interrupted (--help says more).",
    after_long_help = AFTER_HELP
)]
pub struct Cli {
    /// The registry: a local directory or a URL (file://, s3://, gs://, az://).
    #[arg(long, global = true, env = "MODELREG_REGISTRY", value_name = "DIR|URL")]
    pub registry: Option<String>,

    /// Who acts, as written to the audit trail [default: git user.email, else the OS user;
    /// `serve` records each token's identity instead].
    #[arg(long, global = true, env = "MODELREG_ACTOR")]
    pub actor: Option<String>,

    /// Print JSON (the records' serde shape) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print no progress bars and no messages on stderr (errors still).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The resources and the commands that stand alone.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Models: list, show, create, tag, retain.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Versions: register, list, show, fetch, verify, sign, scan, tag, describe, metrics, deprecate, purge, diff (and push, pull with `oci`).
    #[command(subcommand)]
    Version(VersionCmd),
    /// The lifecycle: transition, promote, approve, reject, rollback.
    #[command(subcommand)]
    Stage(StageCmd),
    /// Aliases (named pointers such as `champion`): set, rm, list.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Traffic splits for A/B tests: set, show, clear.
    #[command(subcommand)]
    Split(SplitCmd),
    /// Which version serves KEY (a user or request id) under the model's split.
    Route(RouteArgs),
    /// The audit trail of a model: who did what, when and why (newest first).
    History(HistoryArgs),
    /// Where a version came from (upstream) or what was built from it (downstream).
    Lineage(LineageArgs),
    /// Prints a line each time REF resolves to another version (Ctrl-C to stop).
    Watch(WatchArgs),
    /// Re-reads every record and re-hashes every blob; exit 6 on any problem.
    Check,
    /// Deletes blobs no version references (older than --grace).
    Gc(GcArgs),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Serves the registry over HTTP: REST JSON, Hugging Face downloads, the MLflow registry API.
    #[cfg(feature = "serve")]
    Serve(ServeArgs),
}

/// `modelreg model …`
#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Every model with its version count, production version, latest version and aliases.
    List,
    /// One model: description, tags, metric goals, stages, aliases, gates and split.
    Show {
        /// The model's name.
        model: String,
    },
    /// Creates a model (registering a version creates its model too).
    Create {
        /// The model's name: a-z, 0-9, '-', '_' and '.', starting with a letter or digit.
        model: String,
        /// What the model is for.
        #[arg(long, short)]
        description: Option<String>,
        /// A tag, KEY=VALUE (repeatable).
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// A metric's goal, NAME=max or NAME=min, with an optional tolerance: auc=max:0.005 (repeatable).
        #[arg(long = "metric-goal", value_name = "NAME=max|min[:TOL]")]
        metric_goals: Vec<String>,
        /// Succeed if the model exists already (and change nothing).
        #[arg(long)]
        exist_ok: bool,
    },
    /// Purges the artifacts of old versions by policy (a dry run unless --apply).
    ///
    /// Picks the versions outside the newest --keep-last and registered longer
    /// than --older-than ago (both must hold when both are given), never a
    /// protected one: in staging, validation or production, behind an alias or
    /// the traffic split, the rollback target, or tagged `keep`. Records stay;
    /// run `modelreg gc` afterwards to free the space.
    Retain(RetainArgs),
    /// Sets and removes a model's tags.
    Tag {
        /// The model's name.
        model: String,
        /// Tags to set, KEY=VALUE.
        #[arg(value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A tag to remove (repeatable).
        #[arg(long = "rm", value_name = "KEY")]
        remove: Vec<String>,
    },
}

/// `modelreg version …`
#[derive(Debug, Subcommand)]
pub enum VersionCmd {
    /// Registers a directory or a file as the model's next version.
    Register(Box<RegisterArgs>),
    /// A model's versions, a page at a time.
    List(ListArgs),
    /// One version's record: artifact, provenance, metrics, stage, approvals.
    Show {
        /// The version: MODEL/N, MODEL@ALIAS|STAGE|latest, MODEL:SEMVER or MODEL#blake3:…
        reference: String,
        /// Also list the version's files.
        #[arg(long)]
        files: bool,
    },
    /// Writes a version's files into DEST (must not exist, or be empty), verified.
    Fetch {
        /// The version.
        reference: String,
        /// The directory to create.
        dest: PathBuf,
        /// How files are placed: copy, reflink or hardlink (read-only, shared with a local store).
        #[arg(long, value_enum, default_value_t = Link::Copy)]
        link: Link,
    },
    /// Re-hashes every blob of a version in the store; with --key, also checks its signatures.
    Verify {
        /// The version.
        reference: String,
        /// A trusted public key: a PEM file, or a key id (64 hex digits); repeatable.
        /// The version must carry valid signatures by at least --min of them (exit code 9 if not).
        #[arg(long = "key", value_name = "PEM|KEY_ID")]
        keys: Vec<String>,
        /// How many distinct trusted keys must have signed.
        #[arg(long, default_value_t = 1, requires = "keys")]
        min: usize,
    },
    /// Signs a version's files with an ECDSA P-256 key (OpenSSF Model Signing v1.0 bundle, SHA-256).
    Sign {
        /// The version.
        reference: String,
        /// The private key, PEM (PKCS#8 or SEC1, unencrypted).
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// Why (trained, evaluated, approved, …), recorded with the signature.
        #[arg(long, short, default_value = "")]
        reason: String,
    },
    /// Attaches a signature bundle made elsewhere (`model_signing sign key …`), after verifying it.
    Attach {
        /// The version.
        reference: String,
        /// The bundle (Sigstore bundle JSON).
        bundle: PathBuf,
        /// The signer's public key, PEM.
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// Why, recorded with the signature.
        #[arg(long, short, default_value = "")]
        reason: String,
    },
    /// A version's signatures: key, who added it, when, why.
    Signatures {
        /// The version.
        reference: String,
        /// Write the bundle of each signature into DIR as KEY_ID.sig.json.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
    },
    /// Scans a version's files for formats and pickles that could run code, and
    /// records the verdicts (what the format_policy gate reads).
    Scan {
        /// The version.
        reference: String,
    },
    /// Sets and removes a version's tags.
    Tag {
        /// The version.
        reference: String,
        /// Tags to set, KEY=VALUE.
        #[arg(value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A tag to remove (repeatable).
        #[arg(long = "rm", value_name = "KEY")]
        remove: Vec<String>,
        /// Change a version in production anyway, recording this reason.
        #[arg(long = "override", value_name = "REASON")]
        override_reason: Option<String>,
    },
    /// Replaces a version's description ("" clears it); the old text stays in the history.
    Describe {
        /// The version.
        reference: String,
        /// The new description.
        description: String,
        /// Change a version in production anyway, recording this reason.
        #[arg(long = "override", value_name = "REASON")]
        override_reason: Option<String>,
    },
    /// Adds metrics to a version (an evaluation after training); old values stay in the history.
    Metrics {
        /// The version.
        reference: String,
        /// Metrics, NAME=VALUE.
        #[arg(value_name = "NAME=VALUE", required = true)]
        metrics: Vec<String>,
        /// Change a version in production anyway, recording this reason.
        #[arg(long = "override", value_name = "REASON")]
        override_reason: Option<String>,
    },
    /// Marks a version deprecated (it stays readable; listings can hide it).
    Deprecate {
        /// The version.
        reference: String,
        /// Why.
        #[arg(long, short, default_value = "")]
        reason: String,
    },
    /// Purges a version's files: its record and history stay, fetching it then
    /// fails (exit 8), and `modelreg gc` frees the blobs no other version uses.
    ///
    /// Refused (exit 5) for a protected version: in staging, validation or
    /// production, behind an alias or the traffic split, the rollback target,
    /// or tagged `keep`.
    Purge {
        /// The version.
        reference: String,
        /// Why (required; written to the audit trail).
        #[arg(long, short)]
        reason: String,
    },
    /// What changes from A to B: metrics (with verdicts by the model's goals), parameters, data, code, environment, files.
    Diff {
        /// The baseline, e.g. MODEL@production.
        a: String,
        /// The candidate, e.g. MODEL@latest.
        b: String,
    },
    /// Pushes a version to an OCI registry as a CNCF ModelPack artifact (one layer per file).
    #[cfg(feature = "oci")]
    Push {
        /// The model.
        model: String,
        /// The version: a number (3), or @ALIAS|STAGE|latest, :SEMVER, #blake3:…
        version: String,
        /// Where to push: REGISTRY/REPOSITORY:TAG, e.g. registry.example.com/models/fraud:v3.
        reference: String,
        /// Speak plain HTTP to the registry (a local or test registry), not HTTPS.
        #[arg(long)]
        plain_http: bool,
    },
    /// Pulls a ModelPack artifact from an OCI registry and registers it as MODEL's next version.
    #[cfg(feature = "oci")]
    Pull {
        /// What to pull: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:…
        reference: String,
        /// The model (created if it does not exist).
        model: String,
        /// Speak plain HTTP to the registry (a local or test registry), not HTTPS.
        #[arg(long)]
        plain_http: bool,
    },
}

/// `modelreg model retain …`
#[derive(Debug, Args)]
pub struct RetainArgs {
    /// The model.
    pub model: String,
    /// Keep the newest N versions (whatever their state).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Purge only versions registered longer ago than this: 12h, 30d, 2w.
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Purge for real (each purge is an audited event); without it nothing is written.
    #[arg(long)]
    pub apply: bool,
}

/// `modelreg version register …`
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The model (created if it does not exist).
    pub model: String,
    /// The artifact: a directory (every file below it) or one file.
    pub path: PathBuf,
    /// A metric, NAME=VALUE (repeatable): --metric auc=0.93.
    #[arg(long = "metric", short = 'm', value_name = "NAME=VALUE")]
    pub metrics: Vec<String>,
    /// A hyperparameter, NAME=VALUE; VALUE is read as JSON when it parses (0.01, true, [1,2]), else as text.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A tag, KEY=VALUE (repeatable).
    #[arg(long = "tag", short = 't', value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// A semantic version label, unique within the model: 1.4.0.
    #[arg(long)]
    pub semver: Option<String>,
    /// What changed in this version.
    #[arg(long, short)]
    pub description: Option<String>,
    /// A parent version, REF or REF=RELATION (fine_tuned_from, distilled_from, quantized_from, retrained_from, derived_from).
    #[arg(long = "parent", value_name = "REF[=RELATION]")]
    pub parents: Vec<String>,
    /// A dataset, [ROLE:]NAME[@VERSION] with ROLE train (default), validation, eval, test or other.
    #[arg(long = "dataset", value_name = "[ROLE:]NAME[@VERSION]")]
    pub datasets: Vec<String>,
    /// The code commit [default: HEAD of the git repository in the current directory, if any].
    #[arg(long, value_name = "SHA", conflicts_with = "no_code")]
    pub code_commit: Option<String>,
    /// Record no code commit.
    #[arg(long)]
    pub no_code: bool,
    /// A framework and its version, NAME=VERSION (repeatable): --framework torch=2.4.0.
    #[arg(long = "framework", value_name = "NAME=VERSION")]
    pub frameworks: Vec<String>,
    /// Do not capture the environment (OS, CPU, GPUs, CUDA driver).
    #[arg(long)]
    pub no_env: bool,
    /// How files enter a local store: copy, reflink or hardlink (makes the sources read-only).
    #[arg(long, value_enum, default_value_t = Link::Copy)]
    pub link: Link,
}

/// `modelreg version list …`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The model.
    pub model: String,
    /// Only versions in this stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only versions with this tag, KEY or KEY=VALUE.
    #[arg(long, value_name = "KEY[=VALUE]")]
    pub tag: Option<String>,
    /// Hide deprecated versions.
    #[arg(long)]
    pub no_deprecated: bool,
    /// Order by a metric, best first by the model's goal for it (highest first when it has none): --by auc.
    #[arg(long, value_name = "METRIC")]
    pub by: Option<String>,
    /// Reverse the order: newest first (worst first with --by).
    #[arg(long)]
    pub reverse: bool,
    /// At most this many versions.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Continue after a previous page (the token it printed).
    #[arg(long, value_name = "TOKEN")]
    pub after: Option<String>,
}

/// `modelreg stage …`
#[derive(Debug, Subcommand)]
pub enum StageCmd {
    /// Moves a version to STAGE (none, staging, validation, production, archived), through its gates.
    Transition {
        /// The version.
        reference: String,
        /// The stage to move to.
        stage: String,
        /// Why (written to the audit trail).
        #[arg(long, short, default_value = "")]
        reason: String,
    },
    /// Moves a version to production through every stage between, each through its gates.
    Promote {
        /// The version.
        reference: String,
        /// The stage to reach.
        #[arg(long, default_value = "production")]
        to: String,
        /// Why (written to the audit trail).
        #[arg(long, short, default_value = "")]
        reason: String,
    },
    /// Approves moving a version to STAGE (for an approval gate).
    Approve {
        /// The version.
        reference: String,
        /// The stage the approval is for.
        stage: String,
        /// A comment.
        #[arg(long, short, default_value = "")]
        comment: String,
    },
    /// Rejects moving a version to STAGE.
    Reject {
        /// The version.
        reference: String,
        /// The stage the rejection is for.
        stage: String,
        /// A comment.
        #[arg(long, short, default_value = "")]
        comment: String,
    },
    /// Puts the previous production version back in production.
    Rollback {
        /// The model.
        model: String,
        /// Why (written to the audit trail).
        #[arg(long, short, default_value = "")]
        reason: String,
    },
}

/// `modelreg alias …`
#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Points ALIAS at a version: `modelreg alias set fraud/7 champion`.
    Set {
        /// The version.
        reference: String,
        /// The alias: a-z, 0-9, '-' and '_', starting with a letter.
        alias: String,
        /// Protect the alias: moving it then passes the model's production gates.
        #[arg(long)]
        protected: bool,
        /// Why (written to the audit trail).
        #[arg(long, short, default_value = "")]
        reason: String,
    },
    /// Removes an alias.
    Rm {
        /// The model.
        model: String,
        /// The alias.
        alias: String,
        /// Why (written to the audit trail).
        #[arg(long, short, default_value = "")]
        reason: String,
    },
    /// A model's aliases and the versions they point at.
    List {
        /// The model.
        model: String,
    },
}

/// `modelreg split …`
#[derive(Debug, Subcommand)]
pub enum SplitCmd {
    /// Routes traffic between versions by weight: `modelreg split set fraud @production=90 /7=10`.
    Set {
        /// The model.
        model: String,
        /// Routes, TARGET=WEIGHT, TARGET being @ALIAS|@STAGE|/N|:SEMVER.
        #[arg(value_name = "TARGET=WEIGHT", required = true)]
        routes: Vec<String>,
        /// The hashing salt (change it to reshuffle who gets which version).
        #[arg(long)]
        salt: Option<String>,
        /// Why (written to the audit trail).
        #[arg(long, short, default_value = "")]
        reason: String,
    },
    /// The model's split with each target's current version.
    Show {
        /// The model.
        model: String,
    },
    /// Removes the split: all traffic goes to production.
    Clear {
        /// The model.
        model: String,
        /// Why (written to the audit trail).
        #[arg(long, short, default_value = "")]
        reason: String,
    },
}

/// `modelreg route …`
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The model.
    pub model: String,
    /// The routing key (a user or request id): the same key always gets the same route.
    pub key: String,
}

/// `modelreg history …`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The model.
    pub model: String,
    /// Only events of this kind (version_registered, stage_changed, alias_set, …).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only events by this actor.
    #[arg(long)]
    pub actor_is: Option<String>,
    /// Only events about this version number.
    #[arg(long)]
    pub version: Option<u64>,
    /// Only events since: an RFC 3339 time or an age such as 30m, 12h, 7d.
    #[arg(long, value_name = "TIME|AGE")]
    pub since: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// `modelreg lineage …`
#[derive(Debug, Args)]
pub struct LineageArgs {
    /// The version.
    pub reference: String,
    /// What was built from it, instead of what it was built from.
    #[arg(long)]
    pub downstream: bool,
    /// How many steps to follow [default: all].
    #[arg(long)]
    pub depth: Option<usize>,
    /// Output: an indented tree, Graphviz DOT or Mermaid.
    #[arg(long, value_enum, default_value_t = LineageFormat::Tree)]
    pub format: LineageFormat,
}

/// `modelreg watch …`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The reference to follow: MODEL@production, MODEL@champion, MODEL@latest.
    pub reference: String,
    /// How often to poll the store, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// Stop after this many lines (for scripts) [default: never].
    #[arg(long)]
    pub count: Option<usize>,
}

/// `modelreg serve …`
#[cfg(feature = "serve")]
#[derive(Debug, Args)]
#[command(after_long_help = "\
Routes:
  /ui/                      the web UI for people (/ leads there): models,
                            versions, metric charts, comparisons, history
  /api/v1/...               REST JSON: models, versions, files, history, lineage,
                            compare, splits; described by /openapi.json
  /api/v1/models/NAME/events
                            server-sent events of a model's history
  /api/models/NAME/...,     Hugging Face Hub downloads (huggingface_hub, hf-hub):
  /NAME/resolve/REV/PATH    HF_ENDPOINT=http://HOST:PORT; REV is production, an
                            alias, 7, 1.4.0 or a commit id
  /api/2.0/mlflow/...       MLflow model registry:
                            MlflowClient(tracking_uri=\"http://HOST:PORT\")

With --json, the first line on stdout says where it listens, as JSON:
  {\"listening\":\"http://127.0.0.1:8080\",\"read_only\":true,...}
(--listen 127.0.0.1:0 picks a free port; read it from that line).

Access:
  Bearer tokens, each with a role: reader; writer (register, tag, transition,
  alias, split, rollback); approver (also approve and reject); admin
  (everything). Give them as MODELREG_SERVE_TOKENS=\"identity:role:token,...\"
  or --tokens-file FILE, JSON: {\"tokens\":[{\"identity\":..,\"role\":..,
  \"token\":..}],\"anonymous_read\":false}. Tokens are at least 16 characters.
  The audit trail records the token's identity as the actor.
  Without tokens the server is read-only and listens on loopback only.
  In a browser, sign in at /ui/login with a token: it is kept in an HttpOnly
  cookie that lets the browser read (pages, file downloads) and never write.

Webhooks (--webhooks FILE): each new event of the chosen kinds and models is
POSTed as JSON, signed with X-Modelreg-Signature-256: sha256=HMAC(secret, body)
and retried with backoff; GET /api/v1/webhooks (admin) shows each delivery and
failure. Each hook's position in every model's log is saved in the state
directory (--state-dir; by default the staging directory: --staging-dir, or
serve-staging/ inside a local registry), so events made while the server is
down are delivered when it starts again. A delivery cut off by a stop is sent
again: receivers dedupe on X-Modelreg-Delivery (model:seq). Over a remote
registry without --state-dir or --staging-dir, positions are kept in memory
only and a restarted server delivers from then on.

MLflow uploads (PUT /api/2.0/mlflow-artifacts/artifacts/PATH) stay in the
staging directory until a version is registered from them, which removes them;
uploads nobody registers are removed once unmodified for
--staged-upload-max-age (at startup and by a periodic sweep).

Stops on Ctrl-C or SIGTERM: new connections are refused and requests in flight
finish (at most --shutdown-grace); an upload cut short registers nothing.")]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: String,
    /// A JSON file of tokens (see --help).
    #[arg(long, env = "MODELREG_SERVE_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<std::path::PathBuf>,
    /// Let requests without a token read (they never write).
    #[arg(long)]
    pub anonymous_read: bool,
    /// A JSON file of webhooks: [{"url","secret","events":[kinds],"models":[names]}].
    #[arg(long, env = "MODELREG_SERVE_WEBHOOKS_FILE", value_name = "FILE")]
    pub webhooks: Option<std::path::PathBuf>,
    /// The largest upload accepted, in bytes.
    #[arg(long, default_value_t = 1 << 40, value_name = "BYTES")]
    pub max_upload_bytes: u64,
    /// Where uploads are staged [default: inside a local registry, else the system temp dir].
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<std::path::PathBuf>,
    /// Where the server keeps state across restarts (webhook positions) [default: the staging dir, unless that is the system temp dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// How long an MLflow upload may stay staged without a version registered from it: 90m, 24h, 7d.
    #[arg(long, default_value = "24h", value_name = "AGE")]
    pub staged_upload_max_age: String,
    /// How long requests in flight may take to finish after Ctrl-C, in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub shutdown_grace: f64,
}

/// `modelreg gc …`
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep blobs younger than this (a registration in flight may need them): 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_name = "AGE")]
    pub grace: String,
    /// Report what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `modelreg completions …`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// How files are placed.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Link {
    /// Copy every byte.
    Copy,
    /// Reflink (copy-on-write) where the filesystem allows, else copy.
    Reflink,
    /// Hard link where the store allows, else copy; the files become read-only.
    Hardlink,
}

/// How `lineage` prints.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LineageFormat {
    /// An indented tree.
    Tree,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_grammar_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
