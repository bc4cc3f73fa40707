//! Traffic splits and routing: documented on `TrafficSplit`.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::name::{ModelName, check_text};
use super::record::VersionRecord;
use super::reference::{Selector, VersionRef};
use super::state::ModelState;
use crate::error::{Error, Result};

/// What a route points at: a selector within the split's model.
///
/// Written like a [`VersionRef`] without the model name: `@champion`, `@production`,
/// `@latest`, `/7`, `:1.4.0`, `#blake3:<hex>`. The selector is resolved when a key is
/// routed, so a route to `@champion` follows the alias when it moves.
///
/// ```
/// # fn main() -> modelreg::Result<()> {
/// use modelreg::RouteTarget;
/// for ok in ["@champion", "@production", "@latest", "/7", ":1.4.0"] {
///     assert_eq!(ok.parse::<RouteTarget>()?.to_string(), ok);
/// }
/// // A full reference names a model; a route target never does.
/// assert!("fraud@champion".parse::<RouteTarget>().is_err());
/// assert!("champion".parse::<RouteTarget>().is_err());
/// assert!("/0".parse::<RouteTarget>().is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RouteTarget(Selector);

impl RouteTarget {
    /// The target `@production`.
    pub fn production() -> Self {
        RouteTarget(Selector::Stage(super::lifecycle::Stage::Production))
    }

    /// The selector.
    pub fn selector(&self) -> &Selector {
        &self.0
    }

    /// The reference this target makes within `model`.
    pub fn in_model(&self, model: &ModelName) -> VersionRef {
        VersionRef {
            model: model.clone(),
            selector: self.0.clone(),
        }
    }
}

impl From<Selector> for RouteTarget {
    fn from(selector: Selector) -> Self {
        RouteTarget(selector)
    }
}

/// A model name the selector parser accepts, used to reuse the one reference parser.
const PLACEHOLDER_MODEL: &str = "m";

impl FromStr for RouteTarget {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        if !input.starts_with(['/', ':', '@', '#']) {
            return Err(Error::InvalidReference {
                input: crate::error::truncate(input),
                position: 0,
                reason: "a route target is a selector within the model: @<alias>, @production, \
                         @latest, /<number>, :<semver> or #blake3:<hex>"
                    .into(),
            });
        }
        match format!("{PLACEHOLDER_MODEL}{input}").parse::<VersionRef>() {
            Ok(r) => Ok(RouteTarget(r.selector)),
            Err(Error::InvalidReference {
                position, reason, ..
            }) => Err(Error::InvalidReference {
                input: crate::error::truncate(input),
                position: position.saturating_sub(PLACEHOLDER_MODEL.len()),
                reason,
            }),
            Err(e) => Err(e),
        }
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let model = ModelName::new(PLACEHOLDER_MODEL).map_err(|_| fmt::Error)?;
        let full = self.in_model(&model).to_string();
        f.write_str(&full[PLACEHOLDER_MODEL.len()..])
    }
}

impl Serialize for RouteTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RouteTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One route of a [`TrafficSplit`]: a target and its weight.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Route {
    /// Where the traffic goes.
    pub target: RouteTarget,
    /// Its share, relative to the other routes' weights (a positive integer).
    pub weight: u32,
}

/// How a model's traffic is shared between versions: weighted routes over
/// [`RouteTarget`]s, chosen per request by a hash of a key.
///
/// Invariants (checked on construction and when decoded):
/// - 1 to [`MAX_ROUTES`](Self::MAX_ROUTES) routes;
/// - every weight is a positive integer, and their total is at most
///   [`MAX_TOTAL_WEIGHT`](Self::MAX_TOTAL_WEIGHT);
/// - no target appears twice;
/// - the salt is at most 128 characters, without control characters.
///
/// Routes keep the order given: key `k` lands in bucket
/// `b = hash(model, salt, k) mod total` (see [`bucket`](Self::bucket)), and the
/// buckets are cut into consecutive ranges in route order. Raising the weight of the
/// last route (a challenger ramping from 10 to 20 out of 100) therefore keeps every
/// user who was on it there and only moves users whose bucket crossed the boundary.
/// A new salt reshuffles everyone, e.g. for a new experiment.
///
/// ```
/// use modelreg::{ModelName, TrafficSplit};
/// let split = TrafficSplit::new([("@champion", 90), ("@challenger", 10)])?;
/// assert_eq!(split.total_weight(), 100);
/// assert_eq!(split.to_string(), "@champion: 90, @challenger: 10");
///
/// // Deterministic: the same key always picks the same route.
/// let model = ModelName::new("fraud")?;
/// let a = split.pick(&model, b"user-42").target.clone();
/// assert_eq!(split.pick(&model, b"user-42").target, a);
///
/// // Rejected: zero weights, duplicate targets, no routes, a full reference.
/// assert!(TrafficSplit::new([("@champion", 0)]).is_err());
/// assert!(TrafficSplit::new([("@champion", 1), ("@champion", 1)]).is_err());
/// assert!(TrafficSplit::new(Vec::<(&str, u32)>::new()).is_err());
/// assert!(TrafficSplit::new([("fraud@champion", 1)]).is_err());
/// # Ok::<(), modelreg::Error>(())
/// ```
///
/// Traffic splits: weighted routes over references within one model, and the
/// deterministic choice of a route for a request key.
///
/// A split such as `@champion: 90, @challenger: 10` is stored in the model's log
/// (`traffic_split_set` events), so every server that reads the log routes the same
/// way. The choice for a key is a pure function of the model name, the split's salt,
/// its routes and the key: the same user lands on the same route for as long as the
/// split is unchanged, on every machine, without coordination.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(try_from = "SplitWire", into = "SplitWire")]
pub struct TrafficSplit {
    routes: Vec<Route>,
    salt: String,
}

/// The serialized form: `{"routes":[{"target":"@champion","weight":90},…],"salt"?:…}`.
#[derive(Serialize, Deserialize)]
struct SplitWire {
    routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    salt: String,
}

impl TryFrom<SplitWire> for TrafficSplit {
    type Error = Error;
    fn try_from(w: SplitWire) -> Result<Self> {
        TrafficSplit::from_routes(w.routes)?.with_salt(w.salt)
    }
}

impl From<TrafficSplit> for SplitWire {
    fn from(s: TrafficSplit) -> Self {
        SplitWire {
            routes: s.routes,
            salt: s.salt,
        }
    }
}

/// The BLAKE3 key-derivation context of the routing hash. Changing it would move
/// every user of every split: it is part of the format.
const ROUTING_CONTEXT: &str = "modelreg traffic split v1";

/// A hasher in [`ROUTING_CONTEXT`]'s key-derivation mode, made once: deriving
/// the context key is a BLAKE3 compression of its own, a third of a route's
/// hashing, and a clone of the hasher starts from the same state.
static ROUTING_HASHER: std::sync::LazyLock<blake3::Hasher> =
    std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(ROUTING_CONTEXT));

impl TrafficSplit {
    /// The most routes a split may have.
    pub const MAX_ROUTES: usize = 32;
    /// The largest total of all weights.
    pub const MAX_TOTAL_WEIGHT: u64 = 1_000_000;

    /// A split from `(target, weight)` pairs, targets written as in
    /// [`RouteTarget`]'s grammar (`"@champion"`, `"/7"`).
    pub fn new<T: AsRef<str>>(routes: impl IntoIterator<Item = (T, u32)>) -> Result<Self> {
        let routes = routes
            .into_iter()
            .map(|(t, weight)| {
                Ok(Route {
                    target: t.as_ref().parse()?,
                    weight,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_routes(routes)
    }

    /// A split from routes, checked.
    pub fn from_routes(routes: Vec<Route>) -> Result<Self> {
        let bad = |reason: String| Error::invalid_input("traffic split", reason);
        if routes.is_empty() {
            return Err(bad("a split needs at least one route".into()));
        }
        if routes.len() > Self::MAX_ROUTES {
            return Err(bad(format!(
                "{} routes, at most {} are allowed",
                routes.len(),
                Self::MAX_ROUTES
            )));
        }
        let mut seen = HashSet::with_capacity(routes.len());
        let mut total = 0u64;
        for r in &routes {
            if r.weight == 0 {
                return Err(bad(format!(
                    "route {} has weight 0; weights are positive integers (remove the route instead)",
                    r.target
                )));
            }
            if !seen.insert(&r.target) {
                return Err(bad(format!("target {} appears twice", r.target)));
            }
            total += u64::from(r.weight);
        }
        if total > Self::MAX_TOTAL_WEIGHT {
            return Err(bad(format!(
                "total weight {total} exceeds {}",
                Self::MAX_TOTAL_WEIGHT
            )));
        }
        Ok(TrafficSplit {
            routes,
            salt: String::new(),
        })
    }

    /// The same routes with another salt, which reassigns every key (use a new salt
    /// for a new experiment, keep it while ramping weights). The default is empty.
    pub fn with_salt(mut self, salt: impl Into<String>) -> Result<Self> {
        let salt = salt.into();
        check_text("traffic split salt", &salt, 128)?;
        if salt.chars().any(char::is_control) {
            return Err(Error::invalid_input(
                "traffic split salt",
                "contains control characters",
            ));
        }
        self.salt = salt;
        Ok(self)
    }

    /// The routes, in order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The salt.
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// The sum of the weights (at least 1).
    pub fn total_weight(&self) -> u64 {
        self.routes.iter().map(|r| u64::from(r.weight)).sum()
    }

    /// The bucket of `key` in `0..total_weight()`, for the split of `model`.
    ///
    /// `h` is the first 8 bytes, little-endian, of BLAKE3 in key-derivation mode with
    /// context `"modelreg traffic split v1"` over `len(model) ‖ model ‖ len(salt) ‖
    /// salt ‖ key` (lengths as 8-byte little-endian integers); the bucket is
    /// `(h × total) >> 64`, which maps the 64-bit hash onto the buckets evenly.
    pub fn bucket(&self, model: &ModelName, key: &[u8]) -> u64 {
        let mut hasher = ROUTING_HASHER.clone();
        for part in [model.as_str().as_bytes(), self.salt.as_bytes()] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.update(key);
        let mut first = [0u8; 8];
        first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
        let h = u64::from_le_bytes(first);
        ((u128::from(h) * u128::from(self.total_weight())) >> 64) as u64
    }

    /// The route `key` takes in the split of `model`.
    pub fn pick(&self, model: &ModelName, key: &[u8]) -> &Route {
        let mut bucket = self.bucket(model, key);
        for r in &self.routes {
            let w = u64::from(r.weight);
            if bucket < w {
                return r;
            }
            bucket -= w;
        }
        // Unreachable: the bucket is below the total. The last route is the answer
        // the arithmetic would give anyway.
        &self.routes[self.routes.len() - 1]
    }
}

impl fmt::Display for TrafficSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.routes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: {}", r.target, r.weight)?;
        }
        if !self.salt.is_empty() {
            write!(f, " (salt {:?})", self.salt)?;
        }
        Ok(())
    }
}

/// Where a request key was routed.
#[derive(Clone, Debug, PartialEq)]
pub struct Routed {
    /// The route taken (`@production` when the model has no split).
    pub target: RouteTarget,
    /// The version the target resolved to, shared with the state it was
    /// routed from (routing copies no record).
    pub version: Arc<VersionRecord>,
    /// Whether a traffic split chose the route; `false` means the model has none and
    /// the request fell back to `@production`.
    pub from_split: bool,
}

impl ModelState {
    /// Routes `key` (a user id, a session id: anything that should stick to one
    /// variant): through the model's traffic split if it has one, otherwise to
    /// `@production`.
    ///
    /// [`Error::NotFound`] when the chosen target does not resolve (an alias removed
    /// after the split was set, or no version in production without a split).
    pub fn route(&self, key: &[u8]) -> Result<Routed> {
        let (target, from_split) = match self.traffic_split() {
            Some(split) => (split.pick(self.name(), key).target.clone(), true),
            None => (RouteTarget::production(), false),
        };
        let number = self.resolve(target.selector())?.number;
        // Numbers are dense from 1: version n is at index n - 1.
        let version = Arc::clone(&self.versions()[(number.get() - 1) as usize]);
        Ok(Routed {
            target,
            version,
            from_split,
        })
    }
}

/// Whether a `traffic_split_set` event may follow `state`: a new split's targets
/// must all resolve now (a typo fails here, not at the first request); clearing
/// needs a split to clear.
pub(crate) fn check_split_set(
    state: &ModelState,
    split: Option<&TrafficSplit>,
    reason: &str,
) -> Result<()> {
    match split {
        Some(split) => {
            for r in split.routes() {
                let target = state.resolve(r.target.selector()).map_err(|_| {
                    Error::missing(
                        crate::error::Missing::Version {
                            model: state.name().to_string(),
                            reference: format!("{}{}", state.name(), r.target),
                        },
                        format!(
                            "route target {} of model '{}' (set the alias or register the version first)",
                            r.target,
                            state.name()
                        ),
                    )
                })?;
                super::state::not_purged(target)?;
            }
        }
        None if state.traffic_split().is_none() => {
            return Err(Error::missing(
                crate::error::Missing::TrafficSplit {
                    model: state.name().to_string(),
                },
                format!("a traffic split of model '{}' to clear", state.name()),
            ));
        }
        None => {}
    }
    check_text("reason", reason, super::limits::MAX_REASON_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelName {
        ModelName::new("fraud").unwrap()
    }

    #[test]
    fn targets_round_trip_and_errors_point_into_the_input() {
        for ok in [
            "@champion",
            "@production",
            "@staging",
            "@latest",
            "/7",
            ":1.4.0-rc.1",
        ] {
            assert_eq!(ok.parse::<RouteTarget>().unwrap().to_string(), ok);
        }
        let d = crate::Digest::of(b"w");
        let s = format!("#{d}");
        assert_eq!(s.parse::<RouteTarget>().unwrap().to_string(), s);
        match "/x".parse::<RouteTarget>() {
            Err(Error::InvalidReference {
                input, position, ..
            }) => assert_eq!((input.as_str(), position), ("/x", 1)),
            other => panic!("{other:?}"),
        }
        for bad in ["", "champion", "fraud/1", "@", "@Bad", "/0", "@none"] {
            assert!(bad.parse::<RouteTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_rejects_each_broken_rule() {
        let many: Vec<(String, u32)> = (1..=33).map(|i| (format!("/{i}"), 1)).collect();
        assert!(TrafficSplit::new(many.iter().map(|(t, w)| (t.as_str(), *w))).is_err());
        assert!(TrafficSplit::new(many.iter().take(32).map(|(t, w)| (t.as_str(), *w))).is_ok());
        assert!(TrafficSplit::new([("/1", 600_000), ("/2", 400_000)]).is_ok());
        assert!(TrafficSplit::new([("/1", 600_000), ("/2", 400_001)]).is_err());
        assert!(TrafficSplit::new([("/1", u32::MAX)]).is_err());
        let split = TrafficSplit::new([("/1", 1)]).unwrap();
        assert!(split.clone().with_salt("exp\n7").is_err());
        assert!(split.clone().with_salt("x".repeat(129)).is_err());
        assert_eq!(split.with_salt("exp-7").unwrap().salt(), "exp-7");
    }

    #[test]
    fn wire_shape_is_stable_and_decoding_validates() {
        let split = TrafficSplit::new([("@champion", 90), ("@challenger", 10)])
            .unwrap()
            .with_salt("exp-7")
            .unwrap();
        let json = serde_json::to_string(&split).unwrap();
        assert_eq!(
            json,
            r#"{"routes":[{"target":"@champion","weight":90},{"target":"@challenger","weight":10}],"salt":"exp-7"}"#
        );
        assert_eq!(serde_json::from_str::<TrafficSplit>(&json).unwrap(), split);
        for bad in [
            r#"{"routes":[]}"#,
            r#"{"routes":[{"target":"@a","weight":0}]}"#,
            r#"{"routes":[{"target":"@a","weight":1},{"target":"@a","weight":2}]}"#,
            r#"{"routes":[{"target":"a","weight":1}]}"#,
        ] {
            assert!(serde_json::from_str::<TrafficSplit>(bad).is_err(), "{bad}");
        }
    }

    /// Pins the hash: a change here would move every user of every deployed split.
    #[test]
    fn buckets_are_pinned() {
        let split = TrafficSplit::new([("@a", 50), ("@b", 50)]).unwrap();
        let got: Vec<u64> = ["", "user-1", "user-2", "user-3"]
            .iter()
            .map(|k| split.bucket(&model(), k.as_bytes()))
            .collect();
        assert_eq!(got, PINNED_BUCKETS);
        // The same bucket computed from the documented definition.
        let mut h = blake3::Hasher::new_derive_key("modelreg traffic split v1");
        h.update(&5u64.to_le_bytes());
        h.update(b"fraud");
        h.update(&0u64.to_le_bytes());
        h.update(b"user-1");
        let first = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap());
        assert_eq!(((u128::from(first) * 100) >> 64) as u64, got[1]);
    }

    const PINNED_BUCKETS: [u64; 4] = [38, 34, 85, 77];

    #[test]
    fn shares_match_weights_within_one_point_over_100k_keys() {
        let split = TrafficSplit::new([("@champion", 90), ("@challenger", 7), ("/3", 3)]).unwrap();
        let mut counts = [0u32; 3];
        const N: u32 = 100_000;
        for i in 0..N {
            let key = format!("user-{i}");
            let r = split.pick(&model(), key.as_bytes());
            let idx = split.routes().iter().position(|x| x == r).unwrap();
            counts[idx] += 1;
        }
        for (r, c) in split.routes().iter().zip(counts) {
            let share = f64::from(c) / f64::from(N) * 100.0;
            assert!(
                (share - f64::from(r.weight)).abs() < 1.0,
                "{}: {share:.2}% for weight {}",
                r.target,
                r.weight
            );
        }
    }

    #[test]
    fn ramping_the_last_route_only_moves_users_onto_it() {
        let before = TrafficSplit::new([("@champion", 90), ("@challenger", 10)]).unwrap();
        let after = TrafficSplit::new([("@champion", 80), ("@challenger", 20)]).unwrap();
        for i in 0..10_000 {
            let key = format!("user-{i}");
            let (b, a) = (
                &before.pick(&model(), key.as_bytes()).target,
                &after.pick(&model(), key.as_bytes()).target,
            );
            if b.to_string() == "@challenger" {
                assert_eq!(a, b, "{key} left the challenger while it ramped up");
            }
        }
    }

    #[test]
    fn salt_and_model_reshuffle_keys() {
        let plain = TrafficSplit::new([("@a", 1), ("@b", 1)]).unwrap();
        let salted = plain.clone().with_salt("exp-2").unwrap();
        let other = ModelName::new("churn").unwrap();
        let differ = |f: &dyn Fn(&[u8]) -> u64| {
            (0..1000)
                .filter(|i| {
                    let k = format!("u{i}");
                    plain.bucket(&model(), k.as_bytes()) != f(k.as_bytes())
                })
                .count()
        };
        // About half of the keys change bucket; far from none and from all.
        for n in [
            differ(&|k| salted.bucket(&model(), k)),
            differ(&|k| plain.bucket(&other, k)),
        ] {
            assert!((350..650).contains(&n), "{n} of 1000 keys moved");
        }
    }
}
