//! The registry behaviour suite (`tests/common/registry_suite.rs`), instantiated
//! once per backend: every behaviour holds on every store.

#[macro_use]
mod common;

use common::backends::Fixture;
use common::registry_suite;

/// Instantiates every suite function listed as a test in a module named after the
/// backend, whose fixture comes from `Fixture::<backend>()`. A constructor may return
/// `Option<Fixture>` for a backend that can be unavailable (a server that is not
/// configured): its tests then pass without running.
macro_rules! suite_for_backend {
    ($backend:ident, [$($test:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let fixture: Option<super::Fixture> = super::Fixture::$backend().await.into();
                    let Some(fixture) = fixture else { return };
                    super::registry_suite::$test(&fixture).await;
                }
            )*
        }
    };
}

/// Instantiates the whole suite for each backend.
macro_rules! suite {
    (backends: [$($backend:ident),* $(,)?], tests: $tests:tt $(,)?) => {
        $( suite_for_backend!($backend, $tests); )*
    };
}

suite! {
    // The one list of backends: a new backend is a constructor on `Fixture` and
    // its name here.
    backends: [
        memory, memory_checkpoints, dyn_memory, local, dyn_local,
        object_memory, object_local, s3, azure,
    ],
    tests: [
        create_model_and_reject_duplicates,
        concurrent_creates_of_one_model,
        unknown_model_is_not_found,
        model_tags_and_metric_specs,
        register_from_dir_file_and_bytes,
        identical_files_are_stored_once,
        semver_labels_are_unique_within_a_model,
        every_reference_form_resolves,
        latest_skips_deprecated_versions,
        metrics_are_merged,
        list_versions_filters,
        history_records_every_event_in_order,
        parents_must_exist,
        interesting_sizes_round_trip,
        fetch_writes_identical_files,
        fetch_with_every_link_mode,
        fetch_refuses_an_occupied_destination,
        fetch_into_an_existing_empty_directory,
        corrupt_blob_fails_fetch_and_verify,
        missing_blob_is_not_found,
        writes_are_visible_across_handles,
        float_values_survive_storage_exactly,
        checkpoints_fold_to_the_same_state,
        reopened_registry_sees_everything,
        concurrent_writers_on_clones,
        concurrent_writers_on_separate_registries,
        hostile_in_memory_paths_are_rejected,
    ],
}
