//! What the REST tests share: the tokens of each role, a seeded registry, and
//! the table of every route that needs more than reading, with its role.

use modelreg::server::{ServerOptions, Tokens};
use modelreg::{
    Actor, ArtifactSource, CreateModel, GateSpec, MetricSpec, NewVersion, Registry, Stage,
};

use super::http::{Reply, Running, request, start};

pub const READER: &str = "reader-token-0123456789";
pub const WRITER: &str = "writer-token-0123456789";
pub const APPROVER: &str = "approver-token-012345678";
pub const ADMIN: &str = "admin-token-0123456789ab";

/// Each role with its token, lowest first.
pub const ROLES: [(&str, &str); 4] = [
    ("reader", READER),
    ("writer", WRITER),
    ("approver", APPROVER),
    ("admin", ADMIN),
];

/// The token of `role`.
pub fn token_of(role: &str) -> &'static str {
    ROLES
        .iter()
        .find(|(r, _)| *r == role)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no role {role:?}"))
}

/// The roles below `role`, with their tokens.
pub fn roles_below(role: &str) -> impl Iterator<Item = (&'static str, &'static str)> {
    ROLES.into_iter().take_while(move |(r, _)| *r != role)
}

pub fn tokens() -> Tokens {
    Tokens::parse(&format!(
        "rita@example.com:reader:{READER} wes@example.com:writer:{WRITER} \
         ada@example.com:approver:{APPROVER} root@example.com:admin:{ADMIN}"
    ))
    .expect("valid tokens")
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A local registry with model `fraud`: versions 1 (production) and 2 (staging),
/// alias `champion` on 1; production needs one approval.
pub async fn seeded() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = Registry::open_local(dir.path().join("reg"))
        .await
        .expect("open");
    let ci = registry.acting_as(Actor::new("seed").expect("actor"));
    ci.create_model(
        "fraud",
        CreateModel::new().metric("auc", MetricSpec::maximize()),
    )
    .await
    .expect("create");
    for (i, auc) in [0.90, 0.93].into_iter().enumerate() {
        let files = ArtifactSource::files([
            ("model.bin", payload(3 << 20, i as u8)),
            ("config.json", br#"{"layers":2}"#.to_vec()),
        ])
        .expect("files");
        ci.register("fraud", files, NewVersion::new().metric("auc", auc))
            .await
            .expect("register");
    }
    ci.promote_to("fraud/1", Stage::Production, "seed")
        .await
        .expect("promote");
    ci.transition("fraud/2", Stage::Staging, "seed")
        .await
        .expect("stage");
    ci.set_alias("fraud/1", "champion", modelreg::SetAlias::new())
        .await
        .expect("alias");
    ci.set_gates(
        "fraud",
        Stage::Production,
        vec![GateSpec::Approvals {
            required: 1,
            from: Default::default(),
        }],
    )
    .await
    .expect("gates");
    (dir, registry)
}

pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

pub fn server(registry: Registry) -> Running {
    start(registry, ServerOptions::new().tokens(tokens()))
}

pub fn get(s: &Running, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request(s.addr, "GET", path, &headers, b"")
}

pub fn send(s: &Running, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
    let auth = token.map(bearer);
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(s.addr, method, path, &headers, body.as_bytes())
}

/// Every route that needs more than the reader role (every write, and the
/// webhook status) with a body that would succeed for the right role, and the
/// least role it needs. `tests/server_openapi.rs` checks that every operation
/// the OpenAPI document gives a role is here, with that role.
pub fn role_routes() -> Vec<(&'static str, &'static str, String, &'static str)> {
    let v = "/api/v1/models/fraud/versions/2";
    vec![
        (
            "POST",
            "/api/v1/models",
            r#"{"name":"other"}"#.into(),
            "writer",
        ),
        (
            "POST",
            "/api/v1/models/fraud/tags",
            r#"{"set":{"team":"risk"}}"#.into(),
            "writer",
        ),
        (
            "POST",
            leak(format!("{v}/metrics")),
            r#"{"metrics":{"auc":0.95}}"#.into(),
            "writer",
        ),
        (
            "POST",
            leak(format!("{v}/tags")),
            r#"{"set":{"k":"v"}}"#.into(),
            "writer",
        ),
        (
            "POST",
            leak(format!("{v}/description")),
            r#"{"description":"better"}"#.into(),
            "writer",
        ),
        (
            "POST",
            leak(format!("{v}/deprecate")),
            r#"{"reason":"x"}"#.into(),
            "writer",
        ),
        (
            "POST",
            leak(format!("{v}/transition")),
            r#"{"to":"validation"}"#.into(),
            "writer",
        ),
        (
            "POST",
            leak(format!("{v}/promote")),
            r#"{"to":"validation"}"#.into(),
            "writer",
        ),
        (
            "POST",
            leak(format!("{v}/approve")),
            r#"{"stage":"production"}"#.into(),
            "approver",
        ),
        (
            "POST",
            leak(format!("{v}/reject")),
            r#"{"stage":"production"}"#.into(),
            "approver",
        ),
        (
            "POST",
            "/api/v1/models/fraud/rollback",
            r#"{"reason":"x"}"#.into(),
            "writer",
        ),
        (
            "PUT",
            "/api/v1/models/fraud/aliases/challenger",
            r#"{"version":"2"}"#.into(),
            "writer",
        ),
        (
            "DELETE",
            "/api/v1/models/fraud/aliases/champion",
            String::new(),
            "writer",
        ),
        (
            "PUT",
            "/api/v1/models/fraud/split",
            r#"{"split":{"routes":[{"target":"@champion","weight":1}]}}"#.into(),
            "writer",
        ),
        (
            "DELETE",
            "/api/v1/models/fraud/split",
            String::new(),
            "writer",
        ),
        (
            "POST",
            "/api/v1/models/fraud/versions",
            String::new(),
            "writer",
        ),
        // Version 4: not protected where it exists (the OpenAPI test's
        // registry); a 404 where it does not, which a caller with the role
        // sees only after the role check.
        (
            "POST",
            "/api/v1/models/fraud/versions/4/purge",
            r#"{"reason":"x"}"#.into(),
            "admin",
        ),
        (
            "POST",
            "/api/v1/models/fraud/retention",
            r#"{"keep_last":1}"#.into(),
            "admin",
        ),
        ("GET", "/api/v1/webhooks", String::new(), "admin"),
    ]
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}
