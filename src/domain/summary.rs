//! [`ModelSummary`]: one line of a model listing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::name::{AliasName, ModelName};
use super::record::Tags;
use super::reference::VersionNumber;
use super::state::ModelState;

/// What a listing of models shows for each: enough for a frontend's model table
/// without reading each model's versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct ModelSummary {
    /// The model.
    pub name: ModelName,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "serve", schema(value_type = BTreeMap<crate::TagKey, String>))]
    pub tags: Tags,
    /// How many versions it has (deprecated ones included).
    pub versions: u64,
    /// Its newest version that is not deprecated (what `@latest` resolves to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<VersionNumber>,
    /// The version in production, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production: Option<VersionNumber>,
    /// Every alias and the version it points at.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<AliasName, VersionNumber>,
    /// How many events its log holds.
    pub events: u64,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl ModelState {
    /// This model's line in a listing.
    pub fn summary(&self) -> ModelSummary {
        ModelSummary {
            name: self.name().clone(),
            description: self.description().to_owned(),
            tags: self.tags().clone(),
            versions: self.version_count() as u64,
            latest: self.latest().map(|v| v.number),
            production: self.production().map(|v| v.number),
            aliases: self
                .aliases()
                .iter()
                .map(|(a, t)| (a.clone(), t.version))
                .collect(),
            events: self.seq(),
            updated_at: self.updated_at(),
        }
    }
}
