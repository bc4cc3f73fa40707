//! Why a command failed, the exit code that says so, and how it is printed: one
//! line on stderr, or a JSON error object with `--json`.

use std::fmt;
use std::process::ExitCode;

use modelreg::Error;
use serde::Serialize;

/// A failed command.
#[derive(Debug)]
pub enum Failure {
    /// The library refused or failed.
    Registry(Error),
    /// The command line is wrong in a way the parser could not see.
    Usage(String),
    /// `check` found problems (each was printed).
    Problems(usize),
    /// Ctrl-C; the message says what was kept.
    Interrupted(String),
    /// Writing the output failed (a closed pipe is not reported).
    Output(std::io::Error),
    /// Something outside the registry failed (the server's socket).
    Other(String),
}

/// The documented exit codes (`modelreg --help`, README "Command line").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 1: storage, I/O, anything else.
    Error,
    /// 2: the command line or one of its values is wrong.
    Usage,
    /// 3: a model, version, alias, split or blob does not exist.
    NotFound,
    /// 4: it exists already, or another writer won the race.
    Conflict,
    /// 5: a gate, an approval or the transition table refused the move, the
    /// version is in production, where its tags and metrics are fixed, or it is
    /// protected from purging.
    Refused,
    /// 6: bytes or records do not match their digests.
    Integrity,
    /// 7: an OCI registry is unreachable or refused, or what it holds is not a
    /// ModelPack artifact.
    Remote,
    /// 8: the version's files were purged.
    Purged,
    /// 9: a signature bundle does not verify, or too few trusted keys signed.
    Signature,
    /// 130: Ctrl-C.
    Interrupted,
}

impl Kind {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Kind::Error => 1,
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::Conflict => 4,
            Kind::Refused => 5,
            Kind::Integrity => 6,
            Kind::Remote => 7,
            Kind::Purged => 8,
            Kind::Signature => 9,
            Kind::Interrupted => 130,
        }
    }
}

impl Failure {
    /// What kind of failure this is.
    pub fn kind(&self) -> Kind {
        match self {
            Failure::Registry(e) => kind_of(e),
            Failure::Usage(_) => Kind::Usage,
            Failure::Problems(_) => Kind::Integrity,
            Failure::Interrupted(_) => Kind::Interrupted,
            Failure::Output(_) | Failure::Other(_) => Kind::Error,
        }
    }

    /// Prints the failure on stderr: one line, or one JSON object.
    pub fn report(&self, json: bool) -> ExitCode {
        let kind = self.kind();
        if json {
            #[derive(Serialize)]
            struct Body<'a> {
                kind: Kind,
                exit_code: u8,
                message: String,
                #[serde(skip_serializing_if = "Option::is_none")]
                location: Option<&'a str>,
            }
            let location = match self {
                Failure::Registry(e) => e.location(),
                _ => None,
            };
            let body = serde_json::json!({ "error": Body {
                kind,
                exit_code: kind.code(),
                message: self.to_string(),
                location,
            }});
            eprintln!("{body}");
        } else {
            eprintln!("modelreg: {self}");
        }
        ExitCode::from(kind.code())
    }
}

/// The exit code of each of the library's errors.
fn kind_of(e: &Error) -> Kind {
    match e {
        Error::NotFound { .. } => Kind::NotFound,
        Error::AlreadyExists { .. } | Error::Conflict { .. } | Error::ConcurrentChange { .. } => {
            Kind::Conflict
        }
        Error::GateRejected { .. }
        | Error::InvalidTransition { .. }
        | Error::Immutable { .. }
        | Error::Protected { .. } => Kind::Refused,
        Error::Purged { .. } => Kind::Purged,
        Error::Integrity { .. } | Error::Corrupt { .. } => Kind::Integrity,
        Error::Oci { problem, .. } => match problem {
            modelreg::OciProblem::DigestMismatch => Kind::Integrity,
            modelreg::OciProblem::NotFound => Kind::NotFound,
            _ => Kind::Remote,
        },
        Error::Signature { .. } => Kind::Signature,
        Error::InvalidName { .. }
        | Error::InvalidReference { .. }
        | Error::InvalidPath { .. }
        | Error::InvalidInput { .. }
        | Error::TooLarge { .. } => Kind::Usage,
        _ => Kind::Error,
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The library names its method; a shell user needs the flag.
            Failure::Registry(Error::Immutable {
                model,
                version,
                stage,
                what,
            }) => write!(
                f,
                "{model}/{version} is in {stage}: its {what} cannot be changed without an \
                 explicit override (add --override REASON; it is recorded in the history)"
            ),
            // One line: a message that spans lines (a storage error's source) is joined.
            Failure::Registry(e) => {
                let text = e.to_string();
                let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
                if let Some(first) = lines.next() {
                    f.write_str(first)?;
                }
                for l in lines {
                    write!(f, " {l}")?;
                }
                Ok(())
            }
            Failure::Usage(m) | Failure::Interrupted(m) | Failure::Other(m) => f.write_str(m),
            Failure::Problems(n) => write!(f, "check found {n} problem(s)"),
            Failure::Output(e) => write!(f, "writing the output failed: {e}"),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Registry(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Output(e)
    }
}
