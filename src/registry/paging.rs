//! Listings a frontend pages through: model summaries, and versions in an
//! order, a page at a time.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::options::{Deferred, VersionFilter};
use super::{IntoModelName, Registry};
use crate::domain::{MetricName, ModelSummary, VersionRecord};
use crate::error::{Error, Result};

/// How versions are ordered in a page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionOrder {
    /// By version number (the default; the same as creation order, since times
    /// never go backwards in a log).
    #[default]
    Number,
    /// By a metric's value; versions without it come last, in number order.
    Metric(MetricName),
}

/// Which page of versions [`Registry::list_versions_page`] returns: an order, a
/// direction, a page size and where the previous page ended — what MLflow's
/// `search_model_versions` takes as `order_by`, `max_results` and `page_token`.
///
/// ```
/// use modelreg::VersionPage;
/// let first = VersionPage::new().by_metric("auc").descending().limit(50);
/// # let _ = first;
/// ```
#[derive(Clone, Debug)]
pub struct VersionPage {
    order: VersionOrder,
    descending: bool,
    limit: usize,
    after: Option<String>,
    error: Deferred,
}

impl Default for VersionPage {
    fn default() -> Self {
        VersionPage {
            order: VersionOrder::Number,
            descending: false,
            limit: 100,
            after: None,
            error: Deferred::default(),
        }
    }
}

impl VersionPage {
    /// The first 100 versions by number, oldest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Order by a metric's value (an invalid name is reported by the query).
    pub fn by_metric(mut self, metric: &str) -> Self {
        if let Some(m) = self.error.keep(MetricName::new(metric)) {
            self.order = VersionOrder::Metric(m);
        }
        self
    }

    /// Order as given.
    pub fn order(mut self, order: VersionOrder) -> Self {
        self.order = order;
        self
    }

    /// Highest (newest, best by value) first.
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    /// At most `n` versions per page (at least 1, at most 10,000).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n.clamp(1, 10_000);
        self
    }

    /// The page after the one whose [`Page::next`] token this is.
    pub fn after(mut self, token: impl Into<String>) -> Self {
        self.after = Some(token.into());
        self
    }
}

/// One page of a listing, and where the next one starts: a token for
/// [`VersionPage::after`] (versions), an event number for
/// [`Registry::history_page`] (the audit trail).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Page<T, N = String> {
    /// The items, in the requested order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<N>,
    /// How many items the whole listing has across its pages, when known
    /// without reading them all (versions: yes; the audit trail: no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// A version's place in an order: its metric value (if ordering by one) and
/// number. Tokens are this key of a page's last item, so a page does not shift
/// when versions are registered between two requests.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Key {
    value: Option<f64>,
    number: u64,
}

impl Key {
    fn of(v: &VersionRecord, order: &VersionOrder) -> Key {
        Key {
            value: match order {
                VersionOrder::Number => None,
                VersionOrder::Metric(m) => v.metrics.get(m.as_str()),
            },
            number: v.number.get(),
        }
    }

    fn token(&self) -> String {
        match self.value {
            Some(x) => format!("{}:{}", self.number, x.to_bits()),
            None => self.number.to_string(),
        }
    }

    fn parse(token: &str) -> Result<Key> {
        let bad = || {
            Error::invalid_input(
                format!("page token {token:?}"),
                "not a token this registry issued",
            )
        };
        let (number, value) = match token.split_once(':') {
            Some((n, bits)) => (n, Some(f64::from_bits(bits.parse().map_err(|_| bad())?))),
            None => (token, None),
        };
        Ok(Key {
            value,
            number: number.parse().map_err(|_| bad())?,
        })
    }
}

impl VersionPage {
    /// This page of `matching`: what [`Registry::list_versions_page`] does
    /// once it has the versions that match its filter, for versions from
    /// elsewhere, such as the [`ModelState`](crate::ModelState) that
    /// [`Registry::model_as_of`] returns. `matching` may be in any order; the
    /// page and its token are the same as the registry's for the same set.
    ///
    /// ```
    /// # use modelreg::*;
    /// # use std::sync::Arc;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let registry = Registry::in_memory();
    /// let ci = registry.acting_as(Actor::new("ci")?);
    /// ci.create_model("fraud", CreateModel::new()).await?;
    /// for auc in [0.91, 0.95, 0.93] {
    ///     ci.register("fraud", ArtifactSource::bytes("m.bin", auc.to_string())?,
    ///                 NewVersion::new().metric("auc", auc)).await?;
    /// }
    /// let state = registry.model("fraud").await?;
    /// let all: Vec<Arc<VersionRecord>> = state.versions().to_vec();
    /// let best = VersionPage::new().by_metric("auc").descending().limit(1).apply(all)?;
    /// assert_eq!(best.items[0].number.get(), 2);
    /// assert_eq!(best.total, Some(3));
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub fn apply(&self, mut matching: Vec<Arc<VersionRecord>>) -> Result<Page<Arc<VersionRecord>>> {
        self.error.check()?;
        let after = self.after.as_deref().map(Key::parse).transpose()?;
        let order = &self.order;
        let cmp = |a: &Key, b: &Key| self.compare(a, b);
        matching.sort_by(|a, b| cmp(&Key::of(a, order), &Key::of(b, order)));
        let start = match after {
            None => 0,
            Some(k) => matching
                .iter()
                .position(|v| cmp(&Key::of(v, order), &k) == Ordering::Greater)
                .unwrap_or(matching.len()),
        };
        let items: Vec<_> = matching
            .iter()
            .skip(start)
            .take(self.limit)
            .cloned()
            .collect();
        let next = (start + items.len() < matching.len())
            .then(|| items.last().map(|v| Key::of(v, order).token()))
            .flatten();
        Ok(Page {
            items,
            next,
            total: Some(matching.len() as u64),
        })
    }

    /// The page's order: by value in the requested direction (versions without
    /// the value last, whatever the direction), ties and the rest by number in
    /// the requested direction.
    fn compare(&self, a: &Key, b: &Key) -> Ordering {
        let directed = |o: Ordering| if self.descending { o.reverse() } else { o };
        match (a.value, b.value) {
            (Some(x), Some(y)) => directed(x.total_cmp(&y).then(a.number.cmp(&b.number))),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => directed(a.number.cmp(&b.number)),
        }
    }
}

impl Registry {
    /// One page of the versions of `model` that match `filter`, in the order
    /// `page` asks for. Pass the returned [`Page::next`] to
    /// [`VersionPage::after`] for the page after it; a page never repeats or
    /// skips a version that existed when the first page was read, whatever is
    /// registered meanwhile.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use modelreg::*;
    /// let registry = Registry::in_memory();
    /// let ci = registry.acting_as(Actor::new("ci")?);
    /// ci.create_model("fraud", CreateModel::new()).await?;
    /// for auc in [0.91, 0.95, 0.93] {
    ///     ci.register("fraud", ArtifactSource::bytes("m.bin", auc.to_string())?,
    ///                 NewVersion::new().metric("auc", auc)).await?;
    /// }
    /// let best = VersionPage::new().by_metric("auc").descending().limit(2);
    /// let page = registry.list_versions_page("fraud", &VersionFilter::new(), best.clone()).await?;
    /// assert_eq!(page.items.iter().map(|v| v.number.get()).collect::<Vec<_>>(), [2, 3]);
    /// let rest = registry
    ///     .list_versions_page("fraud", &VersionFilter::new(), best.after(page.next.unwrap()))
    ///     .await?;
    /// assert_eq!(rest.items[0].number.get(), 1);
    /// assert!(rest.next.is_none());
    /// # Ok::<(), modelreg::Error>(()) }).unwrap();
    /// ```
    pub async fn list_versions_page(
        &self,
        model: impl IntoModelName,
        filter: &VersionFilter,
        page: VersionPage,
    ) -> Result<Page<Arc<VersionRecord>>> {
        page.error.check()?;
        let matching = self.list_versions(model, filter).await?;
        page.apply(matching)
    }

    /// A summary of every model (name, description, tags, version count,
    /// latest, production, aliases, last change), sorted by name: what a
    /// frontend's model table shows, without reading each model's versions
    /// separately.
    pub async fn model_summaries(&self) -> Result<Vec<ModelSummary>> {
        let mut out = Vec::new();
        for name in self.list_models().await? {
            match self.read(&name, |s| s.summary()).await {
                Ok(summary) => out.push(summary),
                // Deleted between listing and reading: not a model any more.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The summary of one model (see [`model_summaries`](Self::model_summaries)),
    /// without copying its versions as [`model`](Self::model) does.
    pub async fn model_summary(&self, model: impl IntoModelName) -> Result<ModelSummary> {
        let model = model.into_model_name()?;
        self.read(&model, |s| s.summary()).await
    }
}
