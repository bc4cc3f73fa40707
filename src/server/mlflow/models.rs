//! Registered models and model versions: the handlers, and the JSON shapes
//! of MLflow's `RegisteredModel` and `ModelVersion` (see the
//! [module documentation](super) for the mapping).

use axum::Json;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use super::search::{self, Filter, Order, SortValues, Subject, Target};
use super::{Call, MlResult, Params, artifacts, invalid};
use crate::server::auth::Role;
use crate::{
    AliasName, CreateModel, Error, LinkMode, ModelName, ModelState, NewVersion, Registry, Selector,
    SetAlias, Stage, TagKey, Tags, VersionNumber, VersionRecord, VersionRef,
};

/// The version tag holding the `source` a version was created from.
pub(super) const SOURCE_TAG: &str = "modelreg.mlflow.source";

/// The model tag holding a model's description set by MLflow's `update`.
pub(super) const DESCRIPTION_TAG: &str = "modelreg.mlflow.description";

/// MLflow's stages, in the order `latest_versions` lists them.
const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

/// How the MLflow API names `stage` (`validation` shows as `Staging`).
fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::None => "None",
        Stage::Staging | Stage::Validation => "Staging",
        Stage::Production => "Production",
        Stage::Archived => "Archived",
    }
}

/// An MLflow stage name, any case: one of [`STAGES`].
fn parse_stage(text: &str) -> MlResult<&'static str> {
    STAGES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(text.trim()))
        .copied()
        .ok_or_else(|| {
            invalid(format!(
                "stage {text:?} is not one of None, Staging, Production, Archived"
            ))
        })
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The latest change of a version itself (see the module documentation).
fn version_updated(v: &VersionRecord) -> DateTime<Utc> {
    let mut t = v.created_at;
    if let Some(s) = v.stage_since {
        t = t.max(s);
    }
    if let Some(d) = &v.deprecated {
        t = t.max(d.at);
    }
    t
}

/// The description MLflow shows for a model: the one set by `update`, else the
/// original.
fn description<'a>(original: &'a str, tags: &'a Tags) -> &'a str {
    tags.iter()
        .find(|(k, _)| k.as_str() == DESCRIPTION_TAG)
        .map_or(original, |(_, v)| v.as_str())
}

/// Tags as MLflow lists them, without the reserved ones.
fn tags_json(tags: &Tags) -> Vec<Value> {
    tags.iter()
        .filter(|(k, _)| !is_reserved(k.as_str()))
        .map(|(k, v)| json!({ "key": k.as_str(), "value": v }))
        .collect()
}

fn is_reserved(key: &str) -> bool {
    key == SOURCE_TAG || key == DESCRIPTION_TAG
}

/// The download URI of a registered version.
fn download_uri_of(model: &ModelName, n: VersionNumber) -> String {
    format!("mlflow-artifacts:/{}/{model}/{n}", artifacts::MODELS)
}

/// The `source` of a version: what it was created from through this API,
/// else where its files are.
fn source(model: &ModelName, v: &VersionRecord) -> String {
    v.tags
        .iter()
        .find(|(k, _)| k.as_str() == SOURCE_TAG)
        .map_or_else(|| download_uri_of(model, v.number), |(_, s)| s.clone())
}

/// MLflow's `ModelVersion`.
fn version_json(m: &ModelState, v: &VersionRecord) -> Value {
    let aliases: Vec<&str> = m
        .aliases()
        .iter()
        .filter(|(_, t)| t.version == v.number)
        .map(|(a, _)| a.as_str())
        .collect();
    let mut notes = Vec::new();
    if v.stage == Stage::Validation {
        notes.push("in validation (shown as Staging)".to_owned());
    }
    if let Some(d) = &v.deprecated {
        notes.push(format!(
            "deprecated by {} at {}: {}",
            d.by,
            d.at.to_rfc3339(),
            d.reason
        ));
    }
    json!({
        "name": m.name().as_str(),
        "version": v.number.to_string(),
        "creation_timestamp": ms(v.created_at),
        "last_updated_timestamp": ms(version_updated(v)),
        "user_id": v.created_by.as_str(),
        "current_stage": stage_name(v.stage),
        "description": v.description.as_str(),
        "source": source(m.name(), v),
        "run_id": "",
        "status": "READY",
        "status_message": notes.join("; "),
        "tags": tags_json(&v.tags),
        "aliases": aliases,
        "modelreg_stage": v.stage.as_str(),
        "modelreg_digest": v.artifact.to_string(),
    })
}

/// For each MLflow stage in `stages`, the highest-numbered version in it
/// that is not deprecated.
fn latest_per_stage<'a>(m: &'a ModelState, stages: &[&str]) -> Vec<&'a VersionRecord> {
    stages
        .iter()
        .filter_map(|stage| {
            m.versions()
                .iter()
                .rev()
                .find(|v| v.deprecated.is_none() && stage_name(v.stage) == *stage)
                .map(|v| &**v)
        })
        .collect()
}

/// MLflow's `RegisteredModel`.
fn model_json(m: &ModelState) -> Value {
    let latest: Vec<Value> = latest_per_stage(m, &STAGES)
        .into_iter()
        .map(|v| version_json(m, v))
        .collect();
    let aliases: Vec<Value> = m
        .aliases()
        .iter()
        .map(|(a, t)| json!({ "alias": a.as_str(), "version": t.version.to_string() }))
        .collect();
    json!({
        "name": m.name().as_str(),
        "creation_timestamp": ms(m.created_at()),
        "last_updated_timestamp": ms(m.updated_at()),
        "user_id": m.created_by().as_str(),
        "description": description(m.description(), m.tags()),
        "latest_versions": latest,
        "tags": tags_json(m.tags()),
        "aliases": aliases,
    })
}

/// A tag key sent by an MLflow client, checked against this registry's rules
/// and the reserved keys.
fn client_tag_key(key: &str) -> MlResult<TagKey> {
    if is_reserved(key) {
        return Err(invalid(format!(
            "tag key '{key}' is reserved: it holds what MLflow's {} field shows",
            if key == SOURCE_TAG {
                "source"
            } else {
                "description (set it with update)"
            }
        )));
    }
    TagKey::new(key).map_err(|_| {
        invalid(format!(
            "MLflow tag key {key:?} is not accepted by this registry: tag keys are 1 to 128 \
             ASCII letters, digits and _ - . / @ :, starting with a letter or a digit"
        ))
    })
}

fn client_tags(p: &Params) -> MlResult<Tags> {
    p.tags()?
        .into_iter()
        .map(|(k, v)| Ok((client_tag_key(&k)?, v)))
        .collect()
}

fn model_name(p: &Params) -> MlResult<ModelName> {
    Ok(ModelName::new(p.text("name")?)?)
}

fn version_ref(p: &Params) -> MlResult<VersionRef> {
    Ok(VersionRef::number(model_name(p)?, p.version()?))
}

/// The model and one of its versions.
async fn model_and_version(
    registry: &Registry,
    r: &VersionRef,
) -> MlResult<(ModelState, VersionNumber)> {
    let m = registry.model(&r.model).await?;
    let n = m.resolve(&r.selector)?.number;
    Ok((m, n))
}

fn one_version(m: &ModelState, n: VersionNumber) -> MlResult<Json<Value>> {
    let v = m
        .version(n)
        .ok_or_else(|| Error::version_not_found(m.name(), n))?;
    Ok(Json(json!({ "model_version": version_json(m, v) })))
}

fn one_model(m: &ModelState) -> Json<Value> {
    Json(json!({ "registered_model": model_json(m) }))
}

fn empty() -> Json<Value> {
    Json(json!({}))
}

// ----- registered models ---------------------------------------------------

/// `POST registered-models/create {name, description?, tags?}`.
pub(super) async fn create_model(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let mut options = CreateModel::new();
    if let Some(d) = p.opt_text("description")? {
        options = options.description(d);
    }
    for (k, v) in client_tags(&p)? {
        options = options.tag(k.as_str(), v);
    }
    let m = me.create_model(model_name(&p)?, options).await?;
    Ok(one_model(&m))
}

/// `GET registered-models/get?name=`.
pub(super) async fn get_model(mut call: Call) -> MlResult {
    let p = call.params().await?;
    let m = call.state.registry.model(model_name(&p)?).await?;
    Ok(one_model(&m))
}

/// Every model `filter` may match: only the one it names, when it names one.
async fn candidate_models(registry: &Registry, filter: &Filter) -> MlResult<Vec<ModelState>> {
    let names = match filter.exact_name() {
        Some(name) => match ModelName::new(name) {
            Ok(name) => vec![name],
            // No model can have a name this registry rejects.
            Err(_) => return Ok(Vec::new()),
        },
        None => registry.list_models().await?,
    };
    let models: Vec<Option<ModelState>> = stream::iter(names)
        .map(|name| async move {
            match registry.model(&name).await {
                Ok(m) => Ok(Some(m)),
                Err(Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    Ok(models.into_iter().flatten().collect())
}

/// `max_results` within `1..=max` (MLflow's own limits), or `default`.
fn max_results(p: &Params, default: u64, max: u64) -> MlResult<usize> {
    match p.number("max_results")? {
        None => Ok(default as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(invalid(format!(
            "max_results must be between 1 and {max}, not {n}"
        ))),
    }
}

/// The page of `rows` a call asks for, and the token of the next one.
fn page<T>(rows: Vec<T>, p: &Params, max: usize) -> MlResult<(Vec<T>, Option<String>)> {
    let offset = search::parse_page_token(p.opt_text("page_token")?).map_err(invalid)?;
    let total = rows.len();
    let end = offset.saturating_add(max).min(total);
    let next = (end < total).then(|| search::page_token(end));
    let rows = rows.into_iter().skip(offset).take(max).collect();
    Ok((rows, next))
}

struct ModelRow<'a>(&'a ModelState);

impl Subject for ModelRow<'_> {
    fn name(&self) -> &str {
        self.0.name().as_str()
    }
    fn tag(&self, key: &str) -> Option<&str> {
        tag_of(self.0.tags(), key)
    }
}

fn tag_of<'a>(tags: &'a Tags, key: &str) -> Option<&'a str> {
    TagKey::new(key)
        .ok()
        .and_then(|k| tags.get(&k))
        .map(String::as_str)
}

/// `GET registered-models/search?filter=&max_results=&order_by=&page_token=`.
pub(super) async fn search_models(mut call: Call) -> MlResult {
    let p = call.params().await?;
    let filter =
        Filter::parse(p.opt_text("filter")?.unwrap_or(""), Target::Models).map_err(invalid)?;
    let order = Order::parse(&p.texts("order_by")?, Target::Models).map_err(invalid)?;
    let max = max_results(&p, 100, 1000)?;
    let mut models: Vec<ModelState> = candidate_models(&call.state.registry, &filter)
        .await?
        .into_iter()
        .filter(|m| filter.matches(&ModelRow(m)))
        .collect();
    fn values(m: &ModelState) -> SortValues<'_> {
        SortValues {
            name: m.name().as_str(),
            version: 0,
            created: ms(m.created_at()),
            updated: ms(m.updated_at()),
        }
    }
    models.sort_by(|a, b| order.compare(&values(a), &values(b)));
    let (models, next) = page(models, &p, max)?;
    let mut out = json!({ "registered_models": models.iter().map(model_json).collect::<Vec<_>>() });
    if let Some(next) = next {
        out["next_page_token"] = next.into();
    }
    Ok(Json(out))
}

/// `PATCH registered-models/update {name, description}`.
pub(super) async fn update_model(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let name = model_name(&p)?;
    let m = match p.opt_text("description")? {
        Some(d) => {
            me.set_model_tags(&name, description_tag(d)?, Vec::new())
                .await?
        }
        None => me.model(&name).await?,
    };
    Ok(one_model(&m))
}

fn description_tag(text: &str) -> MlResult<Tags> {
    let key = TagKey::new(DESCRIPTION_TAG)?;
    Ok(Tags::from([(key, text.to_owned())]))
}

/// `DELETE registered-models/delete {name}`: refused (admin role first).
pub(super) async fn delete_model(mut call: Call) -> MlResult {
    let me = call.session(Role::Admin)?;
    let p = call.params().await?;
    let m = me.model(model_name(&p)?).await?;
    Err(invalid(format!(
        "models are never deleted: the registry keeps every model's history. Deprecate \
         its versions instead (model-versions/delete deprecates one); '{}' stays",
        m.name()
    )))
}

/// `POST registered-models/rename {name, new_name}`: refused.
pub(super) async fn rename_model(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let m = me.model(model_name(&p)?).await?;
    Err(invalid(format!(
        "models cannot be renamed: a model's name is its identity in references, logs \
         and stored paths ('{}' stays); create a new model and register its versions there",
        m.name()
    )))
}

/// `POST registered-models/set-tag {name, key, value}`.
pub(super) async fn set_model_tag(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let key = client_tag_key(p.text("key")?)?;
    let value = p.opt_text("value")?.unwrap_or("").to_owned();
    me.set_model_tags(model_name(&p)?, Tags::from([(key, value)]), Vec::new())
        .await?;
    Ok(empty())
}

/// `DELETE registered-models/delete-tag {name, key}`: a tag that is not set
/// is not an error (as in MLflow), and appends nothing.
pub(super) async fn delete_model_tag(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let key = client_tag_key(p.text("key")?)?;
    let name = model_name(&p)?;
    if me.model(&name).await?.tags().contains_key(&key) {
        me.set_model_tags(&name, Tags::new(), vec![key]).await?;
    }
    Ok(empty())
}

/// `POST registered-models/alias {name, alias, version}`.
pub(super) async fn set_alias(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let r = version_ref(&p)?;
    me.set_alias(
        &r,
        p.text("alias")?,
        SetAlias::new().reason("set through the MLflow API"),
    )
    .await?;
    Ok(empty())
}

/// `DELETE registered-models/alias {name, alias}`.
pub(super) async fn delete_alias(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    me.remove_alias(
        model_name(&p)?,
        p.text("alias")?,
        "removed through the MLflow API",
    )
    .await?;
    Ok(empty())
}

/// `GET registered-models/alias?name=&alias=`: the version it points at.
pub(super) async fn get_by_alias(mut call: Call) -> MlResult {
    let p = call.params().await?;
    let alias = AliasName::new(p.text("alias")?)?;
    let r = VersionRef {
        model: model_name(&p)?,
        selector: Selector::Alias(alias),
    };
    let (m, n) = model_and_version(&call.state.registry, &r).await?;
    one_version(&m, n)
}

/// `POST|GET registered-models/get-latest-versions {name, stages?}`.
pub(super) async fn latest_versions(mut call: Call) -> MlResult {
    let p = call.params().await?;
    let m = call.state.registry.model(model_name(&p)?).await?;
    let asked = p.texts("stages")?;
    let stages: Vec<&str> = if asked.is_empty() {
        STAGES.to_vec()
    } else {
        asked
            .iter()
            .map(|s| parse_stage(s))
            .collect::<MlResult<_>>()?
    };
    let versions: Vec<Value> = latest_per_stage(&m, &stages)
        .into_iter()
        .map(|v| version_json(&m, v))
        .collect();
    Ok(Json(json!({ "model_versions": versions })))
}

// ----- model versions ------------------------------------------------------

/// `POST model-versions/create {name, source, description?, tags?}`: a new
/// version from files uploaded through `mlflow-artifacts`, `READY` at once.
pub(super) async fn create_version(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let name = model_name(&p)?;
    let source_text = p.text("source")?;
    let (source, claim) = artifacts::staged_source(&call.state, source_text).await?;
    let mut new = NewVersion::new()
        .link(LinkMode::HardLink)
        .tag(SOURCE_TAG, source_text);
    if let Some(d) = p.opt_text("description")? {
        new = new.description(d);
    }
    for (k, v) in client_tags(&p)? {
        new = new.tag(k.as_str(), v);
    }
    let registered = me.register(&name, source, new).await?;
    // The version holds the files now; the upload has served its purpose.
    claim.consumed().await;
    let m = me.model(&name).await?;
    one_version(&m, registered.number)
}

/// `GET model-versions/get?name=&version=`.
pub(super) async fn get_version(mut call: Call) -> MlResult {
    let p = call.params().await?;
    let (m, n) = model_and_version(&call.state.registry, &version_ref(&p)?).await?;
    one_version(&m, n)
}

struct VersionRow<'a> {
    model: &'a ModelState,
    version: &'a VersionRecord,
    source: String,
}

impl Subject for VersionRow<'_> {
    fn name(&self) -> &str {
        self.model.name().as_str()
    }
    fn tag(&self, key: &str) -> Option<&str> {
        tag_of(&self.version.tags, key)
    }
    fn source(&self) -> &str {
        &self.source
    }
    fn version_number(&self) -> u64 {
        self.version.number.get()
    }
}

/// `GET model-versions/search?filter=&max_results=&order_by=&page_token=`.
pub(super) async fn search_versions(mut call: Call) -> MlResult {
    let p = call.params().await?;
    let filter =
        Filter::parse(p.opt_text("filter")?.unwrap_or(""), Target::Versions).map_err(invalid)?;
    let order = Order::parse(&p.texts("order_by")?, Target::Versions).map_err(invalid)?;
    let max = max_results(&p, 10_000, 200_000)?;
    let models = candidate_models(&call.state.registry, &filter).await?;
    let mut rows: Vec<VersionRow> = models
        .iter()
        .flat_map(|m| {
            m.versions().iter().map(move |v| VersionRow {
                model: m,
                version: v,
                source: source(m.name(), v),
            })
        })
        .filter(|row| filter.matches(row))
        .collect();
    fn values<'a>(r: &VersionRow<'a>) -> SortValues<'a> {
        SortValues {
            name: r.model.name().as_str(),
            version: r.version.number.get(),
            created: ms(r.version.created_at),
            updated: ms(version_updated(r.version)),
        }
    }
    rows.sort_by(|a, b| order.compare(&values(a), &values(b)));
    let (rows, next) = page(rows, &p, max)?;
    let versions: Vec<Value> = rows
        .iter()
        .map(|r| version_json(r.model, r.version))
        .collect();
    let mut out = json!({ "model_versions": versions });
    if let Some(next) = next {
        out["next_page_token"] = next.into();
    }
    Ok(Json(out))
}

/// `PATCH model-versions/update {name, version, description}`.
pub(super) async fn update_version(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let r = version_ref(&p)?;
    if let Some(d) = p.opt_text("description")? {
        me.set_version_description(&r, d).await?;
    }
    let (m, n) = model_and_version(&me, &r).await?;
    one_version(&m, n)
}

/// `DELETE model-versions/delete {name, version}`: deprecates the version
/// (see the module documentation); deleting it again changes nothing.
pub(super) async fn delete_version(mut call: Call) -> MlResult {
    let me = call.session(Role::Admin)?;
    let p = call.params().await?;
    let r = version_ref(&p)?;
    let (m, n) = model_and_version(&me, &r).await?;
    let already = m.version(n).is_some_and(|v| v.deprecated.is_some());
    if !already {
        me.deprecate(&r, "deleted through the MLflow API").await?;
    }
    Ok(Json(json!({
        "message": format!(
            "{}/{n} is deprecated, not deleted: the registry never rewrites history. It \
             stays readable by number, alias and download URI; latest versions skip it",
            m.name()
        ),
    })))
}

/// `POST model-versions/set-tag {name, version, key, value}`.
pub(super) async fn set_version_tag(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let key = client_tag_key(p.text("key")?)?;
    let value = p.opt_text("value")?.unwrap_or("").to_owned();
    me.set_version_tags(version_ref(&p)?, Tags::from([(key, value)]), Vec::new())
        .await?;
    Ok(empty())
}

/// `DELETE model-versions/delete-tag {name, version, key}`: a tag that is
/// not set is not an error, and appends nothing.
pub(super) async fn delete_version_tag(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let key = client_tag_key(p.text("key")?)?;
    let r = version_ref(&p)?;
    let (m, n) = model_and_version(&me, &r).await?;
    if m.version(n).is_some_and(|v| v.tags.contains_key(&key)) {
        me.set_version_tags(&r, Tags::new(), vec![key]).await?;
    }
    Ok(empty())
}

/// `GET model-versions/get-download-uri?name=&version=`.
pub(super) async fn download_uri(mut call: Call) -> MlResult {
    let p = call.params().await?;
    let (m, n) = model_and_version(&call.state.registry, &version_ref(&p)?).await?;
    Ok(Json(
        json!({ "artifact_uri": download_uri_of(m.name(), n) }),
    ))
}

/// `POST model-versions/transition-stage {name, version, stage,
/// archive_existing_versions}`: walks the version to the stage with
/// [`Session::promote_to`](crate::Session::promote_to), every step's gates
/// running. A version already shown in that stage is left alone (a version
/// in validation asked to go to `Staging` does not move back). Promoting to
/// `Production` always archives the previous production version (at most
/// one version is in production here), so `archive_existing_versions` is
/// accepted for `Production` only.
pub(super) async fn transition_stage(mut call: Call) -> MlResult {
    let me = call.session(Role::Writer)?;
    let p = call.params().await?;
    let r = version_ref(&p)?;
    let wanted = parse_stage(p.text("stage")?)?;
    if p.flag("archive_existing_versions")? == Some(true) && wanted != "Production" {
        return Err(invalid(
            "archive_existing_versions is supported only with stage Production, where the \
             previous production version is always archived",
        ));
    }
    let to = match wanted {
        "None" => Stage::None,
        "Staging" => Stage::Staging,
        "Production" => Stage::Production,
        _ => Stage::Archived,
    };
    let (m, n) = model_and_version(&me, &r).await?;
    let current = m
        .version(n)
        .map(|v| v.stage)
        .ok_or_else(|| Error::version_not_found(m.name(), n))?;
    if stage_name(current) != wanted {
        me.promote_to(&r, to, "transition-stage through the MLflow API")
            .await?;
    }
    let (m, n) = model_and_version(&me, &r).await?;
    one_version(&m, n)
}
